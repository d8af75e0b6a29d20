"""Uploads: a well-formed multipart body, streamed from disk, rewound on retry, paced when capped."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import time
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

import pytest
from deepva_scripted_server import Received, Reply, storage_json

import deepva_watch
from deepva_watch.deepva import TransportError, SourceChanged, StorageObject, UploadRejected
from deepva_watch.deepva.upload import MultipartFileBody, Throttle


def _parts(request: Received) -> dict[str, tuple[str | None, str | None, bytes]]:
    """Parse a multipart/form-data body with the stdlib, independently of how the client built it."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.body)
    assert message.is_multipart()
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts[name] = (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
    return parts


def _random_file(path: Path, size: int, seed: int = 1) -> bytes:
    data = random.Random(seed).randbytes(size) + b"\r\n--\r\n"
    path.write_bytes(data)
    return data


def test_multipart_body_parses_with_the_stdlib(server, make_client, tmp_path):
    data = _random_file(tmp_path / "photo 1.jpg", 20_000)
    server.script("POST", "/storage/", Reply(201, storage_json(594)))

    stored = make_client().upload(tmp_path / "photo 1.jpg", folder="/incoming/")

    assert isinstance(stored, StorageObject) and stored.url == "storage://q1gyaldQ146pAagevHIK"
    request = server.requests_to("POST", "/storage/")[0]
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert int(request.headers["content-length"]) == len(request.body)
    assert "transfer-encoding" not in request.headers
    parts = _parts(request)
    assert parts["folder"][2] == b"/incoming/"
    assert parts["file"] == ("photo 1.jpg", "image/jpeg", data)


def test_a_body_of_many_chunks_goes_out_with_a_content_length_not_chunked(server, make_client, tmp_path):
    data = _random_file(tmp_path / "clip.mxf", 3 * 1024 * 1024 + 17)
    server.script("POST", "/storage/", Reply(201, storage_json()))

    make_client().upload(tmp_path / "clip.mxf")

    request = server.requests_to("POST", "/storage/")[0]
    assert "transfer-encoding" not in request.headers
    assert int(request.headers["content-length"]) == len(request.body) > len(data)
    assert _parts(request)["file"][2] == data


def test_upload_name_can_be_overridden(server, make_client, tmp_path):
    _random_file(tmp_path / "a.bin", 10)
    server.script("POST", "/storage/", Reply(201, storage_json()))

    make_client().upload(tmp_path / "a.bin", filename="clip.mxf")

    filename, content_type, _ = _parts(server.received[0])["file"]
    assert (filename, content_type) == ("clip.mxf", "application/mxf")


def test_progress_counts_file_bytes(server, make_client, tmp_path):
    size = 3 * 1024 * 1024 + 5
    (tmp_path / "big.mov").write_bytes(b"\0" * size)
    server.script("POST", "/storage/", Reply(201, storage_json()))
    seen: list[int] = []

    make_client().upload(tmp_path / "big.mov", on_progress=seen.append)

    assert seen[0] == 0 and seen[-1] == size
    assert seen == sorted(seen) and len(seen) == 5


def test_upload_marked_failed_is_rejected(server, make_client, tmp_path):
    _random_file(tmp_path / "a.jpg", 10)
    server.script("POST", "/storage/", Reply(201, storage_json(7, upload_failed=True)))

    with pytest.raises(UploadRejected) as caught:
        make_client().upload(tmp_path / "a.jpg")

    assert caught.value.retryable is False
    assert "upload_failed" in str(caught.value)


def test_upload_cut_off_mid_body_is_not_resent_blindly(server, make_client, sleep, tmp_path):
    """The server may keep a partial object: the caller cleans up before uploading again, so no duplicates pile up."""
    _random_file(tmp_path / "a.png", 2 * 1024 * 1024)
    server.script("POST", "/storage/", Reply(drop=True), Reply(201, storage_json()))

    with pytest.raises(TransportError) as caught:
        make_client().upload(tmp_path / "a.png")

    assert caught.value.maybe_applied and caught.value.retryable
    assert len(server.requests_to("POST", "/storage/")) == 1 and sleep.delays == []


def test_upload_is_resent_after_a_429(server, make_client, sleep, tmp_path):
    data = _random_file(tmp_path / "a.png", 256 * 1024)
    server.script("POST", "/storage/", Reply(429, {"detail": "slow down"}), Reply(201, storage_json()))
    seen: list[int] = []

    make_client().upload(tmp_path / "a.png", on_progress=seen.append)

    first, second = server.requests_to("POST", "/storage/")
    assert first.body == second.body
    assert _parts(second)["file"][2] == data
    assert seen.count(0) == 2 and len(sleep.delays) == 1


def test_file_growing_during_upload_raises_source_changed(server, make_client, sleep, tmp_path):
    path = tmp_path / "growing.mxf"
    path.write_bytes(b"a" * 1000)
    server.script("POST", "/storage/", Reply(201, storage_json()))

    def keep_writing(sent: int) -> None:
        with path.open("ab") as writer:
            writer.write(b"more")

    with pytest.raises(SourceChanged) as caught:
        make_client().upload(path, on_progress=keep_writing)

    assert caught.value.retryable is False
    assert "grew" in str(caught.value)
    assert sleep.delays == []


def test_file_shrinking_during_upload_raises_source_changed(server, make_client, sleep, tmp_path):
    path = tmp_path / "shrinking.mxf"
    path.write_bytes(b"a" * (3 * 1024 * 1024))
    server.script("POST", "/storage/", Reply(201, storage_json()))

    def truncate(sent: int) -> None:
        if sent:
            os.truncate(path, sent)

    with pytest.raises(SourceChanged, match="shorter"):
        make_client().upload(path, on_progress=truncate)

    assert sleep.delays == []


def test_a_small_file_goes_out_in_one_piece_and_a_large_one_in_chunks(tmp_path):
    small, large = tmp_path / "small.png", tmp_path / "large.mxf"
    small.write_bytes(b"s" * 1000)
    large.write_bytes(b"l" * 2500)
    for path, pieces in ((small, 1), (large, 5)):  # large: preamble, three chunks of 1,000 bytes at most, epilogue
        with path.open("rb") as handle:
            seen: list[int] = []
            body = MultipartFileBody(handle, fields={"folder": "/"}, file_field="file", filename=path.name,
                                     chunk_size=1000, on_progress=seen.append)
            sent = list(body)
        assert len(sent) == pieces and sum(map(len, sent)) == len(body)
        assert sent[0].startswith(b"--") and sent[-1].endswith(b"--\r\n") and path.read_bytes() in b"".join(sent)
        assert seen[0] == 0 and seen[-1] == path.stat().st_size


def test_small_file_shrinking_before_it_is_read_raises_source_changed(server, make_client, sleep, tmp_path):
    """Small files go out in one piece (read whole, then checked); a change is still caught."""
    path = tmp_path / "small.png"
    path.write_bytes(b"a" * 1000)
    server.script("POST", "/storage/", Reply(201, storage_json()))

    with pytest.raises(SourceChanged, match="shorter"):
        make_client().upload(path, on_progress=lambda sent: os.truncate(path, 500))

    assert sleep.delays == []


def test_throttle_keeps_the_average_rate_with_an_injected_clock():
    now = [0.0]

    def advance(seconds: float) -> None:
        now[0] += seconds

    throttle = Throttle(1000.0, clock=lambda: now[0], sleep=advance)
    for _ in range(10):
        throttle.consume(500)

    assert now[0] == pytest.approx(5.0)
    now[0] += 100  # idle time earns at most one burst
    throttle.consume(1000)
    throttle.consume(1000)
    assert now[0] == pytest.approx(106.0)


def test_bandwidth_cap_holds_on_loopback(server, make_client, tmp_path):
    size = 4_000_000
    (tmp_path / "clip.mp4").write_bytes(b"\0" * size)
    server.keep_bodies = False
    server.script("POST", "/storage/", Reply(201, storage_json()))
    client = make_client(sleep=time.sleep)

    started = time.monotonic()
    client.upload(tmp_path / "clip.mp4", max_bytes_per_second=2_000_000)
    elapsed = time.monotonic() - started

    assert server.received[0].body_length >= size
    assert 1.8 <= elapsed <= 2.2, f"{size / elapsed / 1e6:.2f} MB/s"


_MEMORY_PROBE = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    from deepva_watch.deepva import DeepVAClient, RetryPolicy

    client = DeepVAClient(sys.argv[1], "probe-key", retry=RetryPolicy(attempts=1))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stored = client.upload(Path(sys.argv[2]))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kib": before, "after_kib": after, "url": stored.url}))
    """
)


def test_streaming_upload_keeps_memory_flat(server, tmp_path):
    size = 512 * 1024 * 1024
    sparse = tmp_path / "huge.mxf"
    with sparse.open("wb") as handle:
        handle.truncate(size)
    server.keep_bodies = False
    server.script("POST", "/storage/", Reply(201, storage_json()))
    package_root = str(Path(deepva_watch.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}

    finished = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, server.base_url, str(sparse)],
                              capture_output=True, text=True, env=env, timeout=120, check=False)

    assert finished.returncode == 0, finished.stderr
    report = json.loads(finished.stdout)
    assert server.received[0].body_length > size
    growth_mib = (report["after_kib"] - report["before_kib"]) / 1024
    print(f"peak RSS before {report['before_kib'] / 1024:.1f} MiB, after {report['after_kib'] / 1024:.1f} MiB")
    assert growth_mib < 64, f"upload grew peak RSS by {growth_mib:.1f} MiB"
