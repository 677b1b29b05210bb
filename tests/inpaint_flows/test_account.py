"""One account's limit on a real Prefect API, shared by the runs using it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from inpaint_flows.account import (
    delete_limit,
    limit_name,
    read_limit,
    set_limit,
    shared_pace,
)
from inpaint_flows.check import run_check
from inpaint_flows.errors import ConfigError
from inpaint_flows.pacing import RateLimiter
from inpaint_flows.settings import BatchSettings
from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.benchmarks.bench_support import tiny_batch

pytestmark = pytest.mark.usefixtures("prefect_harness")
REFRESH_S = 0.1


async def _until(what: str, condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)  # polling a condition, not waiting a fixed time


@pytest.fixture
async def account(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    name = f"test-{request.node.name[:40]}".replace("[", "-").replace("]", "")
    await set_limit(name, 120)
    yield name
    await delete_limit(name)


@pytest.mark.parametrize(
    ("base_url", "name"),
    [
        ("https://api.novita.ai", "novita-ipm-api.novita.ai"),
        ("http://127.0.0.1:8765", "novita-ipm-127.0.0.1-8765"),
        ("https://proxy.example/novita/", "novita-ipm-proxy.example"),
    ],
)
def test_the_default_limit_is_one_per_api_host(base_url: str, name: str) -> None:
    assert limit_name(base_url) == name
    assert limit_name(base_url, "team-a") == "team-a"


async def test_set_read_and_delete_a_limit(account: str) -> None:
    assert await read_limit(account) == (120, 0)
    await set_limit(account, 90)  # a changed limit replaces the old one
    assert await read_limit(account) == (90, 0)
    assert await delete_limit(account)
    assert await read_limit(account) is None
    with pytest.raises(ConfigError, match="at least 1"):
        await set_limit(account, 0)


async def test_runs_pace_to_their_share_as_runs_come_and_go(account: str) -> None:
    first, second = RateLimiter(10), RateLimiter(None)  # their own limits no longer count
    async with shared_pace("http://x", first, name=account, refresh_s=REFRESH_S) as pace:
        assert (pace.shared, pace.runs, first.images_per_minute) == (True, 1, 120)
        async with shared_pace("http://x", second, name=account, refresh_s=REFRESH_S) as other:
            assert (other.runs, second.images_per_minute) == (2, 60)
            await _until("the first run halves its pace", lambda: first.images_per_minute == 60)
            assert "shared by 2 run(s)" in pace.describe()
        await _until("the first run takes the whole limit back", lambda: pace.runs == 1)
        assert first.images_per_minute == 120
    assert await read_limit(account) == (120, 0)  # its slot is given back


async def test_a_changed_limit_reaches_running_runs(account: str) -> None:
    limiter = RateLimiter(None)
    async with shared_pace("http://x", limiter, name=account, refresh_s=REFRESH_S):
        await set_limit(account, 30)
        await _until("the run follows the new limit", lambda: limiter.images_per_minute == 30)


async def test_without_a_recorded_limit_a_run_paces_alone_and_says_how_to_share() -> None:
    limiter = RateLimiter(10)
    async with shared_pace("http://no-limit-here", limiter) as pace:
        assert not pace.shared and limiter.images_per_minute == 10
        assert "inpaint-flows limits set --ipm N" in pace.describe()


async def test_without_a_prefect_server_a_run_paces_alone() -> None:
    limiter = RateLimiter(10)
    with temporary_settings({PREFECT_API_URL: None}):
        async with shared_pace("https://api.novita.ai", limiter) as pace:
            assert not pace.shared and "no Prefect server" in pace.describe()
        with pytest.raises(ConfigError, match="PREFECT_API_URL"):
            await set_limit("anything", 10)
    assert limiter.images_per_minute == 10


async def test_check_tells_the_time_at_this_runs_share_of_the_account(tmp_path: Path) -> None:
    source = tiny_batch(tmp_path / "in", 4)
    with LocalServer(ServerConfig()) as server:
        name = limit_name(server.base_url)
        await set_limit(name, 30)
        try:
            report = await run_check(BatchSettings(source=str(source), base_url=server.base_url))
        finally:
            await delete_limit(name)
    assert report.images_per_minute == 30  # no other run holds a share now
    assert f"the account's limit {name} (30 images/min) shared with 0 running run(s)" in (
        report.text()
    )
    assert "Time at 30 images/min: about 8 s" in report.text()
