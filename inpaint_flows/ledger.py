"""The job ledger: what was paid for, per job key, durable across crashes, reruns and machines.

Why not only Prefect's task cache: a cache entry is written when a task *finishes*. A flow killed
while polling has finished no task, yet it has created paid remote tasks. The ledger is written
the moment a submit is answered, so any later run (a UI Retry of the same flow run, a new flow
run, a rerun-failed run, on this or another machine that reaches the same store) resumes by
polling the recorded task id instead of paying again.

Where: one table in an SQL database (`store_location`): an SQLite file in the state folder by
default, a PostgreSQL database for runs on several machines. A JSON ledger an older release
left in the state folder is imported on first use (`ledger_json`).

Claims: a run works on a job only while it holds the job's claim, taken in one statement
before the job's first ledger read and held until the job is final. A claim has a lease (by the
database's clock, so machines with skewed clocks agree): the run renews the leases of all its
claims every third of the lease, so a live run keeps its jobs however long they take, and a
dead run's claims lapse. A run that meets a job another run holds waits until it is released
(or its lease lapses, or its process is seen dead on this machine: `holders`), then reads the
ledger as any later run would: a job the other run finished is skipped, paid once.
Every write is fenced: it commits only while this run still holds the claim, so a run whose
lease lapsed (a frozen process) cannot overwrite the run that took over, and never writes
"submitting" (never sends a submit) for a job it no longer holds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    RowMapping,
    String,
    Table,
    Text,
    bindparam,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from inpaint_flows.errors import ClaimLostError, StoreError
from inpaint_flows.holders import Holder, dead_here
from inpaint_flows.ledger_entry import LedgerEntry, LedgerState, utc_now
from inpaint_flows.ledger_json import json_ledger_files, read_json_entries
from inpaint_flows.output_folder import OutputFolder
from inpaint_flows.store_engine import StoreEngine
from inpaint_flows.store_location import StoreLocation, scrub

# The record lives in `ledger_entry`; callers import it from here with the ledger.
__all__ = ["ClaimView", "Ledger", "LedgerEntry", "LedgerState", "utc_now"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

LEASE_S = 30.0  # a dead run's claims lapse after this; renewed every third of it
WAIT_POLL_S = 1.0  # how often, at most, a waiting run looks at a claim it waits for
SCHEMA_VERSION = "1"


# -- the schema: one row per job key, the entry's fields plus its claim ----------------------
metadata = MetaData()
jobs = Table(
    "inpaint_jobs",
    metadata,
    Column("job_key", String(128), primary_key=True),
    Column("name", Text, nullable=False),
    Column("state", String(16)),  # NULL: claimed, nothing recorded yet (`get` says None)
    Column("task_id", Text),
    Column("submits", Integer, nullable=False, server_default="0"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("polls", Integer, nullable=False, server_default="0"),
    Column("remote_failures", Integer, nullable=False, server_default="0"),
    Column("submitted_at", Text),
    Column("finished_at", Text),
    Column("seed_used", Text),
    Column("outputs", Text, nullable=False, server_default="[]"),  # JSON list
    Column("output_sizes", Text, nullable=False, server_default="[]"),  # JSON list
    Column("output_stem", Text),
    Column("reason", Text),
    Column("message", Text),
    # The claim: who works on the job now, until when (seconds since the epoch, database clock).
    Column("holder", String(32)),
    Column("holder_label", Text),
    Column("holder_process", Text),
    Column("lease_expires", Float),
)
store_meta = Table(
    "inpaint_store_meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)
ENTRY_COLUMNS = tuple(LedgerEntry.model_fields)
_LIST_COLUMNS = ("outputs", "output_sizes")
_ROWS_PER_INSERT = 200  # SQLite allows 32,766 parameters per statement; ~20 per row
_NO_CLAIM = {"holder": None, "holder_label": None, "holder_process": None, "lease_expires": None}
_SCHEMA_LOCK = 7_213_900_413  # a PostgreSQL advisory lock: one run creates the tables


class db_now(FunctionElement[float]):
    """Now, in seconds since the epoch, by the database's clock (the one every run shares)."""

    type = Float()
    inherit_cache = True


