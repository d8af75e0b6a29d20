"""Chaos, small: files of every type in waves, 10 % API errors and 2 % resets, the daemon SIGKILLed 20 times.

Fails on any lost file, any file without exactly one completed job, any stray job, any sidecar a strict parser refuses,
a damaged ledger, or a temporary file left in the watched tree.
"""

from __future__ import annotations

import pytest
import reliability

FAULTS = reliability.CHAOS_FAULTS


@pytest.mark.parametrize("clean_up", [False, True], ids=["plain", "clean-up"])
def test_chaos_small_loses_nothing_and_repeats_nothing(clean_up):
    """With clean-up, published files have their job and storage copy deleted: a publish step a kill repeats must
    still find its job (the deletions wait for the commit), and deletions a kill cut off are done in the end."""
    result = reliability.run_chaos(files=60, kills=20, seed=11, min_up=0.6, max_up=2.0, processing_time=0.3,
                                   drain_timeout=60, faults=FAULTS, clean_up=clean_up)
    verdict = result.verdict
    summary = f"{verdict.states}; faults {verdict.faults}; problems {verdict.problems}"

    assert result.kills == 20
    assert reliability.chaos_misses(result) == [], summary
    if clean_up:
        assert (result.storage_left, result.jobs_left) == (0, 0), "deletions cut off by a kill were not done again"
