"""Chaos, small: files of every type in waves, 10 % API errors and 2 % resets, the daemon SIGKILLed 20 times.

Fails on any lost file, any file without exactly one completed job, any stray job, any sidecar a strict parser refuses,
a damaged ledger, or a temporary file left in the watched tree.
"""

from __future__ import annotations

import reliability

FAULTS = reliability.CHAOS_FAULTS


def test_chaos_small_loses_nothing_and_repeats_nothing():
    result = reliability.run_chaos(files=60, kills=20, seed=11, min_up=0.6, max_up=2.0, processing_time=0.3,
                                   drain_timeout=60, faults=FAULTS)
    verdict = result.verdict
    summary = f"{verdict.states}; faults {verdict.faults}; problems {verdict.problems}"

    assert result.kills == 20
    assert sum(result.recovered.values()) > 0, "no kill cut a step short: the run proved nothing about crashes"
    assert verdict.faults.get("error", 0) + verdict.faults.get("error_after", 0) > 0, summary
    assert verdict.lost == [], summary
    assert verdict.published == verdict.valid, summary
    assert verdict.rejected == verdict.invalid > 0, summary
    assert verdict.duplicates == {}, summary
    assert verdict.stray_jobs == 0, summary
    assert verdict.completed_jobs == verdict.valid, summary
    assert verdict.bad_sidecars == [] and verdict.sidecars_checked == 2 * verdict.valid, summary
    assert verdict.integrity == "ok"
    assert verdict.temp_files == [], summary


def test_chaos_with_clean_up_still_finds_every_job_a_repeated_step_needs():
    """Published files have their job and storage copy deleted. A kill between a publish step and its commit repeats
    the step, which must still find the job: the deletions wait for the commit."""
    result = reliability.run_chaos(files=40, kills=10, seed=12, min_up=0.6, max_up=2.0, processing_time=0.3,
                                   drain_timeout=60, faults=FAULTS, clean_up=True)
    verdict = result.verdict
    summary = f"{verdict.states}; faults {verdict.faults}; problems {verdict.problems}"

    assert result.recovered.get("publishing", 0) > 0, "no kill cut a publish step short: the run proved nothing"
    assert verdict.lost == [], summary
    assert verdict.published == verdict.valid, summary
    assert verdict.duplicates == {} and verdict.stray_jobs == 0, summary
    assert (result.storage_left, result.jobs_left) == (0, 0), "deletions cut off by a kill were not tried again"
