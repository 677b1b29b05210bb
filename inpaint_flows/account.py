"""One account's images-per-minute limit, shared by every run against one Prefect server.

A Novita rate limit belongs to the account, not to a process: two runs at once (a nightly and a
rerun-failed, two teams' folders, two workers) that each paced to the whole limit would send
twice what the account may. So the account's limit is recorded once on the Prefect server
(`inpaint-flows limits set --ipm N`), and every run shares it:

- The limit is a global concurrency limit named after the API host (`novita-ipm-api.novita.ai`,
  or a name of the user's choosing): its `limit` field is the account's images per minute. It is
  a record, never acquired from: Prefect's slot decay delivers only 64-75 % of a rate (measured),
  which would waste a quarter of a paid limit.
- Each run holds one slot of a second limit, `<name>-runs`, under a lease (Prefect renews it while
  the run lives; a run whose process dies stops renewing and its slot expires), so that limit's
  `active_slots` is the number of runs sharing the account now.
- Each run paces locally (`pacing.RateLimiter`, exact) to `limit / active runs`, re-reading the
  count every `refresh_s` seconds as runs come and go. A run that joins others waits one
  refresh before its first submit, so they have slowed to their new share when it starts;
  independent pacers can still put a little more than the limit into one window now and then:
  the 429 back-off (`RateLimiter.rate_limited`) is the safety net there.

Without a Prefect server (ephemeral mode: no `PREFECT_API_URL`), or with no limit recorded for
the API, a run paces to its own `images_per_minute`, as before, and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from inpaint_flows.errors import ConfigError
from inpaint_flows.pacing import RateLimiter

logger = logging.getLogger(__name__)

PREFIX = "novita-ipm-"
RUNS_SUFFIX = "-runs"
# Room for any number of runs: the runs limit counts, it never makes a run wait.
RUNS_CAPACITY = 10_000
LEASE_S = 60.0  # a dead run's share returns to the others at most this long after it died
REFRESH_S = 2.0  # how often a run re-reads how many runs share the account (one GET)


def limit_name(base_url: str, name: str | None = None) -> str:
    """The account limit's name: `name`, else one per API host (`novita-ipm-api.novita.ai`)."""
    if name:
        return name
    host = urlsplit(base_url if "//" in base_url else f"//{base_url}").netloc or base_url
    return PREFIX + (re.sub(r"[^A-Za-z0-9._-]+", "-", host).strip("-") or "api")


def prefect_server_configured() -> bool:
    """Whether runs talk to a Prefect server that outlives them (not an ephemeral one)."""
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


async def set_limit(name: str, images_per_minute: int) -> None:
    """Record (or change) the account's limit on the Prefect server; runs pick it up live."""
    from prefect.client.orchestration import get_client

    if images_per_minute < 1:
        raise ConfigError(f"--ipm must be at least 1, got {images_per_minute}.")
    if not prefect_server_configured():
        raise ConfigError(
            "No Prefect server: set PREFECT_API_URL to the server your runs use (a limit "
            "recorded in a temporary server would be gone when this command ends)."
        )
    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(name, images_per_minute)
        await client.upsert_global_concurrency_limit_by_name(name + RUNS_SUFFIX, RUNS_CAPACITY)


async def read_limit(name: str) -> tuple[int, int] | None:
    """(images per minute, runs sharing it now), or None when no limit is recorded."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        try:
            limit = await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            return None
        try:
            runs = await client.read_global_concurrency_limit_by_name(name + RUNS_SUFFIX)
        except ObjectNotFound:
            return limit.limit, 0
        return limit.limit, runs.active_slots


async def delete_limit(name: str) -> bool:
    """Forget the account's limit; runs then pace to their own `images_per_minute`."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    found = False
    async with get_client() as client:
        for limit in (name, name + RUNS_SUFFIX):
            with contextlib.suppress(ObjectNotFound):
                await client.delete_global_concurrency_limit_by_name(limit)
                found = True
    return found


@dataclass
class AccountPace:
    """How this run is paced: its share of the account's limit, or its own limit."""

    name: str
    account_ipm: int | None = None  # None: no shared limit (see `why_alone`)
    runs: int = 1
    why_alone: str = ""

    @property
    def shared(self) -> bool:
        return self.account_ipm is not None

    def share(self) -> float | None:
        return None if self.account_ipm is None else self.account_ipm / max(1, self.runs)

    def describe(self) -> str:
        if self.account_ipm is None:
            return f"paced by this run's own limit ({self.why_alone})"
        return (
            f"account limit {self.name}: {self.account_ipm} images/min shared by {self.runs} "
            f"run(s), {self.share():.3g}/min each"
        )


@contextlib.asynccontextmanager
async def shared_pace(
    base_url: str,
    limiter: RateLimiter,
    *,
    name: str | None = None,
    refresh_s: float = REFRESH_S,
    lease_s: float = LEASE_S,
) -> AsyncIterator[AccountPace]:
    """For the life of a run: hold its place among the runs sharing the account's limit and
    keep `limiter` at its share. Falls back to the limiter as configured when there is no
    Prefect server or no recorded limit (the yielded `AccountPace` says which)."""
    pace = AccountPace(name=limit_name(base_url, name))
    if not prefect_server_configured():
        pace.why_alone = "no Prefect server (PREFECT_API_URL), so no account-wide limit"
        yield pace
        return
    recorded = await read_limit(pace.name)
    if recorded is None:
        pace.why_alone = (
            f"no account limit {pace.name} on the Prefect server; "
            "`inpaint-flows limits set --ipm N` shares one between runs"
        )
        yield pace
        return

    from prefect.client.orchestration import get_client
    from prefect.concurrency.asyncio import concurrency

    if recorded[1] == 0:  # the runs limit may be missing (deleted by hand): make sure it exists
        async with get_client() as client:
            await client.upsert_global_concurrency_limit_by_name(
                pace.name + RUNS_SUFFIX, RUNS_CAPACITY
            )
    async with concurrency(
        pace.name + RUNS_SUFFIX,
        occupy=1,
        lease_duration=lease_s,
        strict=True,
        raise_on_lease_renewal_failure=False,  # a blip of the server must not kill a batch
    ):
        await _refresh(pace, limiter)
        if pace.runs > 1:  # the others still pace to their old share until their next re-read
            limiter.penalize(refresh_s)
        task = asyncio.create_task(_keep_refreshing(pace, limiter, refresh_s))
        try:
            yield pace
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _refresh(pace: AccountPace, limiter: RateLimiter) -> None:
    recorded = await read_limit(pace.name)
    if recorded is None:  # deleted while running: keep the last share
        return
    ipm, runs = recorded
    changed = (ipm, max(1, runs)) != (pace.account_ipm, pace.runs)
    pace.account_ipm, pace.runs = ipm, max(1, runs)
    share = pace.share()
    assert share is not None
    limiter.set_limit(share)
    if changed:
        logger.info("Pacing: %s", pace.describe())


async def _keep_refreshing(pace: AccountPace, limiter: RateLimiter, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await _refresh(pace, limiter)
        except Exception as exc:  # the server is busy or gone: keep the last share
            logger.warning("Could not re-read the account limit %s: %s", pace.name, exc)
