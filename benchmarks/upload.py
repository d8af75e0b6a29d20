"""Streamed upload of a large file to the emulator: the client's throughput and memory against curl's, same run.

    .venv/bin/python benchmarks/upload.py              # 2 GiB
    .venv/bin/python benchmarks/upload.py --gib 0.5

The file is sparse (no disk reads to speak of) and the emulator stores uploads under /dev/shm when it can, so that
neither the source disk nor the emulator's disk is what gets measured. The client runs in a child process of its own so
that its peak RSS is the uploader's alone; curl's is read the same way (VmHWM) by `/usr/bin/time`-like polling.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from common import KEY, report, scratch_dir, start_emulator

UPLOADER = textwrap.dedent(
    """
    import resource, sys, time
    from pathlib import Path
    from deepva_watch.deepva import DeepVAClient, RetryPolicy
    client = DeepVAClient(sys.argv[1], sys.argv[2], timeout=(10, 600), retry=RetryPolicy(attempts=1))
    started = time.perf_counter()
    stored = client.upload(Path(sys.argv[3]), folder="/bench/")
    elapsed = time.perf_counter() - started
    print(elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, stored.file_size)
    """
)


def peak_rss_of(popen: subprocess.Popen) -> float:
    """Poll a child's VmHWM until it exits (curl has no flag for its own peak memory)."""
    peak = 0.0
    while popen.poll() is None:
        try:
            for line in Path(f"/proc/{popen.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except FileNotFoundError:
            break
        time.sleep(0.02)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2, help="alternate curl and the client this many times")
    args = parser.parse_args()
    if not shutil.which("curl"):
        raise SystemExit("curl is needed for the baseline")

    run = scratch_dir("deepva-upload-")
    source = Path(tempfile.mkdtemp(prefix="deepva-upload-src-")) / "big.mxf"
    size = int(args.gib * (1 << 30))
    with open(source, "wb") as handle:
        handle.truncate(size)
    emulator, api_url = start_emulator(run, 0.0)
    curl_rates, client_rates, curl_rss, client_rss = [], [], [], []
    try:
        for _ in range(args.rounds):
            started = time.perf_counter()
            curl = subprocess.Popen(
                ["curl", "-sS", "-o", "/dev/null", "-H", f"Authorization: Key {KEY}", "-F", "folder=/bench/",
                 "-F", f"file=@{source}", f"{api_url}/storage/"]
            )
            curl_rss.append(peak_rss_of(curl))
            curl_rates.append(size / (time.perf_counter() - started) / 1e9)
            _clean(run)

            child = subprocess.run([sys.executable, "-c", UPLOADER, api_url, KEY, str(source)], capture_output=True,
                                   text=True, check=True)
            elapsed, rss, stored_size = child.stdout.split()
            assert int(stored_size) == size, "the emulator stored a different size"
            client_rates.append(size / float(elapsed) / 1e9)
            client_rss.append(float(rss))
            _clean(run)
        emulator_rss = emulator.peak_rss_mb()
    finally:
        emulator.stop()
        shutil.rmtree(run, ignore_errors=True)
        shutil.rmtree(source.parent, ignore_errors=True)
    best_curl, best_client = max(curl_rates), max(client_rates)
    report(f"upload of {args.gib:g} GiB to the emulator ({args.rounds} rounds, best of each)", [
        ("curl -F", f"{best_curl:.2f} GB/s, peak RSS {max(curl_rss):.0f} MB  (all: {_fmt(curl_rates)})"),
        ("deepva-watch client", f"{best_client:.2f} GB/s, peak RSS {max(client_rss):.0f} MB  (all: {_fmt(client_rates)})"),
        ("ratio client / curl", f"{best_client / best_curl:.2f}  (target >= 0.8)"),
        ("client peak RSS", f"{max(client_rss):.0f} MB  (target <= 80)"),
        ("emulator peak RSS", f"{emulator_rss:.0f} MB"),
    ])


def _fmt(rates: list[float]) -> str:
    return ", ".join(f"{rate:.2f}" for rate in rates)


def _clean(run: Path) -> None:
    """Drop stored uploads between rounds so the next one does not compete with page cache write-back."""
    for stored in (run / "emulator-data").rglob("*"):
        if stored.is_file():
            stored.unlink()
    os.sync()


if __name__ == "__main__":
    threading.current_thread().name = "benchmark"
    main()
