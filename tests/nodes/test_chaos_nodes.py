"""Chaos across two nodes: API faults as in the small chaos test, each node SIGKILLed and started again at random
moments while the other works on. Fails on any lost file, any file without exactly one completed job, any stray job,
any sidecar a strict parser refuses, or a row left in a working state."""

from __future__ import annotations

from collections import Counter

import reliability


def test_two_nodes_killed_in_turn_lose_nothing_and_repeat_nothing(postgres_url: str) -> None:
    result = reliability.run_chaos(files=60, kills=10, seed=7, min_up=0.6, max_up=1.6, processing_time=0.3,
                                   drain_timeout=90, faults=reliability.CHAOS_FAULTS, ledger_url=postgres_url, nodes=2)
    verdict = result.verdict
    summary = f"{verdict.states}; faults {verdict.faults}; problems {verdict.problems}"
    publishers = Counter(row["held_by"] for row in reliability.latest_rows(postgres_url).values()
                         if row["state"] == "published")

    assert result.kills == 10
    assert set(publishers) == {"node-0", "node-1"}, f"one node did all the work: {publishers}"
    assert reliability.chaos_misses(result) == [], summary
