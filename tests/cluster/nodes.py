"""A PostgreSQL ledger with nodes in every condition an operator meets: at work and holding rows, silent past its
lease, gone with a goodbye, and one whose clock runs ahead."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepva_watch.ledger import Ledger, open_ledger
from deepva_watch.states import State
from tests.conftest import write_config
from tests.ledger.conftest import PASSWORD, PASSWORD_ROLE, PostgresServer

LEASE = 30.0
FOLDER = "/srv/media/news"


@dataclass
class Cluster:
    """Nodes joined to one ledger, each on its own handle (as each daemon has its own), all as the password role."""

    server: PostgresServer
    database: str
    tmp_path: Path
    handles: list[Ledger] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The ledger's URL as a config names it: without the password."""
        return self.server.url(self.database, user=PASSWORD_ROLE)

    def handle(self) -> Ledger:
        ledger = open_ledger(self.url, password=PASSWORD)
        self.handles.append(ledger)
        return ledger

    def join(self, name: str, host: str, pid: int, beat: float, lease: float = LEASE) -> Ledger:
        ledger = self.handle()
        ledger.join(name, host, pid, beat, lease)
        ledger.set_folder_priorities({FOLDER: 0})  # the folders it watches, as the daemon sets them
        return ledger

    def holding(self, ledger: Ledger, *relpaths: str) -> None:
        """Rows the node ``ledger`` has claimed and is uploading."""
        now = time.time()
        for relpath in relpaths:
            observation = ledger.observe(FOLDER, relpath, 10, 1, now=now)
            asset = ledger.by_asset_id(observation.asset_id or "")
            assert asset is not None
            settled = ledger.transition(asset, State.SETTLING, State.SETTLED, now, stage="test")
            ledger.transition(settled, State.SETTLED, State.ACCEPTED, now, stage="test")
        claimed = ledger.claim([State.ACCEPTED], State.UPLOADING, now, len(relpaths), stage="upload")
        assert len(claimed) == len(relpaths)

    def config(self, api_url: str = "http://127.0.0.1:9/api/v1", **top: Any) -> Path:
        """A config of this ledger, its password in a file as a service keeps it."""
        password_file = self.tmp_path / "ledger-password"
        password_file.write_text(PASSWORD + "\n")
        password_file.chmod(0o600)
        watch = self.tmp_path / "watch"
        watch.mkdir(exist_ok=True)
        settings = {"ledger": self.url, "ledger_password_file": str(password_file), "node_lease_seconds": LEASE, **top}
        return write_config(self.tmp_path, api_url, [watch], **settings)

    def close(self) -> None:
        for ledger in self.handles:
            ledger.close()


def busy_cluster(cluster: Cluster) -> None:
    """``alpha`` at work holding two rows, ``beta`` silent for longer than its lease, ``gamma`` gone with a goodbye."""
    now = time.time()
    alpha = cluster.join("alpha", "media01", 4101, now)
    cluster.holding(alpha, "a.mxf", "b.mxf")
    cluster.join("beta", "media02", 4102, now - 3 * LEASE)
    gamma = cluster.join("gamma", "media03", 4103, now - 60)
    gamma.leave(now - 50)
