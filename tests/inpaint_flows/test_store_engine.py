"""Transactions of the job store: each runs whole, on both stores (SQLite and a real PostgreSQL)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, Table, func, select

from inpaint_flows.store_engine import StoreEngine, ThreadedStoreEngine
from inpaint_flows.store_location import StoreLocation, parse_state_url

GUARD_S = 60.0  # a hang guard, never a bound the test measures

_meta = MetaData()
_rows = Table("store_engine_test", _meta, Column("n", Integer, primary_key=True))


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> StoreLocation:
    if request.param == "sqlite":
        return StoreLocation.sqlite(tmp_path / "state")
    return StoreLocation(url=parse_state_url(request.getfixturevalue("postgres_url")))


async def _fresh(location: StoreLocation) -> StoreEngine:
    """The store's engine, with an empty test table (made in the test's own event loop)."""
    location.make_room()
    store = location.create_engine()

    def fresh(conn: Connection) -> None:
        _meta.drop_all(conn)
        _meta.create_all(conn)

    await store.run(fresh)
    return store


def _count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(_rows)).scalar_one())


async def test_a_transaction_that_fails_writes_nothing(location: StoreLocation) -> None:
    engine = await _fresh(location)

    def half(conn: Connection) -> None:
        conn.execute(_rows.insert().values(n=1))
        raise RuntimeError("stopped half way")

    with pytest.raises(RuntimeError, match="half way"):
        await engine.run(half)
    assert await engine.run(_count, read_only=True) == 0
    await engine.run(lambda conn: conn.execute(_rows.insert().values(n=2)))
    assert await engine.run(_count, read_only=True) == 1
    await engine.dispose()


async def test_a_cancelled_caller_does_not_cut_a_transaction_in_two(tmp_path: Path) -> None:
    store = await _fresh(StoreLocation.sqlite(tmp_path / "state"))
    assert isinstance(store, ThreadedStoreEngine)
    started, go_on = threading.Event(), threading.Event()

    def two_rows(conn: Connection) -> None:
        conn.execute(_rows.insert().values(n=1))
        started.set()
        assert go_on.wait(GUARD_S)
        conn.execute(_rows.insert().values(n=2))

    caller = asyncio.create_task(store.run(two_rows))
    assert await asyncio.to_thread(started.wait, GUARD_S)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    go_on.set()
    # The next transaction queues behind it and sees both rows, never one.
    assert await asyncio.wait_for(store.run(_count, read_only=True), GUARD_S) == 2
    await store.dispose()


async def test_a_read_takes_no_lock_while_another_process_writes(tmp_path: Path) -> None:
    location = StoreLocation.sqlite(tmp_path / "state")
    store = await _fresh(location)
    await store.run(lambda conn: conn.execute(_rows.insert().values(n=1)))
    other = sqlite3.connect(str(location.url.database), isolation_level=None, timeout=GUARD_S)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds SQLite's write lock
        other.execute("INSERT INTO store_engine_test (n) VALUES (2)")
        # Reads the last committed snapshot at once instead of waiting for the writer.
        assert await asyncio.wait_for(store.run(_count, read_only=True), GUARD_S) == 1
    finally:
        other.execute("ROLLBACK")
        other.close()
    await store.dispose()
