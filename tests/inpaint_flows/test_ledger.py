"""The job ledger in SQL: durable records, claims with leases, fenced writes, the JSON import.

Every test that can runs on both stores: the SQLite default and a real PostgreSQL (a throwaway
cluster, `tests/postgres.py`). Other runs are other processes (`claim_holder`); nothing waits a
fixed time: each test waits for a condition, with a generous hang guard.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest

from inpaint_flows.errors import ClaimLostError, StoreError
from inpaint_flows.ledger import ENTRY_COLUMNS, Ledger, LedgerEntry, jobs
from inpaint_flows.ledger_json import write_json_entry
from inpaint_flows.output_folder import OutputFolder
from inpaint_flows.settings import BatchSettings
from inpaint_flows.store_location import StoreLocation, parse_state_url

ROOT = Path(__file__).resolve().parents[2]
KEY = "ab" + "0" * 62
GUARD_S = 60.0  # a hang guard, never a bound the test measures


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> StoreLocation:
    if request.param == "sqlite":
        return StoreLocation.sqlite(tmp_path / "state")
    url = request.getfixturevalue("postgres_url")
    return StoreLocation(url=parse_state_url(url), json_dir=tmp_path / "state")


def url_of(location: StoreLocation) -> str:
    return location.url.render_as_string(hide_password=False)


@asynccontextmanager
async def recorded(ledger: Ledger, entry: LedgerEntry) -> AsyncIterator[None]:
    async with ledger.claim(entry.job_key, entry.name):
        await ledger.put(entry)
        yield


@contextmanager
def holder_process(
    location: StoreLocation, *, lease_s: float, where: str, renew_s: float
) -> Iterator[subprocess.Popen[str]]:
    """Another run holding KEY (recorded "submitting"), in its own process."""
    args = [url_of(location), KEY, str(lease_s), where, str(renew_s)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.inpaint_flows.claim_holder", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == "held", proc.communicate(timeout=GUARD_S)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=GUARD_S)


async def test_entries_round_trip_and_unknown_keys_are_none(location: StoreLocation) -> None:
    entry = LedgerEntry(
        job_key=KEY,
        name="a.png",
        state="succeeded",
        task_id="t-1",
        submits=1,
        outputs=("a.png", "a_2.png"),
        output_sizes=(5, 7),
        message="ça va",
    )
    async with Ledger.open(location) as ledger:
        assert await ledger.get(KEY) is None
        async with ledger.claim(KEY, "a.png"):
            assert await ledger.get(KEY) is None, "a claim alone records nothing"
            await ledger.put(entry)
    async with Ledger.open(location) as later:  # another run, later
        assert await later.get(KEY) == entry
        assert await later.get_many([KEY, "cd" + "0" * 62]) == {KEY: entry}


async def test_a_claim_yields_the_entry_it_found_and_a_final_write_releases_it(
    location: StoreLocation,
) -> None:
    entry = LedgerEntry(job_key=KEY, name="a.png", state="submitted", task_id="t-1", submits=1)
    async with Ledger.open(location) as ledger:
        async with ledger.claim(KEY, "a.png") as found:
            assert found is None  # nothing recorded yet
            await ledger.put(entry)
        async with ledger.claim(KEY, "a.png") as found:
            assert found == entry  # read in the claim's own transaction
            done = entry.evolve(state="succeeded", outputs=("a.png",))
            await ledger.put(done, release=True)
            view = await ledger.claim_of(KEY)
            assert view is not None and view.holder is None  # free before the block ends
            with pytest.raises(ClaimLostError, match="holds no claim"):
                await ledger.put(done)  # nothing more is written once released
    async with Ledger.open(location) as later:
        assert await later.get(KEY) == done


def test_every_entry_field_has_its_column() -> None:
    assert set(ENTRY_COLUMNS) <= set(jobs.c.keys())


async def test_outputs_intact_needs_every_file_with_its_recorded_size(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"12345")
    done = LedgerEntry(
        job_key=KEY, name="a.png", state="succeeded", outputs=("a.png",), output_sizes=(5,)
    )
    async with Ledger.open(StoreLocation.sqlite(tmp_path / "state")) as ledger:
        assert ledger.outputs_intact(done, OutputFolder(str(tmp_path)))
        (tmp_path / "a.png").write_bytes(b"123")  # damaged since
        assert not ledger.outputs_intact(done, OutputFolder(str(tmp_path)))
        (tmp_path / "a.png").unlink()
        assert not ledger.outputs_intact(done, OutputFolder(str(tmp_path)))
        assert not ledger.outputs_intact(
            done.evolve(state="submitted"), OutputFolder(str(tmp_path))
        )


async def test_a_write_needs_the_claim(location: StoreLocation) -> None:
    async with Ledger.open(location) as ledger:
        with pytest.raises(ClaimLostError):
            await ledger.put(LedgerEntry(job_key=KEY, name="a.png", state="submitting"))
        assert await ledger.get(KEY) is None


async def test_a_run_waits_while_a_live_run_holds_the_job_then_reads_its_result(
    location: StoreLocation,
) -> None:
    async with (
        Ledger.open(location, lease_s=3.0, renew_every_s=0.5) as first,
        Ledger.open(location, wait_poll_s=0.05) as second,
    ):
        async with first.claim(KEY, "a.png"):
            waiter = asyncio.create_task(second._acquire(KEY, "a.png"))
            # The holder renews its 3 s lease every 0.5 s (a renewal may come 2.5 s late on a
            # busy machine): wait for seven renewals (more than one whole lease), and the
            # waiter must still be waiting.
            renewals, last = 0, None
            async with asyncio.timeout(GUARD_S):
                while renewals < 7:
                    view = await first.claim_of(KEY)
                    assert view is not None and view.holder == first.holder.id
                    assert view.expires_in_s is not None
                    if last is not None and view.expires_in_s > last + 0.2:
                        renewals += 1  # the lease was pushed out again
                    last = view.expires_in_s
                    await asyncio.sleep(0.05)
            assert not waiter.done(), "took a job a live run holds"
            done = LedgerEntry(job_key=KEY, name="a.png", state="succeeded", task_id="t-1")
            await first.put(done)
        await asyncio.wait_for(waiter, GUARD_S)
        view = await second.claim_of(KEY)
        assert view is not None and view.holder == second.holder.id
        assert await second.get(KEY) == done


async def test_a_dead_runs_claim_is_taken_over_once_its_lease_lapses(
    location: StoreLocation,
) -> None:
    # The holder looks like a run on another machine: only its lease can free the job.
    with holder_process(location, lease_s=1.0, where="elsewhere", renew_s=0.3) as holder:
        async with Ledger.open(location, wait_poll_s=0.1) as ledger:
            view = await ledger.claim_of(KEY)
            assert view is not None and view.label == "host elsewhere pid 1"
            holder.send_signal(signal.SIGKILL)
            async with asyncio.timeout(GUARD_S), ledger.claim(KEY, "held.png"):
                view = await ledger.claim_of(KEY)
                assert view is not None and view.holder == ledger.holder.id
                # What the dead run recorded is kept: this run now knows a submit may be paid.
                entry = await ledger.get(KEY)
                assert entry is not None and entry.state == "submitting" and entry.submits == 1


async def test_a_dead_process_on_this_machine_frees_its_jobs_at_once(tmp_path: Path) -> None:
    location = StoreLocation.sqlite(tmp_path / "state")
    # An hour's lease: only seeing the process gone can free the job within the guard.
    with holder_process(location, lease_s=3600, where="here", renew_s=1200) as holder:
        holder.send_signal(signal.SIGKILL)
        holder.wait(GUARD_S)
        async with (
            Ledger.open(location, wait_poll_s=0.1) as ledger,
            asyncio.timeout(GUARD_S),
            ledger.claim(KEY, "held.png"),
        ):
            entry = await ledger.get(KEY)
            assert entry is not None and entry.state == "submitting"


async def test_a_frozen_run_whose_lease_lapsed_cannot_write(location: StoreLocation) -> None:
    # The holder stops renewing (a suspended process), so its lease lapses; another run takes
    # the job over and records its own task. When the holder wakes, its write is refused.
    with holder_process(location, lease_s=1.0, where="elsewhere", renew_s=3600) as holder:
        async with Ledger.open(location, wait_poll_s=0.1) as ledger:
            async with asyncio.timeout(GUARD_S), ledger.claim(KEY, "held.png"):
                entry = await ledger.get(KEY)
                assert entry is not None
                mine = entry.evolve(state="submitted", task_id="from-the-taker")
                await ledger.put(mine)
                out, err = holder.communicate("go\n", timeout=GUARD_S)
                assert out.split() == ["ClaimLostError"], err[-2000:]
            assert await ledger.get(KEY) == mine


async def test_a_json_ledger_is_imported_once_and_nothing_is_lost(
    location: StoreLocation,
) -> None:
    assert location.json_dir is not None
    old = [
        LedgerEntry(
            job_key=f"{i:02x}" + "1" * 62,
            name=f"img{i}.png",
            state=state,
            task_id=f"t-{i}",
            submits=1,
            outputs=(f"img{i}.png",) if state == "succeeded" else (),
            output_sizes=(10 + i,) if state == "succeeded" else (),
        )
        for i, state in enumerate(["succeeded", "submitted", "submitting", "needs-submit"])
    ]
    for entry in old:
        write_json_entry(location.json_dir, entry)
    async with Ledger.open(location) as ledger:
        assert await ledger.get_many(e.job_key for e in old) == {e.job_key: e for e in old}
        newer = old[1].evolve(state="succeeded", outputs=("img1.png",), output_sizes=(11,))
        async with recorded(ledger, newer):
            pass
    # The files are kept, untouched; a later run does not import them over newer records.
    write_json_entry(location.json_dir, old[1])
    async with Ledger.open(location) as later:
        assert await later.get(old[1].job_key) == newer
        assert await later.get(old[0].job_key) == old[0]


async def test_a_json_entry_that_cannot_be_read_stops_the_import(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = write_json_entry(state, LedgerEntry(job_key=KEY, name="a.png", state="submitted"))
    path.write_text("{ half", encoding="utf-8")
    with pytest.raises(StoreError) as info:
        async with Ledger.open(StoreLocation.sqlite(state)):
            pass
    assert str(path) in str(info.value)


async def test_the_databases_password_is_never_shown(postgres_server: object) -> None:
    from tests.postgres import PostgresServer

    assert isinstance(postgres_server, PostgresServer)
    secret = postgres_server.password
    wrong = postgres_server.url("postgres").replace(secret, "not-" + secret[:6] + "-it")
    with pytest.raises(StoreError) as info:
        async with Ledger.open(StoreLocation(url=parse_state_url(wrong))):
            pass
    message = str(info.value)
    assert "not-" not in message and secret not in message
    assert f"127.0.0.1:{postgres_server.port}/postgres" in message
    assert "PGPASSWORD" in message  # says what to check
    # A password in the batch setting is refused (it would be saved and shown), unechoed.
    with pytest.raises(ValueError) as refused:
        BatchSettings(source="in", state_url=postgres_server.url("postgres"))
    assert secret not in str(refused.value) and secret not in repr(refused.value.errors())
    assert "INPAINT_STATE_URL" in str(refused.value)


async def test_a_store_no_run_claimed_in_leaves_no_file(tmp_path: Path) -> None:
    """`check` reads the ledger and claims nothing: it must not leave a database behind."""
    state = tmp_path / "state"
    async with Ledger.open(StoreLocation.sqlite(state)) as ledger:
        assert await ledger.get(KEY) is None
        assert await ledger.claim_of(KEY) is None
    assert not state.exists()
    async with Ledger.open(StoreLocation.sqlite(state)) as ledger, ledger.claim(KEY, "a.png"):
        assert (state / "jobs.sqlite3").is_file()
