"""The fingerprint is stored in the ledger: the same file must give the same value in every version of the daemon."""

from __future__ import annotations

from pathlib import Path

from deepva_watch.media.fingerprint import SAMPLE_BYTES, fingerprint

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "media"


def test_a_small_file_keeps_its_fingerprint() -> None:
    assert fingerprint(FIXTURES / "sample.jpg") == "blake2b-sampled:5f88c50985a20f4a9dde39556885e17ad92c46ba"


def test_a_file_larger_than_three_samples_keeps_its_fingerprint(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (3 * 4096 + 7))  # 3 MiB and a bit: start, middle and end samples apart
    assert fingerprint(big) == "blake2b-sampled:256859993c803de067dceee0cb472ec7f1d47271"


def test_only_the_sampled_bytes_count(tmp_path: Path) -> None:
    """What the samples do not cover may change unnoticed (size, mtime and path catch real edits): the price of
    reading three MiB instead of the whole file."""
    data = bytearray(bytes(range(256)) * (3 * 4096 + 7))
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(data)
    data[SAMPLE_BYTES + 100] ^= 0xFF  # in the gap between the start and middle samples
    second.write_bytes(data)
    assert fingerprint(first) == fingerprint(second)
    data[10] ^= 0xFF  # inside the start sample
    second.write_bytes(data)
    assert fingerprint(first) != fingerprint(second)
