"""Fixtures for the DeepVA client tests: a scripted server, a recording sleep, and clients wired to both."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from deepva_scripted_server import API_KEY, RecordingSleep, ScriptedServer

from deepva_watch.deepva import DeepVAClient, RetryPolicy


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer().start()
    yield scripted
    scripted.stop()


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def make_client(server: ScriptedServer, sleep: RecordingSleep) -> Iterator[Callable[..., DeepVAClient]]:
    clients: list[DeepVAClient] = []

    def build(**overrides: Any) -> DeepVAClient:
        options: dict[str, Any] = {
            "timeout": (2.0, 5.0),
            "retry": RetryPolicy(attempts=3, base_delay=0.5, max_delay=4.0),
            "sleep": sleep,
            "rng": random.Random(7),
        }
        options.update(overrides)
        client = DeepVAClient(options.pop("base_url", server.base_url), options.pop("api_key", API_KEY), **options)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


