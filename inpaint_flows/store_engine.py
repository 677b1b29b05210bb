"""Running the job store's transactions without blocking the event loop: one call per transaction.

The ledger writes each job's store entry three or four times (claim, submitting, submitted,
final), so what one transaction costs is paid thousands of times per batch. A transaction is
one plain function of a SQLAlchemy `Connection` (the ledger's statements, written once for both
databases), and `StoreEngine.run` runs it whole:

- SQLite: in the store's own thread, on a synchronous engine (the standard `sqlite3` module).
  One hand-over per transaction; through aiosqlite each statement, cursor, commit and the
  pool's reset crossed threads on its own, ~8 hand-overs per transaction. One thread, one
  connection: the run's jobs queue for it instead of contending for SQLite's single write lock;
  other processes wait in SQLite's busy handler.

Measured (`python -m tests.benchmarks.bench_pipeline --only store`, a job's claim and three
writes, 1,000 jobs at once, a busy 2-core machine): 11-12.5 ms of CPU per job through aiosqlite
with statements built per call; 5-6 ms in one thread; 2.4-2.8 ms with the ledger's statements
built once (`ledger`). SQLite itself takes ~0.5 ms of it.
- PostgreSQL: on the event loop, with asyncpg, through SQLAlchemy's `run_sync` (each statement
  is awaited; no thread).

A transaction that was started is never interrupted: when the awaiting task is cancelled, its
work still commits or rolls back whole in the store's thread (as after a crash, the ledger's
rules cover a write its caller never saw).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

_T = TypeVar("_T")

__all__ = ["AsyncStoreEngine", "StoreEngine", "ThreadedStoreEngine"]


class StoreEngine(Protocol):
    """Runs one transaction (`work`) against the store; `read_only` takes no write lock."""

    dialect: str

    async def run(self, work: Callable[[Connection], _T], *, read_only: bool = False) -> _T: ...

    async def dispose(self) -> None: ...


def _read_only(conn: Connection) -> Connection:
    # `store_location`'s begin hook reads this: a read-only transaction takes no lock.
    return conn.execution_options(ledger_read=True)


class ThreadedStoreEngine:
    """A synchronous engine driven from one thread of its own (SQLite)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="job-store")

    def _transaction(self, work: Callable[[Connection], _T], read_only: bool) -> _T:
        with self.engine.connect() as conn:
            if read_only:
                conn = _read_only(conn)
            with conn.begin():
                return work(conn)

    async def run(self, work: Callable[[Connection], _T], *, read_only: bool = False) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._transaction, work, read_only)

    async def dispose(self) -> None:
        def close() -> None:
            self.engine.dispose()

        loop = asyncio.get_running_loop()
        # Queued after every transaction already handed over: they end first.
        await loop.run_in_executor(self._thread, close)
        self._thread.shutdown(wait=True)


class AsyncStoreEngine:
    """An asyncio engine (PostgreSQL with asyncpg): the work runs on the event loop."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    async def run(self, work: Callable[[Connection], _T], *, read_only: bool = False) -> _T:
        async with self.engine.connect() as conn:
            if read_only:
                await conn.execution_options(ledger_read=True)
            async with conn.begin():
                return await conn.run_sync(work)

    async def dispose(self) -> None:
        await self.engine.dispose()
