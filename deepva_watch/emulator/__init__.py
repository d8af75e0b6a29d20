"""A DeepVA-compatible emulator — not the real service.

deepva-watch has no internet in its tests, benchmarks and demos, so it ships this small server that speaks the DeepVA
REST API (``/api/v1``: jobs, detailed results, storage uploads) on loopback. It is an independent second reading of the
API contract and shares no code with the client in ``deepva_watch.deepva``: a misunderstanding on one side then shows
up as a failing test instead of being built into both.

What it does:

* ``Authorization: Key <key>`` on every ``/api/v1`` request (401 otherwise).
* ``POST /storage/`` streams ``multipart/form-data`` uploads to disk (Content-Length or chunked bodies).
* Jobs move ``waiting`` → ``processing`` → ``completed`` as a function of an injectable clock; results are synthetic,
  shaped like DeepVA's and deterministic per file content (see :mod:`.results`).
* It identifies itself: every response carries ``Server: deepva-emulator/0.1``.
* ``GET /_emulator/stats`` (no key; exists only on the emulator) reports request counts per route, jobs created,
  uploads, peak concurrency and bytes uploaded, for tests and benchmarks.

From Python::

    from deepva_watch.emulator import Emulator, EmulatorConfig

    with Emulator(EmulatorConfig(processing_time=0)) as emulator:
        ...  # point a client at emulator.base_url with key emulator.config.api_key

From a shell: ``python -m deepva_watch.emulator --port 8765 --key-file key.txt``.
"""

from .config import DEFAULT_API_KEY, EmulatorConfig
from .service import Emulator

__all__ = ["DEFAULT_API_KEY", "Emulator", "EmulatorConfig"]
