"""Shared fixtures: a clean environment, one Prefect test harness, the local Novita server."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.object_storage import s3, s3_server  # noqa: F401  (fixtures for every test)
from tests.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures for every test)

# A developer's key or job store must never reach a test.
_SECRET_ENV = ("NOVITA_API_KEY", "INPAINT_STATE_URL", "PGPASSWORD")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own key or database must never reach a test (or a real API)."""
    for name in _SECRET_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One real (temporary) Prefect API for every flow test in the session."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