@compiles(db_now, "sqlite")
def _sqlite_now(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


@compiles(db_now, "postgresql")
def _postgres_now(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXTRACT(EPOCH FROM clock_timestamp())::float8"


def entry_row(entry: LedgerEntry) -> dict[str, Any]:
    """The entry as column values."""
    row: dict[str, Any] = entry.model_dump()
    for column in _LIST_COLUMNS:
        row[column] = json.dumps(list(row[column]))
    return row


def entry_from_row(row: Mapping[Any, Any]) -> LedgerEntry | None:
    """The entry a row holds; None for a row that only holds a claim."""
    if row["state"] is None:
        return None
    values = {column: row[column] for column in ENTRY_COLUMNS}
    for column in _LIST_COLUMNS:
        values[column] = json.loads(values[column] or "[]")
    return LedgerEntry.model_validate(values)


@dataclass(frozen=True)
class ClaimView:
    """Who holds a job's claim, as one reader saw it."""

    holder: str | None
    label: str | None
    process: str | None
    expires_in_s: float | None  # by the database's clock; negative: lapsed


class Ledger:
    """The ledger of one run: entries read and written under this run's claims.

    Open it with `Ledger.open(location)`; it renews its claims' leases while open and releases
    them when closed.

    Args:
        engine: Runs the store's transactions (`StoreLocation.create_engine`).
        location: Which store it is, for messages (never with a password).
        holder: This run's identity as a claim holder.
        lease_s: Seconds a claim lives without renewal.
        wait_poll_s: Longest pause between two looks at a claim this run waits for.
        renew_every_s: Seconds between two renewals of this run's leases (a third of the
            lease by default).
    """

    def __init__(
        self,
        engine: StoreEngine,
        location: StoreLocation,
        *,
        holder: Holder,
        lease_s: float = LEASE_S,
        wait_poll_s: float = WAIT_POLL_S,
        renew_every_s: float | None = None,
    ) -> None:
        self.engine = engine
        self.location = location
        self.holder = holder
        self.lease_s = lease_s
        self.wait_poll_s = wait_poll_s
        self.renew_every_s = lease_s / 3 if renew_every_s is None else renew_every_s
        self._held: set[str] = set()
        self._ready = False  # tables made and any JSON ledger imported
        self._readying = asyncio.Lock()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        location: StoreLocation,
        *,
        holder: Holder | None = None,
        lease_s: float = LEASE_S,
        wait_poll_s: float = WAIT_POLL_S,
        renew_every_s: float | None = None,
    ) -> AsyncIterator[Ledger]:
        """The store, its tables made and any JSON ledger imported, renewing claims while open."""
        engine = location.create_engine()
        ledger = cls(
            engine,
            location,
            holder=holder or Holder.this_process(),
            lease_s=lease_s,
            wait_poll_s=wait_poll_s,
            renew_every_s=renew_every_s,
        )
        try:
            # A store with nothing in it yet is made at the first claim, so `check` (which
            # claims nothing) leaves no file behind.
            if location.exists or (location.json_dir and json_ledger_files(location.json_dir)):
                await ledger._ready_for_use()
            renewal = asyncio.create_task(ledger._renew_forever(), name="ledger-lease-renewal")
            try:
                yield ledger
            finally:
                renewal.cancel()
                with suppress(asyncio.CancelledError):
                    await renewal
                if ledger._ready:
                    await ledger._release(None)
        finally:
            await engine.dispose()

    # -- entries ---------------------------------------------------------------------------
    async def get(self, job_key: str) -> LedgerEntry | None:
        return (await self.get_many([job_key])).get(job_key)

    async def get_many(self, job_keys: Iterable[str]) -> dict[str, LedgerEntry]:
        """The entries recorded for `job_keys` (keys with none are left out)."""
        keys = list(dict.fromkeys(job_keys))
        found: dict[str, LedgerEntry] = {}
        if not await self._readable():
            return found

        def read(conn: Connection) -> None:
            for start in range(0, len(keys), 500):
                query = select(jobs).where(jobs.c.job_key.in_(keys[start : start + 500]))
                for row in conn.execute(query).mappings():
                    entry = entry_from_row(row)
                    if entry is not None:
                        found[entry.job_key] = entry

        await self._transaction("read the ledger", read, read_only=True)
        return found

    async def put(self, entry: LedgerEntry, *, release: bool = False) -> LedgerEntry:
        """Record `entry`; only while this run holds the job's claim (else ClaimLostError).

        `release`: the job is final, so its claim is given up in the same write (one
        transaction per job fewer than a separate release).
        """
        if entry.job_key not in self._held:
            raise ClaimLostError(f"{entry.name}: this run holds no claim on the job to record it.")
        values = {f"e_{column}": value for column, value in entry_row(entry).items()}
        values.update(p_key=entry.job_key, p_holder=self.holder.id, p_lease_s=self.lease_s)
        statement = _record_statement(release)

        def write(conn: Connection) -> ClaimView | None:
            if conn.execute(statement, values).rowcount == 1:
                return None
            return _view(conn, entry.job_key) or ClaimView(None, None, None, None)

        lost = await self._transaction(f"record {entry.name}", write)
        if lost is not None:
            other = lost.label if lost.holder else None
            raise ClaimLostError(
                f"{entry.name}: this run no longer holds the job: "
                + (f"another run ({other}) took it over" if other else "its claim is gone")
                + f" after this run's lease ({self.lease_s:.0f} s) lapsed without a "
                "renewal (a frozen or suspended process?). Nothing more was recorded or "
                "sent for it by this run"
                + (f"; its last task id here was {entry.task_id}" if entry.task_id else "")
                + ". Run the batch again to collect it."
            )
        if release:
            self._held.discard(entry.job_key)
        return entry

    def outputs_intact(
        self, entry: LedgerEntry, output: OutputFolder, outputs: tuple[str, ...] | None = None
    ) -> bool:
        """Whether every output the entry lists is still there with its recorded size.

        `outputs` checks other paths against the entry's sizes: copies of its outputs made for
        another input with the same content.
        """
        paths = entry.outputs if outputs is None else outputs
        if entry.state != "succeeded" or not paths or len(paths) != len(entry.outputs):
            return False
        sizes = entry.output_sizes or (None,) * len(paths)
        for rel, size in zip(paths, sizes, strict=True):
            found = output.result_size(rel)
            if found is None or (size is not None and found != size):
                return False
        return True

    # -- claims ----------------------------------------------------------------------------
    @asynccontextmanager
    async def claim(self, job_key: str, name: str) -> AsyncIterator[LedgerEntry | None]:
        """Hold the job's claim for the block, waiting while another live run holds it.

        Yields the job's entry as the claim found it (None: nothing recorded yet), read in the
        claim's own transaction. A `put(..., release=True)` inside the block gives the claim
        up early; else it is released when the block ends.
        """
        await self._ready_for_use()
        stored = await self._acquire(job_key, name)
        self._held.add(job_key)
        try:
            yield stored
        finally:
            if job_key in self._held:
                self._held.discard(job_key)
                await self._release(job_key)

    async def claim_of(self, job_key: str) -> ClaimView | None:
        """Who holds the job's claim now (None: no row for the job)."""
        if not await self._readable():
            return None
        return await self._transaction(
            "read a claim", lambda conn: _view(conn, job_key), read_only=True
        )

    async def _acquire(self, job_key: str, name: str) -> LedgerEntry | None:
        """Claim the job (waiting while another live run holds it); its entry as claimed."""
        pause = min(0.05, self.wait_poll_s)
        takeover: str | None = None  # a holder seen dead on this machine
        waited = False
        while True:
            values = {
                "p_key": job_key,
                "p_name": name,
                "p_holder": self.holder.id,
                "p_label": self.holder.label,
                "p_process": self.holder.process,
                "p_lease_s": self.lease_s,
                "p_takeover": takeover,
            }
            statement = _claim_statement(self.engine.dialect)
            found = await self._transaction(
                f"claim {name}", partial(_claim, statement, values, job_key)
            )
            if found is not None and not isinstance(found, ClaimView):
                if waited:
                    logger.info("%s: the other run released it; this run goes on", name)
                return entry_from_row(found)
            view = found
            if view is None or view.holder is None:
                continue  # released between the two statements
            if dead_here(view.process) and takeover != view.holder:
                logger.warning("%s: its holder (%s) is dead; taking the job over", name, view.label)
                takeover = view.holder
                continue
            if not waited:
                logger.info(
                    "%s: another run (%s) is working on this job; waiting for it",
                    name,
                    view.label,
                )
                waited = True
            left = max(0.0, view.expires_in_s or 0.0) + 0.01  # look again when it would lapse
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, self.wait_poll_s)

    async def _release(self, job_key: str | None) -> None:
        """Give up one claim (or all of this run's); a failure only logs: the lease lapses."""
        where = [jobs.c.holder == self.holder.id]
        if job_key is not None:
            where.append(jobs.c.job_key == job_key)
        try:
            statement = update(jobs).where(*where).values(**_NO_CLAIM)
            await self._transaction("release a claim", partial(_execute, statement))
        except StoreError as exc:
            logger.warning("%s It lapses in %.0f s by itself.", exc, self.lease_s)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.renew_every_s)
            if not self._held:
                continue
            try:
                statement = (
                    update(jobs)
                    .where(jobs.c.holder == self.holder.id)
                    .values(lease_expires=db_now() + self.lease_s)
                )
                await self._transaction("renew this run's claims", partial(_execute, statement))
            except StoreError as exc:  # the next renewal may get through before the lease ends
                logger.warning("%s", exc)

    # -- the database --------------------------------------------------------------------
    async def _readable(self) -> bool:
        """Whether the store exists (made now if another process just made the file)."""
        if not self._ready and self.location.exists:
            await self._ready_for_use()
        return self._ready

    async def _ready_for_use(self) -> None:
        async with self._readying:
            if not self._ready:
                self.location.make_room()
                await self._prepare()
                self._ready = True

    async def _prepare(self) -> None:
        def create(conn: Connection) -> str | None:
            if conn.dialect.name == "postgresql":  # concurrent CREATE TABLEs collide
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            metadata.create_all(conn)
            version = conn.execute(
                select(store_meta.c.value).where(store_meta.c.key == "schema")
            ).scalar()
            if version is None:
                conn.execute(store_meta.insert().values(key="schema", value=SCHEMA_VERSION))
            return version

        version = await self._transaction("create its tables", create)
        if version is not None and version != SCHEMA_VERSION:
            raise StoreError(
                f"The job store ({self.location.label}) was made by another release of "
                f"inpaint-flows (schema {version}; this release reads {SCHEMA_VERSION}). "
                "Use that release, or another --state-url / --state-dir."
            )
        if self.location.json_dir is not None:
            await self._import_json(self.location.json_dir)

    async def _import_json(self, folder: Path) -> int:
        """Import `folder`'s JSON ledger (`ledger_json`) unless done before; how many."""
        if not json_ledger_files(folder):
            return 0
        marker = f"json-import:{folder.resolve()}"
        query = select(store_meta.c.key).where(store_meta.c.key == marker)
        done = await self._transaction(
            "check for an imported JSON ledger",
            lambda conn: conn.execute(query).first() is not None,
            read_only=True,
        )
        if done:
            return 0
        entries = read_json_entries(folder)

        def import_entries(conn: Connection) -> None:
            for start in range(0, len(entries), _ROWS_PER_INSERT):
                rows = [entry_row(e) for e in entries[start : start + _ROWS_PER_INSERT]]
                insert = _insert(self.engine.dialect, jobs).values(rows)
                # A row that only holds a claim takes the entry; a recorded one is newer.
                conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=[jobs.c.job_key],
                        set_={column: insert.excluded[column] for column in ENTRY_COLUMNS},
                        where=jobs.c.state.is_(None),
                    )
                )
            insert = _insert(self.engine.dialect, store_meta).values(
                key=marker, value=f"{len(entries)} entries on {utc_now()}"
            )
            conn.execute(insert.on_conflict_do_nothing(index_elements=[store_meta.c.key]))

        await self._transaction("import the JSON ledger", import_entries)
        logger.info("Imported %d job ledger entries from %s", len(entries), folder)
        return len(entries)

    async def _transaction(
        self, what: str, work: Callable[[Connection], _T], *, read_only: bool = False
    ) -> _T:
        """`work` as one transaction: a write holds SQLite's write lock from its start; a
        read-only one takes no lock and reads a snapshot. A database fault says what failed
        (`what`) and what to do."""
        try:
            return await self.engine.run(work, read_only=read_only)
        except Exception as exc:
            if _is_database_error(exc):
                raise self._error(what, exc) from None
            raise

    def _error(self, what: str, exc: BaseException) -> StoreError:
        cause = getattr(exc, "orig", None) or exc
        detail = scrub(
            str(cause).strip().splitlines()[0] if str(cause).strip() else "", self.location.url
        )
        detail = f"{type(cause).__name__}: {detail}"[:400]
        if self.location.dialect == "postgresql":
            hint = (
                "Check that the server runs and is reachable from here, and that --state-url "
                "or $INPAINT_STATE_URL names the right user and database (password in "
                "PGPASSWORD, ~/.pgpass or $INPAINT_STATE_URL)"
            )
        else:
            hint = "Check that the state folder is on a local disk, writable and not full"
        return StoreError(
            f"The job store ({self.location.label}) could not {what}: {detail}. {hint}; then "
            "run the batch again (what was recorded is kept)."
        )


