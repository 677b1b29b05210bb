"""Checking a job's inputs before paying (`input_checks`), over the bad-input corpus and alone."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from inpaint_flows.errors import InputError
from inpaint_flows.input_checks import prepare_job
from inpaint_flows.jobs import discover_jobs
from inpaint_flows.models import InpaintParams, Job, job_key_for
from inpaint_flows.payload import encode_payload
from tests.inpaint_flows.badinputs import (
    FILE_KINDS,
    VALID_KINDS,
    FileCase,
    ManifestCorpus,
    write_manifest_corpus,
)

DEFAULTS = InpaintParams()
KINDS = list(FILE_KINDS)


def _case_job(case: FileCase) -> Job:
    return case.job(DEFAULTS)


# ---------------------------------------------------------------------------------------------
# The corpus, table-driven


def test_corpus_has_at_least_fifteen_refused_kinds_and_ten_accepted() -> None:
    assert len(VALID_KINDS) >= 10 and len(KINDS) - len(VALID_KINDS) >= 15


@pytest.mark.parametrize("kind", KINDS)
def test_prepare_job_over_the_corpus(kind: str, corpus: dict[str, FileCase]) -> None:
    case = corpus[kind]
    expect = case.expect
    job = _case_job(case)
    if expect.status == "invalid":
        assert expect.error is not None and expect.message is not None
        with pytest.raises(expect.error) as info:
            prepare_job(job)
        assert info.value.reason == expect.reason
        assert expect.message in str(info.value)
        return
    prepared = prepare_job(job)
    assert (prepared.width, prepared.height) == expect.size
    assert expect.coverage is not None
    assert prepared.mask_coverage_pct == pytest.approx(expect.coverage, abs=1.0)
    assert prepared.job == job


def test_checking_and_encoding_never_modify_the_inputs(corpus: dict[str, FileCase]) -> None:
    folder = next(iter(corpus.values())).image.parent

    def snapshot() -> dict[Path, str]:
        return {
            p: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.stat().st_size < 1_000_000
        }

    before = snapshot()
    for case in corpus.values():
        job = _case_job(case)
        try:
            prepare_job(job)
            encode_payload(job)
        except InputError:
            pass
    assert snapshot() == before


@pytest.fixture(scope="module")
def manifest_corpus(tmp_path_factory: pytest.TempPathFactory) -> ManifestCorpus:
    return write_manifest_corpus(tmp_path_factory.mktemp("manifest"))


def test_manifest_corpus_end_to_end(manifest_corpus: ManifestCorpus) -> None:
    """Discovery then preparation gives every row its expected outcome; none stops the rest."""
    jobs = discover_jobs(manifest_corpus.path, DEFAULTS)
    outcomes: dict[str, tuple[str, str | None, str]] = {}
    for job in jobs:
        try:
            prepare_job(job)
            outcomes[job.name] = ("valid", None, "")
        except InputError as exc:
            outcomes[job.name] = ("invalid", exc.reason, str(exc))
    assert set(outcomes) == set(manifest_corpus.expectations)
    wrong = []
    for name, expect in manifest_corpus.expectations.items():
        status, reason, message = outcomes[name]
        if status != expect.status or (
            status == "invalid"
            and (reason != expect.reason or (expect.message or "") not in message)
        ):
            wrong.append((name, expect.status, expect.reason, outcomes[name]))
    assert not wrong, wrong
    assert sum(1 for o in outcomes.values() if o[0] == "valid") >= 20


def test_job_key_hashes_file_bytes_and_params(corpus: dict[str, FileCase]) -> None:
    case = corpus["soft_mask"]
    job = _case_job(case)
    prepared = prepare_job(job)
    assert case.mask is not None
    expected = job_key_for(
        hashlib.sha256(case.image.read_bytes()).hexdigest(),
        hashlib.sha256(case.mask.read_bytes()).hexdigest(),
        job.params,
    )
    assert prepared.job_key == expected
    other = job.model_copy(update={"params": job.params.with_overrides({"seed": 7})})
    assert prepare_job(other).job_key != prepared.job_key


def test_prepare_job_refuses_a_job_with_a_discovery_problem(corpus: dict[str, FileCase]) -> None:
    job = _case_job(corpus["soft_mask"]).model_copy(
        update={"problem": "row 3: duplicate", "problem_reason": "DUPLICATE_ROW"}
    )
    with pytest.raises(InputError, match="row 3: duplicate") as info:
        prepare_job(job)
    assert info.value.reason == "DUPLICATE_ROW"
    with pytest.raises(InputError):
        encode_payload(job)
