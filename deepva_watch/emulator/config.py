"""How one emulator instance is set up.

The configuration is a frozen value so that a running emulator can be described completely by the object it was started
with. The few things tests need to change while it runs (the processing time) live on :class:`~.service.Emulator` instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

Clock = Callable[[], float]
"""Seconds since the Unix epoch, like :func:`time.time`. Injected so that tests can step job lifecycles by hand."""

DEFAULT_API_KEY = "emulator-key"
"""A fixed, documented key for demos; it protects nothing and only exists so that clients exercise their auth header."""


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything an emulator needs to start.

    ``port=0`` asks the kernel for a free port (read it back from ``Emulator.base_url``). ``data_dir=None`` puts uploads
    into a temporary directory that is removed again on stop. A job waits ``queue_time`` seconds, then processes for
    ``processing_time`` seconds; with both at zero a job is complete as soon as it exists.

    Later features hook in here: fault injection, on-prem local paths with a path mapping, fetching URL sources and
    signed webhooks would each add a field (for example ``local_path_roots``) and leave the defaults behaving as today.
    """

    host: str = "127.0.0.1"
    port: int = 0
    data_dir: Path | None = None
    api_key: str = field(default=DEFAULT_API_KEY, repr=False)
    processing_time: float = 2.0
    queue_time: float = 0.0
    clock: Clock = time.time
    read_size: int = 1 << 20

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        if self.processing_time < 0 or self.queue_time < 0:
            raise ValueError("processing_time and queue_time must not be negative")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")
        if self.read_size < 1:
            raise ValueError("read_size must be positive")
