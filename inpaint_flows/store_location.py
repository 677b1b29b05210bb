"""Where the job ledger lives: an SQLite file in the state folder, or a PostgreSQL database.

- Default: `<state folder>/jobs.sqlite3` (the state folder is `--state-dir`, else
  OUT/.inpaint-state). Embedded, nothing to start; for runs on one machine (SQLite's locking
  is not reliable on network filesystems).
- `--state-url postgresql://USER@HOST[:PORT]/DB` (or `$INPAINT_STATE_URL`): one database shared
  by runs on several machines or in containers.

A password never travels in `--state-url` (a batch setting is saved in batch.json and shown in
the Prefect UI): give it in `PGPASSWORD` or `~/.pgpass`, or give the whole URL in
`$INPAINT_STATE_URL`, which is read on the machine that runs the batch and stored nowhere. Every
message names the database with its password replaced by `***`.

Both databases are reached without blocking the event loop (`store_engine`): SQLite from a
thread of its own, PostgreSQL with asyncpg.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import create_async_engine

from inpaint_flows.errors import ConfigError
from inpaint_flows.store_engine import AsyncStoreEngine, StoreEngine, ThreadedStoreEngine

STATE_URL_ENV = "INPAINT_STATE_URL"
SQLITE_FILE = "jobs.sqlite3"
# Seconds an SQLite connection waits for another process's write to end before failing. Every
# write transaction of the ledger takes milliseconds; this only guards against a stuck holder.
SQLITE_BUSY_TIMEOUT_S = 60.0

Dialect = Literal["sqlite", "postgresql"]
_DRIVERS: dict[str, Dialect] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "postgresql+asyncpg": "postgresql",
    "sqlite": "sqlite",
    "sqlite+aiosqlite": "sqlite",
}
_DRIVER: dict[Dialect, str] = {  # what reaches each (`create_engine`)
    "postgresql": "postgresql+asyncpg",
    "sqlite": "sqlite",  # the standard sqlite3 module
}


def parse_state_url(text: str) -> URL:
    """`text` as a database URL with the driver used for it; ValueError (never echoing it) if
    not."""
    try:
        url = make_url(text.strip())
    except ArgumentError:
        raise ValueError(
            "not a database URL: give postgresql://USER@HOST[:PORT]/DATABASE "
            "(or sqlite:///PATH/TO/FILE)"
        ) from None
    dialect = _DRIVERS.get(url.drivername)
    if dialect is None:
        raise ValueError(
            f"a {url.drivername!r} database cannot hold the job store: give "
            "postgresql://USER@HOST[:PORT]/DATABASE (or sqlite:///PATH/TO/FILE)"
        )
    if dialect == "sqlite" and not url.database:
        raise ValueError("an SQLite job store needs a file: sqlite:///PATH/TO/FILE")
    if dialect == "postgresql" and not url.database:
        raise ValueError("name the database: postgresql://USER@HOST[:PORT]/DATABASE")
    return url.set(drivername=_DRIVER[dialect])


def redacted(url: URL) -> str:
    """The URL as messages show it: the password, if any, is `***`."""
    return url.render_as_string(hide_password=True)


def scrub(text: str, url: URL) -> str:
    """`text` with the URL's password (and the URL itself, in full) replaced by `***`."""
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


@dataclass(frozen=True)
class StoreLocation:
    """One job store: its URL (with the driver used for it) and the state folder whose JSON
    ledger an older release may have left there (imported on first use)."""

    url: URL
    json_dir: Path | None = None

    @classmethod
    def sqlite(cls, state_dir: str | Path) -> StoreLocation:
        folder = Path(state_dir)
        url = URL.create(_DRIVER["sqlite"], database=str(folder / SQLITE_FILE))
        return cls(url=url, json_dir=folder)

    @classmethod
    def for_batch(
        cls, state_url: str | None, state_dir: str | Path, environ: Mapping[str, str]
    ) -> StoreLocation:
        """`state_url`, else `$INPAINT_STATE_URL`, else an SQLite file in `state_dir`."""
        text = state_url or environ.get(STATE_URL_ENV, "").strip() or None
        if text is None:
            return cls.sqlite(state_dir)
        try:
            url = parse_state_url(text)
        except ValueError as exc:
            source = "--state-url" if state_url else f"${STATE_URL_ENV}"
            raise ConfigError(f"{source}: {exc}.", reason="INVALID_STATE_URL") from None
        return cls(url=url, json_dir=Path(state_dir))

    @property
    def dialect(self) -> Dialect:
        return _DRIVERS[self.url.drivername]

    @property
    def label(self) -> str:
        """Which database, for messages ("SQLite /x/jobs.sqlite3", "PostgreSQL postgres...")."""
        if self.dialect == "sqlite":
            return f"SQLite {self.url.database}"
        plain = self.url.set(drivername="postgresql")
        return f"PostgreSQL {redacted(plain)}"

    @property
    def exists(self) -> bool:
        """Whether the database may already hold the store (an SQLite file is made on demand)."""
        return self.dialect == "postgresql" or Path(str(self.url.database)).exists()

    def make_room(self) -> None:
        """The folder of an SQLite file, made (before the file's first write)."""
        if self.dialect == "sqlite":
            Path(str(self.url.database)).parent.mkdir(parents=True, exist_ok=True)

    def create_engine(self) -> StoreEngine:
        """The engine that runs this store's transactions (`store_engine`); SQLite gets WAL,
        fsynced commits and explicit BEGINs."""
        if self.dialect == "postgresql":
            if importlib.util.find_spec("asyncpg") is None:  # an optional part: say how to add it
                raise ConfigError(
                    f"The job store {self.label} needs the asyncpg driver: "
                    "pip install 'inpaint-flows[postgres]'.",
                    reason="MISSING_DEPENDENCY",
                )
            # Every statement is short; a run's jobs queue for the few connections (a long
            # queue is many jobs at once, not a fault: no pool timeout to speak of).
            return AsyncStoreEngine(
                create_async_engine(
                    self.url, pool_pre_ping=True, pool_size=4, max_overflow=4, pool_timeout=3600
                )
            )
        # The standard sqlite3 module, in the store's own thread (`ThreadedStoreEngine`): one
        # connection per process.
        engine = create_engine(
            self.url,
            pool_size=1,
            max_overflow=0,
            pool_timeout=3600,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return ThreadedStoreEngine(engine)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling defers BEGIN until a write; the ledger begins each
    # transaction itself, taking the write lock up front (`_sqlite_begin`).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    cursor.execute("PRAGMA synchronous=FULL")  # a committed step survives a power cut
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # IMMEDIATE: two processes never both read a job and then both try to write it (SQLite
    # would fail one with "database is locked" instead of letting it wait). A read-only
    # transaction takes no lock: under WAL it reads a snapshot while another process writes.
    read_only = connection.get_execution_options().get("ledger_read", False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