# -- the statements of each job's claim and writes, built once (a batch runs them thousands of
# times; building one cost more than running it); their values are bound by name.
@cache
def _record_statement(release: bool) -> Executable:
    """Record an entry while this run holds its claim: renewing the lease, or (`release`)
    giving the claim up in the same write."""
    lease = db_now() + bindparam("p_lease_s", type_=Float())
    claim: Mapping[str, Any] = _NO_CLAIM if release else {"lease_expires": lease}
    return (
        update(jobs)
        .where(jobs.c.job_key == bindparam("p_key"), jobs.c.holder == bindparam("p_holder"))
        .values(**{column: bindparam(f"e_{column}") for column in ENTRY_COLUMNS}, **claim)
    )


@cache
def _claim_statement(dialect: str) -> Executable:
    """Claim a job: the claimed row (its entry's columns), or no row while another run holds
    it. `p_takeover`: a holder seen dead on this machine, whose claim is taken (None: none)."""
    now = db_now()
    insert = _insert(dialect, jobs).values(
        job_key=bindparam("p_key"),
        name=bindparam("p_name"),
        holder=bindparam("p_holder"),
        holder_label=bindparam("p_label"),
        holder_process=bindparam("p_process"),
        lease_expires=now + bindparam("p_lease_s", type_=Float()),
    )
    free = or_(
        jobs.c.holder.is_(None),
        jobs.c.holder == bindparam("p_holder"),
        jobs.c.lease_expires < now,
        jobs.c.holder == bindparam("p_takeover"),  # `holder = NULL` is never true
    )
    excluded = insert.excluded
    return insert.on_conflict_do_update(
        index_elements=[jobs.c.job_key],
        set_={
            "holder": excluded.holder,
            "holder_label": excluded.holder_label,
            "holder_process": excluded.holder_process,
            "lease_expires": excluded.lease_expires,
        },
        where=free,
    ).returning(*(jobs.c[column] for column in ENTRY_COLUMNS))


