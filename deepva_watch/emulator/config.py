"""How one emulator instance is set up.

The configuration is a frozen value so that a running emulator can be described completely by the object it was started
with. The few things tests need to change while it runs (the processing time, faults, the API key) live on
:class:`~.service.Emulator` instead.

Features beyond a plain cloud install each have their own fields, and their defaults leave them off:

* on-prem local paths: ``onprem_roots`` maps server-view prefixes to local directories (see :mod:`.onprem`);
* fetching loopback URL sources: ``fetch_max_bytes``, ``fetch_timeout`` (see :mod:`.fetch`);
* signed webhooks: ``webhook_secret`` (deliveries happen only when it is set), the two header names, the ticker
  ``webhook_interval`` and the delivery ``webhook_timeout`` (see :mod:`.webhooks`);
* fault injection: ``faults``, a :class:`~.faults.FaultPlan` or the same as a JSON-like mapping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .faults import FaultPlan
from .onprem import OnPremRoots

Clock = Callable[[], float]
"""Seconds since the Unix epoch, like :func:`time.time`. Injected so that tests can step job lifecycles by hand."""

DEFAULT_SIGNATURE_HEADER = "X-DeepVA-Signature"
DEFAULT_NONCE_HEADER = "X-DeepVA-Nonce"
"""DeepVA does not publish its webhook header names; these are the emulator's defaults, and both are configurable."""

DEFAULT_API_KEY = "emulator-key"
"""A fixed, documented key for demos; it protects nothing and only exists so that clients exercise their auth header."""


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything an emulator needs to start.

    ``port=0`` asks the kernel for a free port (read it back from ``Emulator.base_url``). ``data_dir=None`` puts uploads
    into a temporary directory that is removed again on stop. A job waits ``queue_time`` seconds, then processes for
    ``processing_time`` seconds; with both at zero a job is complete as soon as it exists. ``video_processing_ratio``
    above zero times jobs by their media instead: each image source takes ``processing_time``, each video source its
    duration times the ratio (1.0: real time), and a job the sum over its sources.

    Later features hook in here: fault injection, on-prem local paths with a path mapping, fetching URL sources and
    signed webhooks would each add a field (for example ``local_path_roots``) and leave the defaults behaving as today.
    """

    host: str = "127.0.0.1"
    port: int = 0
    data_dir: Path | None = None
    api_key: str = field(default=DEFAULT_API_KEY, repr=False)
    processing_time: float = 2.0
    queue_time: float = 0.0
    video_processing_ratio: float = 0.0
    clock: Clock = time.time
    read_size: int = 1 << 20
    onprem_roots: Mapping[str, Path] = field(default_factory=dict)
    fetch_max_bytes: int = 1 << 30
    fetch_timeout: float = 10.0
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_signature_header: str = DEFAULT_SIGNATURE_HEADER
    webhook_nonce_header: str = DEFAULT_NONCE_HEADER
    webhook_interval: float = 0.05
    webhook_timeout: float = 5.0
    faults: FaultPlan | Mapping[str, Any] = field(default_factory=FaultPlan)

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        if self.processing_time < 0 or self.queue_time < 0:
            raise ValueError("processing_time and queue_time must not be negative")
        if self.video_processing_ratio < 0:
            raise ValueError("video_processing_ratio must not be negative")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")
        if self.read_size < 1:
            raise ValueError("read_size must be positive")
        OnPremRoots(self.onprem_roots)  # raises on a prefix that is not an absolute path
        if not isinstance(self.faults, FaultPlan):
            object.__setattr__(self, "faults", FaultPlan.from_json(self.faults))
        if self.webhook_secret is not None and not self.webhook_secret:
            raise ValueError("webhook_secret must not be empty")
        if not self.webhook_signature_header.strip() or not self.webhook_nonce_header.strip():
            raise ValueError("webhook header names must not be empty")
        if self.webhook_interval <= 0 or self.webhook_timeout <= 0 or self.fetch_timeout <= 0:
            raise ValueError("webhook_interval, webhook_timeout and fetch_timeout must be positive")
        if self.fetch_max_bytes < 1:
            raise ValueError("fetch_max_bytes must be positive")

    @property
    def fault_plan(self) -> FaultPlan:
        """``faults`` as a plan; ``__post_init__`` has already turned a mapping into one."""
        assert isinstance(self.faults, FaultPlan)
        return self.faults
