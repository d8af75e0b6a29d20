"""Two daemons on one PostgreSQL ledger and one share: they split the work, never repeat it, and a node that dies is
taken over by the other once its lease runs out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.conftest import wait_for
from tests.nodes.conftest import LEASE, Cluster, drop, judge, unique_images


def _two_nodes(cluster: Cluster, share: Path, **top: Any) -> None:
    for name in ("node-a", "node-b"):
        cluster.configure(name, share, **top)
        cluster.start(name)
    wait_for(lambda: len(cluster.query("SELECT name FROM nodes WHERE left_at IS NULL")) == 2, 30, "both nodes joined")


def _holding(cluster: Cluster, node: str) -> dict[str, int]:
    """The rows ``node`` holds in a step (a working state), by state: what a survivor must take over."""
    return {row["state"]: row["n"] for row in cluster.query(
        "SELECT state, COUNT(*) AS n FROM assets WHERE held_by = %s AND state IN ('uploading', 'submitting', "
        "'publishing', 'reporting', 'acting') GROUP BY state", (node,))}


def test_two_nodes_share_the_files_and_publish_each_once(cluster: Cluster, emulator: Any, tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    # a quota the files fill twice over: with the default (20) the node quicker to refill its freed slots may take
    # nearly all the work, and the test would prove little about sharing
    _two_nodes(cluster, share, max_active_jobs=100)
    files = unique_images(200, seed=1)
    for wave in range(4):  # the files arrive while both run
        drop(share, tmp_path / "staging", files[wave::4])
        time.sleep(0.5)
    wait_for(lambda: cluster.published(len(files)), 90, f"every file published\n{cluster.logs()}")
    time.sleep(1.0)  # a duplicate job made late would be counted now
    cluster.stop_all()

    outcome = judge(cluster, emulator, [name for name, _ in files], {"node-a": share, "node-b": share})
    assert outcome.problems == [], outcome.problems[:10]
    assert set(outcome.publishers) == {"node-a", "node-b"}, f"one node did all the work: {outcome.publishers}"
    sidecars = [path.name for path in share.iterdir() if path.suffix in (".xmp", ".json")]
    assert len(sidecars) == 2 * len(files), f"{len(sidecars)} sidecars for {len(files)} files"


def test_the_survivor_finishes_what_a_killed_node_held(cluster: Cluster, emulator: Any, tmp_path: Path) -> None:
    emulator.set_processing_time(2.0)  # jobs stay at DeepVA long enough for the killed node to hold some
    share = tmp_path / "share"
    share.mkdir()
    # a quota above the files in flight: the node quicker to claim does not take every slot, both hold work. Uploads
    # are throttled, node-a's most, so that files still wait at half time and node-a is in the middle of a step
    for name, mbps in (("node-a", 0.1), ("node-b", 1.0)):
        cluster.configure(name, share, max_active_jobs=60, max_upload_mbps=mbps)
        cluster.start(name)
    wait_for(lambda: len(cluster.query("SELECT name FROM nodes WHERE left_at IS NULL")) == 2, 30, "both nodes joined")
    files = unique_images(120, seed=2)
    drop(share, tmp_path / "staging", files[:60])
    wait_for(lambda: emulator.stats()["uploads_completed"] >= 30, 60, "a quarter of the files uploaded")
    drop(share, tmp_path / "staging", files[60:])
    wait_for(lambda: emulator.stats()["uploads_completed"] >= len(files) // 2, 60, "half the files uploaded")
    # the kill must cut node-a off in the middle of a step, or it proves nothing
    held = wait_for(lambda: _holding(cluster, "node-a"), 30, "node-a in the middle of a step")
    cluster.nodes["node-a"].kill()
    killed_at = time.monotonic()

    wait_for(lambda: cluster.published(len(files)), LEASE + 90, f"every file published\n{cluster.logs()}")
    finished_after = time.monotonic() - killed_at
    time.sleep(1.5)
    survivor = cluster.nodes["node-b"].log_text()
    cluster.stop_all()

    assert "took_over" in survivor, f"node-b never took node-a's rows over ({held} held)"
    outcome = judge(cluster, emulator, [name for name, _ in files], {"node-a": share, "node-b": share},
                    fetched_once=False)
    assert outcome.problems == [], outcome.problems[:10]
    assert finished_after >= LEASE * 0.9, "rows of a dead node were taken over before its lease ran out"


def test_max_active_jobs_is_one_limit_for_all_nodes(cluster: Cluster, emulator: Any, tmp_path: Path) -> None:
    """Each node watches a folder of its own, so each must create its own jobs: both claim against the one limit."""
    emulator.set_processing_time(1.0)
    roots = {"node-a": tmp_path / "desk-a", "node-b": tmp_path / "desk-b"}
    for name, folder in roots.items():
        folder.mkdir()
        cluster.configure(name, folder, max_active_jobs=10, max_uploads=4, folder={"id": folder.name})
        cluster.start(name)
    wait_for(lambda: len(cluster.query("SELECT name FROM nodes WHERE left_at IS NULL")) == 2, 30, "both nodes joined")
    dropped = {name: unique_images(30, seed=3 + index, prefix=f"{name}-") for index, name in enumerate(roots)}
    for name, files in dropped.items():
        drop(roots[name], tmp_path / f"staging-{name}", files)
    names = [file for files in dropped.values() for file, _ in files]
    wait_for(lambda: cluster.published(len(names)), 90, f"every file published\n{cluster.logs()}")
    cluster.stop_all()

    peak = emulator.stats()["peak_active_jobs"]
    outcome = judge(cluster, emulator, names, roots)
    assert outcome.problems == [], outcome.problems[:10]
    assert outcome.publishers == {"node-a": 30, "node-b": 30}, outcome.publishers
    assert 5 <= peak <= 10, f"peak of concurrent jobs at the emulator: {peak} (limit 10 for both nodes together)"