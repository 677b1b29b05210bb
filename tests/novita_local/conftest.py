"""Fixtures for the local server's tests: real servers on free ports (over real sockets)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.novita_local.helpers import StartServer


@pytest.fixture(autouse=True)
def clean_local_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No developer key or setting can leak into a test."""
    for name in list(os.environ):
        if name.startswith(("NOVITA", "INPAINT_FLOWS")):
            monkeypatch.delenv(name)


# ------------------------------------------------------------------ servers and clients


@pytest.fixture(scope="session")
def local_server() -> Iterator[LocalServer]:
    """The shared default server (`novita` profile; no key, no limits, no faults, no latency)."""
    with LocalServer(ServerConfig(seed=1)) as running:
        yield running


@pytest.fixture(scope="session")
def helpful_server() -> Iterator[LocalServer]:
    """Like `local_server`, under the `helpful` profile (eta, timings, Retry-After, any name)."""
    with LocalServer(ServerConfig(profile="helpful", seed=1)) as running:
        yield running


@pytest.fixture
def client(local_server: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=local_server.base_url, timeout=10) as http:
        yield http


@pytest.fixture
def helpful_client(helpful_server: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=helpful_server.base_url, timeout=10) as http:
        yield http


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start a server with the given ServerConfig fields; stopped at the end of the test."""
    started: list[LocalServer] = []

    def start(**fields: Any) -> LocalServer:
        fields.setdefault("seed", 1)
        running = LocalServer(ServerConfig(**fields)).start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