def _insert(dialect: str, table: Table) -> Any:
    """An INSERT with ON CONFLICT for this database (both dialects spell it alike)."""
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def _execute(statement: Executable, conn: Connection) -> None:
    conn.execute(statement)


def _claim(
    statement: Executable, values: Mapping[str, Any], job_key: str, conn: Connection
) -> RowMapping | ClaimView | None:
    """The claimed row, else who holds the claim (None: the row went in between)."""
    claimed = conn.execute(statement, values).mappings().first()
    return claimed if claimed is not None else _view(conn, job_key)


def _view(conn: Connection, job_key: str) -> ClaimView | None:
    """Who holds the job's claim (None: no row for the job)."""
    query = select(
        jobs.c.holder,
        jobs.c.holder_label,
        jobs.c.holder_process,
        (jobs.c.lease_expires - db_now()).label("left"),
    ).where(jobs.c.job_key == job_key)
    row = conn.execute(query).first()
    if row is None:
        return None
    return ClaimView(holder=row[0], label=row[1], process=row[2], expires_in_s=row[3])


def _is_database_error(exc: BaseException) -> bool:
    """An error of the database or the way to it (not one of ours, not a cancellation)."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    module = type(exc).__module__.split(".")[0]
    return module in ("sqlalchemy", "asyncpg", "sqlite3")
