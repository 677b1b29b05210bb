"""The real Prefect server of tests/deployments/ (shared with tests/browser/)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deployments.nightly_story import NightlyStory, nightly_story
from tests.deployments.prefect_server import PrefectServer, shared_server
from tests.postgres import PostgresServer


@pytest.fixture(scope="session")
def prefect_server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[PrefectServer]:
    """A started `prefect server`, on PostgreSQL as a production one for several machines is
    (the session's throwaway cluster); on SQLite only where PostgreSQL is not installed."""
    with shared_server(tmp_path_factory.mktemp("prefect-home"), _database_url(request)) as server:
        yield server


def _database_url(request: pytest.FixtureRequest) -> str | None:
    try:
        postgres: PostgresServer = request.getfixturevalue("postgres_server")
    except pytest.skip.Exception:
        return None
    url = postgres.url(postgres.create_database())
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture(scope="session")
def job_store_url(request: pytest.FixtureRequest) -> str | None:
    """A PostgreSQL job store shared by the workers of a test (INPAINT_STATE_URL), or None
    (the SQLite default) where PostgreSQL is not installed."""
    try:
        postgres: PostgresServer = request.getfixturevalue("postgres_server")
    except pytest.skip.Exception:
        return None
    return postgres.url(postgres.create_database())


@pytest.fixture(scope="session")
def nightly(
    prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory
) -> NightlyStory:
    return nightly_story(prefect_server, tmp_path_factory.mktemp("nightly"))
