"""The tests' Prefect server runs on PostgreSQL where it is installed (CI installs it), as a
server shared by several machines does; its SQLite file is then never made."""

from __future__ import annotations

import pytest

from tests.deployments.prefect_server import PrefectServer
from tests.postgres import postgres_bin_dir

pytestmark = pytest.mark.server


def test_the_shared_prefect_server_is_on_postgresql(prefect_server: PrefectServer) -> None:
    if postgres_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed: the server runs on SQLite (CI installs it)")
    assert (prefect_server.database_url or "").startswith("postgresql+asyncpg://")
    assert prefect_server.api("GET", "/health") is True
    assert not list(prefect_server.home.glob("*.db")), "the server made a SQLite database"
