"""Writing an upload to disk on a second thread, so receiving and writing overlap.

On loopback both halves cost about the same (a socket copy and a page-cache copy of every byte); done one after the
other in the request thread they halve the throughput. A bounded queue keeps at most ``depth`` chunks in flight, so
memory stays at a few MiB whatever the file size. The chunks are read-only views of buffers the multipart parser never
reuses, so handing them to another thread is safe.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from types import TracebackType


class BackgroundFileWriter:
    def __init__(self, path: Path, depth: int = 8) -> None:
        self._file = path.open("wb")
        self._queue: queue.Queue[memoryview | bytes | None] = queue.Queue(maxsize=depth)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"upload-writer-{path.name}", daemon=True)
        self._thread.start()

    def write(self, chunk: memoryview | bytes) -> None:
        if self._failure is not None:
            raise self._failure
        self._queue.put(chunk)

    def close(self) -> None:
        """Waits until every queued chunk is on disk; raises what the writer thread hit, if anything."""
        self._queue.put(None)
        self._thread.join()
        self._file.close()
        if self._failure is not None:
            raise self._failure

    def __enter__(self) -> BackgroundFileWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
            return
        try:
            self.close()
        except OSError:
            pass  # the first failure is the one worth reporting

    def _run(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            if self._failure is not None:
                continue  # keep draining so the producer never blocks on a full queue
            try:
                self._file.write(chunk)
            except BaseException as failure:
                self._failure = failure
