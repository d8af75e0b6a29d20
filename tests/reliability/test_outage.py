"""Outage, small: DeepVA refuses connections for 15 s while files keep arriving; then it is back."""

from __future__ import annotations

import reliability


def test_outage_fails_nothing_drains_and_stays_within_the_backoff():
    result = reliability.run_outage(minutes=0.25, files_before=5, files_during=12, seed=5, retries=3,
                                    processing_time=0.2, drain_timeout=60)
    verdict = result.verdict
    summary = f"{verdict.states}; problems {verdict.problems}"

    assert result.outage_seconds >= 14
    assert result.failed == 0, summary
    assert verdict.lost == [] and verdict.published == verdict.valid, summary
    assert verdict.duplicates == {} and verdict.stray_jobs == 0, summary
    assert result.calls_during_outage > 0, "the daemon never noticed the outage"
    assert result.calls_during_outage <= result.call_bound, summary
    assert verdict.problems == [] or all("temporary" in problem for problem in verdict.problems), summary
