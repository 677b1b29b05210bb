"""The real Prefect server and nightly story of tests/deployments/, shared (started once)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deployments.nightly_story import NightlyStory, nightly_story
from tests.deployments.prefect_server import PrefectServer, shared_server


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    with shared_server(tmp_path_factory.mktemp("prefect-home")) as server:
        yield server


@pytest.fixture(scope="session")
def nightly(
    prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory
) -> NightlyStory:
    return nightly_story(prefect_server, tmp_path_factory.mktemp("nightly"))
