"""The API key never lands anywhere a run leaves traces.

Batches run against a local server that requires a recognisable fake key:

1. the key from `NOVITA_API_KEY`;
2. the key from a Prefect Secret block (the flow gets only the block's name);
3. a WRONG key from the environment (403 INVALID_API_KEY for every job);
4. the right key through a broken gateway that quotes the request's Authorization header back in
   its error body, so the client's own messages are put to the test.

Then everything those runs produced is searched for either key (and a fragment of each):
log records at DEBUG (ours, httpx/httpcore, Prefect's, the server's and uvicorn's access log),
captured stdout/stderr, every file in the output folders (reports, gallery, batch.json, ledger,
thumbnails), Prefect's persisted task results, and through the Prefect API the flow runs'
parameters and state messages, task runs, logs and artifacts, and the API's SQLite database
itself (where a Secret block's value is stored encrypted). Zero hits.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import pickle
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogHandler
from prefect.settings import (
    PREFECT_LOCAL_STORAGE_PATH,
    PREFECT_RESULTS_PERSIST_BY_DEFAULT,
    PREFECT_SERVER_DATABASE_CONNECTION_URL,
    temporary_settings,
)
from pydantic import SecretStr

from inpaint_flows import client as client_module
from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.flows.helpers import call_batch_flow
from tests.reliability.helpers import FAST, report_rows, write_batch
from tests.reliability.proxy import MisbehavingProxy

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

FAKE = "sk_test_SECRET_canary_1234567890abcdef"
WRONG = "sk_test_WRONG_canary_0987654321fedcba"
NEEDLES = (FAKE, WRONG, "SECRET_canary", "WRONG_canary")
BLOCK = "novita-test-key"


def hits(text: str | bytes) -> list[str]:
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return [needle for needle in NEEDLES if needle.encode() in data]


def decoded(data: bytes) -> bytes:
    """`data` plus what its base64 runs decode to (Prefect stores pickled results as base64)."""
    parts = [data]
    for run in re.findall(rb"[A-Za-z0-9+/=\r\n]{40,}", data):
        compact = re.sub(rb"\s", b"", run)
        with contextlib.suppress(binascii.Error, ValueError):
            parts.append(base64.b64decode(compact + b"=" * (-len(compact) % 4)))
    return b"\0".join(parts)


def grep_files(roots: Iterable[Path]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file() and (where := hits(decoded(path.read_bytes()))):
                found[str(path)] = where
    return found


def test_the_search_finds_a_planted_key(tmp_path: Path) -> None:
    """A positive control: the same search does find the key where it is."""
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "x.bin").write_bytes(b"\x00\x01" + FAKE.encode() + b"\xff")
    pickled = base64.encodebytes(pickle.dumps({"settings": {"key": FAKE}}))  # as Prefect stores
    (tmp_path / "result").write_bytes(pickled)
    assert FAKE.encode() not in pickled
    assert grep_files([tmp_path]) == {
        str(tmp_path / "deep" / "er" / "x.bin"): [FAKE, NEEDLES[2]],
        str(tmp_path / "result"): [FAKE, NEEDLES[2]],
    }


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    async def quick(seconds: float) -> None:
        await asyncio.sleep(seconds / 20)

    monkeypatch.setattr(client_module, "_sleep", quick)


@pytest.fixture
def results_dir(tmp_path: Path) -> Iterator[Path]:
    """Prefect persists every task result here for the duration of the test."""
    path = tmp_path / "prefect-results"
    with temporary_settings(
        {PREFECT_RESULTS_PERSIST_BY_DEFAULT: True, PREFECT_LOCAL_STORAGE_PATH: path}
    ):
        yield path


async def run(src: Path, out: Path, base_url: str, **kwargs: Any) -> Any:
    return await call_batch_flow(
        source=str(src),
        out=str(out),
        defaults=FAST,
        base_url=base_url,
        images_per_minute=None,
        return_state=True,
        **kwargs,
    )


async def api_dump(flow_run_ids: list[Any]) -> str:
    """Everything the Prefect API holds about these flow runs, as one JSON text."""
    await APILogHandler.aflush()
    async with get_client() as client:
        parts: list[Any] = []
        runs = FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids))
        for _ in range(50):  # task runs and logs reach the API a little after the flow ends
            flow_runs = await client.read_flow_runs(flow_run_filter=runs)
            task_runs = await client.read_task_runs(flow_run_filter=runs)
            if task_runs and all(t.state and t.state.is_final() for t in task_runs):
                break
            await asyncio.sleep(0.2)
        parts += [r.model_dump(mode="json") for r in flow_runs]
        parts += [t.model_dump(mode="json") for t in task_runs]
        for run_id in flow_run_ids:
            only_run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
            logs = await client.read_logs(log_filter=only_run)
            parts += [log.model_dump(mode="json") for log in logs]
        artifacts = await client.read_artifacts()
        parts += [a.model_dump(mode="json") for a in artifacts]
    assert any(p.get("parameters") for p in parts), "the dump holds flow-run parameters"
    return json.dumps(parts)


async def test_the_key_leaks_nowhere(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    results_dir: Path,
    fast_backoff: None,
    request: pytest.FixtureRequest,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "uvicorn", "uvicorn.access", "novita_local", "inpaint_flows"):
        caplog.set_level(logging.DEBUG, logger=name)
    src = write_batch(tmp_path / "in", 3)
    outs = {name: tmp_path / f"out-{name}" for name in ("env", "block", "wrong", "gateway")}
    states = {}

    with LocalServer(ServerConfig(api_key=FAKE, access_log=True, seed=9)) as server:
        # 1. The key from the environment.
        monkeypatch.setenv("NOVITA_API_KEY", FAKE)
        states["env"] = await run(src, outs["env"], server.base_url)
        assert states["env"].is_completed(), states["env"].message

        # 2. The key from a Secret block; the environment holds nothing.
        monkeypatch.delenv("NOVITA_API_KEY")
        await Secret(value=SecretStr(FAKE)).asave(BLOCK, overwrite=True)
        states["block"] = await run(src, outs["block"], server.base_url, api_key_secret=BLOCK)
        assert states["block"].is_completed(), states["block"].message

        # 3. A wrong key: every job fails with the server's 403, the key quoted nowhere.
        monkeypatch.setenv("NOVITA_API_KEY", WRONG)
        states["wrong"] = await run(src, outs["wrong"], server.base_url)
        assert states["wrong"].is_failed()
        rows = report_rows(outs["wrong"])
        assert set(rows["reason"]) == {"INVALID_API_KEY"}
        assert rows["message"].str.contains("Check the API key").all()

        # 4. A gateway that quotes the Authorization header it got back in its error body.
        monkeypatch.setenv("NOVITA_API_KEY", FAKE)
        with MisbehavingProxy(server.base_url, echo_auth_rate=1.0) as gateway:
            states["gateway"] = await run(src, outs["gateway"], gateway.base_url)
            assert gateway.echoed >= 3
        assert states["gateway"].is_failed()
        rows = report_rows(outs["gateway"])
        assert set(rows["reason"]) == {"BAD_GATEWAY"}
        # The echoed header is in each message, with the key scrubbed out of it.
        assert rows["message"].str.contains("Authorization: Bearer \\*\\*\\*").all()
        assert server.stats()["submissions"]["accepted"] == 6  # runs 1 and 2 only

    flow_run_ids = [state.state_details.flow_run_id for state in states.values()]
    found: dict[str, list[str]] = {}

    # Logs and console output, the server's included.
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "") + repr(record.__dict__)
        if where := hits(text):
            found[f"log {record.name}: {record.getMessage()[:80]}"] = where
    # Prefect's console handler writes to the stream pytest had installed when logging was set
    # up (its global capture), so read that as well as this test's own fd capture.
    captured = capfd.readouterr()
    capman = request.config.pluginmanager.getplugin("capturemanager")
    console = captured.out + captured.err + "".join(capman.read_global_capture())
    if where := hits(console):
        found["stdout/stderr"] = where
    assert "Finished in state" in console, "the console output was searched"
    assert any(r.name.startswith("uvicorn.access") for r in caplog.records), "server log seen"
    assert any(r.name.startswith("httpx") for r in caplog.records), "client log seen"

    # Files: outputs, reports, gallery, batch.json, ledger; Prefect's persisted results.
    found.update(grep_files([*outs.values(), results_dir]))
    assert any(results_dir.rglob("*")), "task results were persisted (and searched)"

    # What the Prefect API stores: parameters, states, task runs, logs, artifacts.
    dump = await api_dump(flow_run_ids)
    if where := hits(dump):
        found["Prefect API"] = where
    for name, state in states.items():
        if where := hits(str(state.message)):
            found[f"final state of run {name}"] = where
    assert BLOCK in dump, "the Secret block's name is what the run recorded"

    # The API's database files (a Secret block's value is stored there encrypted).
    database = Path(str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value()).split("///", 1)[1])
    found.update(grep_files([database.parent]))

    searched_files = [
        f for root in [*outs.values(), results_dir, database.parent] for f in root.rglob("*")
    ]
    print(
        f"key search: {len(caplog.records)} log records, "
        f"{len(console)} chars of stdout/stderr, "
        f"{sum(f.is_file() for f in searched_files)} files "
        f"({sum(f.stat().st_size for f in searched_files if f.is_file())} bytes, "
        f"{sum(1 for _ in results_dir.rglob('*'))} persisted results), "
        f"{len(dump)} chars from the Prefect API; hits: {len(found)}"
    )
    assert found == {}, found
