"""Refused key, small: the key is rotated twice while jobs run; fixed once by rewriting the key file, once by SIGHUP.

Work must pause (a handful of requests after the first 401, no file failed), /healthz must say why, new work must flow
again right after the fix, and in the end every file is published exactly once.
"""

from __future__ import annotations

import reliability

# Requests that may still go out after the key is rotated: those already in flight on each API worker (2 uploads,
# 1 submit, the tracker, 3 publishers) and a tracker's list prefetch.
HANDFUL = 8


def test_a_refused_key_pauses_work_and_a_fixed_key_resumes_it():
    # the shipped api_failure_seconds (300 s): /healthz must turn red because the key was refused, not by waiting
    result = reliability.run_refused_key(files_per_phase=8, seed=7, processing_time=2.0, api_failure_seconds=300,
                                         pause_seconds=3.0, resume_timeout=20, drain_timeout=90)
    verdict = result.verdict
    summary = f"{result.phases}; {verdict.states}; problems {verdict.problems}"

    assert [phase.how for phase in result.phases] == ["key file", "SIGHUP"]
    for phase in result.phases:
        assert phase.refused_requests >= 1, summary
        assert phase.requests_after_rotation <= HANDFUL, summary
        assert phase.failed_while_paused == 0, summary
        assert phase.red_after_seconds is not None and "401" in phase.health_reason, summary
        assert phase.resumed_seconds is not None, summary
        assert phase.green_again, summary
    assert verdict.lost == [] and verdict.published == verdict.valid, summary
    assert verdict.duplicates == {} and verdict.stray_jobs == 0, summary
    assert verdict.problems == [], summary

