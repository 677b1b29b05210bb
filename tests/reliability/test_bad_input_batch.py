"""Whole batches of bad inputs mixed with good ones, through the flow and the local server.

The corpus is `tests/inpaint_flows/badinputs.py` (41 file kinds, manifest-only mistakes, folder
layouts, unusable manifests). Unit tests there check `discover_jobs` and `prepare_job`; here the
same inputs go through the real flow, and what counts is what a user and the bill see:

- every input is one report row, invalid ones with their specific reason and message;
- the server was sent nothing invalid: it refused nothing, and it received exactly one submit
  per valid job (none per invalid one);
- the batch goes on: every valid input succeeded with a whole output, named inside the output
  folder, even when its name would collide or point outside;
- a manifest that cannot be used at all fails the run with the reason, before anything is paid.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inpaint_flows.jobs import discover_jobs
from inpaint_flows.pipeline import prepare
from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.flows.helpers import call_batch_flow
from tests.inpaint_flows.badinputs import (
    FILE_KINDS,
    INVALID_KINDS,
    Expect,
    FolderCorpus,
    write_bad_manifests,
    write_manifest_corpus,
    write_pair_folder,
    write_split_folder,
)
from tests.reliability.helpers import (
    FAST,
    assert_outputs_whole,
    job_hashes,
    outputs_of,
    report_rows,
    run_batch,
    server_view,
    stray_temp_files,
    write_batch,
)

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(ServerConfig(seed=3)) as running:
        yield running


def valid_jobs(source: Path) -> dict[str, str]:
    """Job name -> job key of every input that passes the checks (`prepare` leaves it open)."""
    keys = {}
    for job in discover_jobs(source, FAST):
        state = prepare(job)
        if not state.final and state.prepared is not None:
            keys[job.name] = state.prepared.job_key
    return keys


def files_outside(root: Path, out: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and out not in p.parents}


def check_rows(out: Path, expectations: dict[str, Expect], stems: dict[str, str]) -> int:
    """Each input one row with its expected outcome; returns how many were invalid."""
    rows = report_rows(out)
    assert sorted(rows["name"]) == sorted(expectations), "every input exactly once"
    wrong = []
    for name, expect in expectations.items():
        row: Any = rows.loc[name]
        if expect.status == "invalid":
            ok = (
                row["status"] == "invalid"
                and row["reason"] == expect.reason
                and (expect.message or "") in str(row["message"])
                and not outputs_of(row)
            )
        else:
            ok = row["status"] == "succeeded" and len(outputs_of(row)) == 1
            if ok and expect.size is not None:
                ok = (int(row["width"]), int(row["height"])) == expect.size
            if ok and expect.coverage is not None:
                ok = abs(float(row["mask_coverage_pct"]) - expect.coverage) <= 1.0
            if ok and name in stems:
                ok = Path(outputs_of(row)[0]).with_suffix("").as_posix() == stems[name]
        if not ok:
            wrong.append((name, expect, row["status"], row["reason"], row["message"]))
    assert not wrong, wrong
    assert_outputs_whole(out, rows)
    assert not stray_temp_files(out)
    return sum(1 for e in expectations.values() if e.status == "invalid")


def check_server(server: LocalServer, valid: dict[str, str], src: Path) -> None:
    """Nothing invalid reached the server; each valid job was submitted and paid once.

    Inputs with the same content (same job key: image bytes, mask bytes, parameters) are one
    paid request. A few corpus files differ in bytes yet convert to the very same request (a
    1-bit mask and an 8-bit one with the same pixels): those are separate jobs, so the server's
    count per request content is the number of distinct job keys that send it.
    """
    view = server_view(server)
    assert view.stats["submissions"]["rejected"] == {}, "the server refused something we sent"
    keys = set(valid.values())
    assert view.total_submitted == len(keys)
    assert view.total_accepted == len(keys)
    hashes = job_hashes(src)
    keys_per_hash: dict[str, set[str]] = {}
    for name, key in valid.items():
        keys_per_hash.setdefault(hashes[name], set()).add(key)
    for digest, same in keys_per_hash.items():
        assert view.accepted(digest) == len(same), digest


async def test_manifest_of_every_bad_kind_mixed_with_good(
    tmp_path: Path, server: LocalServer
) -> None:
    corpus = write_manifest_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    before_files = files_outside(tmp_path, out)
    valid = valid_jobs(corpus.path)

    result = await run_batch(corpus.path, out, server.base_url)

    assert not result.completed  # invalid rows make the run Failed, after the report
    invalid = check_rows(out, corpus.expectations, corpus.stems)
    check_server(server, valid, corpus.path)
    assert files_outside(tmp_path, out) == before_files, "nothing written outside the output"
    assert len(valid) >= 20 and invalid >= 25
    # Every file kind of the corpus went through the flow.
    reasons = {expect.reason for expect in corpus.expectations.values() if expect.reason}
    assert {FILE_KINDS[k] for k in INVALID_KINDS} <= reasons
    print(
        f"bad-input manifest: {len(corpus.expectations)} rows ({len(FILE_KINDS)} file kinds, "
        f"{len(corpus.expectations) - len(FILE_KINDS)} manifest-only rows), {invalid} invalid "
        f"({len(reasons)} distinct reasons), {len(valid)} valid, all valid ones succeeded"
    )


@pytest.mark.parametrize("layout", [write_pair_folder, write_split_folder], ids=["pairs", "split"])
async def test_folder_layouts_with_missing_ambiguous_and_colliding_names(
    layout: object, tmp_path: Path, server: LocalServer
) -> None:
    corpus: FolderCorpus = layout(tmp_path)  # type: ignore[operator]
    out = tmp_path / "out"
    valid = valid_jobs(corpus.source)

    await run_batch(corpus.source, out, server.base_url)

    check_rows(out, corpus.expectations, corpus.stems)
    check_server(server, valid, corpus.source)
    for ignored in corpus.ignored:
        assert ignored not in set(report_rows(out)["name"])


async def test_same_content_under_two_names_is_paid_once_and_each_gets_its_output(
    tmp_path: Path, server: LocalServer
) -> None:
    src = write_batch(tmp_path / "in", 3)
    shutil.copy(src / "img0.png", src / "img0 copy.png")
    shutil.copy(src / "img0_mask.png", src / "img0 copy_mask.png")
    out = tmp_path / "out"

    await run_batch(src, out, server.base_url)

    rows = report_rows(out)
    pair = rows.loc[["img0.png", "img0 copy.png"]]
    assert set(rows["status"]) == {"succeeded"}
    assert pair["task_id"].nunique() == 1, "one paid task serves both"
    assert sorted(outputs_of(r)[0] for _, r in pair.iterrows()) == ["img0 copy.png", "img0.png"]
    assert (out / "img0 copy.png").read_bytes() == (out / "img0.png").read_bytes()
    assert pair["message"].str.contains("Same image, mask and parameters").sum() == 1
    assert sorted(pair["submits"]) == [0, 1]
    view = server_view(server)
    assert view.total_accepted == 3
    assert view.accepted(job_hashes(src)["img0.png"]) == 1
    assert_outputs_whole(out, rows)

    # A rerun pays nothing, and each row keeps its own output.
    second = await run_batch(src, out, server.base_url)
    assert second.statuses == {"skipped-already-done": 4}
    assert outputs_of(report_rows(out).loc["img0 copy.png"]) == ["img0 copy.png"]
    assert server_view(server).total_accepted == 3

    # One of the two outputs deleted: copied again from the other, still nothing paid.
    (out / "img0 copy.png").unlink()
    await run_batch(src, out, server.base_url)
    assert (out / "img0 copy.png").read_bytes() == (out / "img0.png").read_bytes()
    assert server_view(server).total_accepted == 3


async def test_unusable_manifests_fail_the_run_before_anything_is_paid(
    tmp_path: Path, server: LocalServer
) -> None:
    manifests = write_bad_manifests(tmp_path / "bad")
    for bad in manifests:
        out = tmp_path / f"out-{bad.kind}"
        before = server_view(server).total_submitted
        state = await call_batch_flow(
            source=str(bad.path),
            out=str(out),
            defaults=FAST,
            base_url=server.base_url,
            images_per_minute=None,
            return_state=True,
        )
        assert state.is_failed(), bad.kind
        assert bad.message in str(state.message), (bad.kind, state.message)
        assert not (out / "report.csv").exists()
        assert server_view(server).total_submitted == before == 0
    assert len(manifests) >= 10
