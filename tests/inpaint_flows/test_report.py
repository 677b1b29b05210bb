"""The report frame, its two files, reading it back, merging reruns, and the summary
(`inpaint_flows.summary`)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inpaint_flows import storage
from inpaint_flows.contract import SAMPLERS
from inpaint_flows.models import Embedding, InpaintParams, JobOutcome, JobStatus, LoRA
from inpaint_flows.report import (
    COLUMNS,
    ROWS_PER_WRITE,
    merge_outcomes,
    outcomes_from_frame,
    outcomes_to_frame,
    read_report,
    write_report,
    write_report_rows,
)
from inpaint_flows.summary import summarize

EXPECTED_COLUMNS = [
    "name", "status", "reason", "message", "image_path", "mask_path", "width", "height",
    "mask_coverage_pct", "mask_source", "mask_ops", "mask_warnings", "job_key", "task_id",
    "attempts", "submits", "polls", "rate_limited", "submitted_at", "finished_at",
    "latency_s", "seed_used", "outputs", "api",
    "param_model_name", "param_prompt", "param_negative_prompt", "param_image_num",
    "param_steps", "param_guidance_scale", "param_sampler_name", "param_seed",
    "param_mask_blur", "param_sd_vae", "param_loras", "param_embeddings", "param_clip_skip",
    "param_strength", "param_inpainting_full_res", "param_inpainting_full_res_padding",
    "param_inpainting_mask_invert", "param_initial_noise_multiplier",
    "param_response_image_type",
]  # fmt: skip


def outcome(name: str = "cat.png", **changes: Any) -> JobOutcome:
    base: dict[str, Any] = {
        "name": name,
        "image_path": f"/data/images/{name}",
        "mask_path": f"/data/masks/{name}",
        "status": JobStatus.SUCCEEDED,
        "params": InpaintParams(),
        "job_key": "ab" * 32,
        "width": 640,
        "height": 480,
        "mask_coverage_pct": 12.5,
        "task_id": f"task-{name}",
        "attempts": 1,
        "submits": 1,
        "polls": 3,
        "submitted_at": "2025-01-01T00:00:00+00:00",
        "finished_at": "2025-01-01T00:00:12.5+00:00",
        "latency_s": 12.5,
        "seed_used": "1234",
        "outputs": (f"/out/{name}",),
    }
    return JobOutcome.model_validate({**base, **changes})


def roundtrip(outcomes: list[JobOutcome], fmt: str) -> tuple[pd.DataFrame, list[JobOutcome]]:
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_report(outcomes_to_frame(outcomes), tmp)
        frame = read_report(paths.csv if fmt == "csv" else paths.parquet)
    return frame, outcomes_from_frame(frame)


# --------------------------------------------------------------------------- columns and dtypes


def test_columns_are_stable_and_ordered() -> None:
    assert list(outcomes_to_frame([outcome()]).columns) == EXPECTED_COLUMNS
    assert list(COLUMNS) == EXPECTED_COLUMNS


def test_every_request_parameter_has_a_column() -> None:
    assert {c.removeprefix("param_") for c in COLUMNS if c.startswith("param_")} == set(
        InpaintParams.model_fields
    )


def test_dtypes_are_explicit_and_nullable() -> None:
    df = outcomes_to_frame([outcome(), outcome("x.png", status="invalid", width=None)])
    dtypes = {c: str(t) for c, t in df.dtypes.items()}
    assert dtypes["name"] == dtypes["status"] == dtypes["outputs"] == "string"
    assert dtypes["width"] == dtypes["attempts"] == dtypes["param_steps"] == "Int64"
    assert dtypes["param_seed"] == dtypes["param_inpainting_mask_invert"] == "Int64"
    assert dtypes["latency_s"] == dtypes["param_guidance_scale"] == "Float64"
    assert dtypes["param_loras"] == dtypes["param_response_image_type"] == "string"
    assert set(dtypes.values()) <= {"string", "Int64", "Float64"}
    assert pd.isna(df.loc[1, "width"])


def test_empty_batch_keeps_columns_and_dtypes() -> None:
    df = outcomes_to_frame([])
    assert len(df) == 0
    assert {c: str(t) for c, t in df.dtypes.items()} == COLUMNS


def test_row_holds_what_was_sent() -> None:
    params = InpaintParams(
        prompt="a red door",
        negative_prompt=None,
        seed=42,
        loras=(LoRA(model_name="film", strength=0.6),),
        response_image_type="webp",
    )
    row = outcomes_to_frame([outcome(params=params, outputs=("o/a.png", "o/b;c.png"))]).iloc[0]
    assert row["param_prompt"] == "a red door"
    assert pd.isna(row["param_negative_prompt"])  # not sent
    assert pd.isna(row["param_sd_vae"])
    assert row["param_seed"] == 42
    assert json.loads(row["param_loras"]) == [{"model_name": "film", "strength": 0.6}]
    assert pd.isna(row["param_embeddings"])
    assert row["param_response_image_type"] == "webp"
    assert json.loads(row["outputs"]) == ["o/a.png", "o/b;c.png"]
    assert row["status"] == "succeeded"


def test_number_beyond_64_bits_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="'polls' holds a number outside the 64-bit range"):
        outcomes_to_frame([outcome(polls=2**64)])
    with pytest.raises(ValueError, match="less than or equal to 9223372036854775807"):
        InpaintParams(seed=2**64)  # a seed the API would refuse never reaches a report


def test_one_row_per_input_in_input_order() -> None:
    names = ["b.png", "a.png", "sub/c.png"]
    df = outcomes_to_frame([outcome(n) for n in names])
    assert list(df["name"]) == names


# --------------------------------------------------------------------------- round trip


TRICKY = [
    outcome(),
    outcome(
        'weird, "quoted" <name>;\nwith newline ü 🐈.png',
        status="failed",
        reason="TASK_FAILED",
        message='line one\r\nline "two", three',
        outputs=(),
        latency_s=None,
        seed_used=None,
        params=InpaintParams(
            prompt="NA",
            negative_prompt="null",
            sd_vae="None",
            seed=2**63 - 1,
            guidance_scale=0.1 + 0.2 + 7,
            strength=None,
            clip_skip=None,
            mask_blur=None,
            loras=(),
            embeddings=(Embedding(model_name="easynegative"),),
        ),
    ),
    outcome(
        "invalid.png",
        status="invalid",
        mask_path=None,
        reason="INVALID_MASK",
        message="mask is 10x10 but image is 20x20",
        job_key=None,
        width=None,
        height=None,
        mask_coverage_pct=None,
        task_id=None,
        attempts=0,
        submits=0,
        polls=0,
        submitted_at=None,
        finished_at=None,
        latency_s=None,
        outputs=(),
    ),
    outcome("skipped.png", status="skipped-already-done", mask_coverage_pct=1e-300),
    outcome("many.png", outputs=tuple(f"out/many_{i}.png" for i in range(8))),
    outcome(
        "drawn.png",
        mask_path=None,
        mask_source="coco+region",
        mask_ops="grow 4, feather 2",
        mask_warnings="coco a.json image id 1: 'person (annotation id 3)' box ...; clipped",
    ),
]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_round_trips_exactly(fmt: str) -> None:
    frame, back = roundtrip(TRICKY, fmt)
    assert back == TRICKY
    pd.testing.assert_frame_equal(frame, outcomes_to_frame(TRICKY))


def test_csv_and_parquet_read_back_identically(tmp_path: Path) -> None:
    paths = write_report(outcomes_to_frame(TRICKY), tmp_path)
    pd.testing.assert_frame_equal(read_report(paths.csv), read_report(paths.parquet))


def test_empty_optional_text_is_recorded_as_missing() -> None:
    # CSV cannot tell "" from missing, so the frame does not either, in both formats.
    original = outcome(reason="", message="", task_id="")
    for fmt in ("csv", "parquet"):
        _, [back] = roundtrip([original], fmt)
        assert back.reason is None and back.message is None and back.task_id is None


def test_empty_required_text_comes_back_empty() -> None:
    original = outcome(image_path="")
    for fmt in ("csv", "parquet"):
        assert roundtrip([original], fmt)[1] == [original]


_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_opt_text = st.none() | st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)
_float = st.floats(allow_nan=False, allow_infinity=False)
_int64 = st.integers(min_value=0, max_value=2**63 - 1)


def _bounded(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=lo, max_value=hi, allow_nan=False)


_name = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)
_params = st.builds(
    InpaintParams,
    model_name=_name,
    prompt=st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=60),
    negative_prompt=_opt_text,
    image_num=st.integers(1, 8),
    steps=st.integers(1, 100),
    guidance_scale=_bounded(1, 30),
    sampler_name=st.sampled_from(SAMPLERS),
    seed=st.integers(min_value=-1, max_value=2**63 - 1),
    mask_blur=st.none() | st.integers(0, 64),
    sd_vae=_opt_text,
    loras=st.none()
    | st.lists(st.builds(LoRA, model_name=_name, strength=_bounded(0, 1)), max_size=5).map(tuple),
    embeddings=st.none() | st.lists(st.builds(Embedding, model_name=_name), max_size=5).map(tuple),
    clip_skip=st.none() | st.integers(1, 12),
    strength=st.none() | _bounded(0, 1),
    inpainting_full_res=st.sampled_from([0, 1]),
    inpainting_full_res_padding=st.integers(0, 256),
    inpainting_mask_invert=st.sampled_from([0, 1]),
    initial_noise_multiplier=_bounded(0, 1.5),
    response_image_type=st.sampled_from(["png", "webp", "jpeg"]),
)

_outcomes = st.builds(
    JobOutcome,
    name=_text,
    image_path=_text,
    mask_path=_opt_text,
    status=st.sampled_from(list(JobStatus)),
    params=_params,
    job_key=_opt_text,
    width=st.none() | _int64,
    height=st.none() | _int64,
    mask_coverage_pct=st.none() | _float,
    task_id=_opt_text,
    reason=_opt_text,
    message=_opt_text,
    attempts=_int64,
    submits=_int64,
    polls=_int64,
    submitted_at=_opt_text,
    finished_at=_opt_text,
    latency_s=st.none() | _float,
    seed_used=_opt_text,
    outputs=st.lists(_text, max_size=4).map(tuple),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outcomes=st.lists(_outcomes, max_size=4))
def test_any_outcomes_round_trip_through_both_files(outcomes: list[JobOutcome]) -> None:
    assert outcomes_from_frame(outcomes_to_frame(outcomes)) == outcomes
    for fmt in ("csv", "parquet"):
        assert roundtrip(outcomes, fmt)[1] == outcomes


def test_read_report_accepts_an_output_folder(tmp_path: Path) -> None:
    write_report(outcomes_to_frame(TRICKY), tmp_path)
    assert outcomes_from_frame(read_report(tmp_path)) == TRICKY
    (tmp_path / "report.parquet").unlink()
    assert outcomes_from_frame(read_report(tmp_path)) == TRICKY


def test_read_report_refuses_other_suffixes_and_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "report.xlsx").write_text("x")
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        read_report(tmp_path / "report.xlsx")
    with pytest.raises(FileNotFoundError, match=r"report\.parquet"):
        read_report(tmp_path)


def test_extra_columns_are_kept_and_ignored(tmp_path: Path) -> None:
    df = outcomes_to_frame(TRICKY)
    df["note"] = "checked by Ana"
    paths = write_report(df, tmp_path)
    frame = read_report(paths.csv)
    assert list(frame.columns) == [*EXPECTED_COLUMNS, "note"]
    assert outcomes_from_frame(frame) == TRICKY


def test_missing_param_column_takes_the_default() -> None:
    df = outcomes_to_frame([outcome()]).drop(columns=["param_steps"])
    assert outcomes_from_frame(df)[0].params.steps == InpaintParams().steps


def test_report_written_before_the_mask_columns_still_reads() -> None:
    df = outcomes_to_frame([outcome()]).drop(columns=["mask_source", "mask_ops", "mask_warnings"])
    (back,) = outcomes_from_frame(df)
    assert back == outcome() and back.mask_source is None


def test_missing_outcome_column_is_a_clear_error() -> None:
    df = outcomes_to_frame([outcome()]).drop(columns=["status"])
    with pytest.raises(ValueError, match=r"missing column.*status"):
        outcomes_from_frame(df)


def test_bad_value_names_the_row() -> None:
    df = outcomes_to_frame([outcome("a.png"), outcome("b.png")])
    df.loc[1, "status"] = "exploded"
    with pytest.raises(ValueError, match=r"row 2 \('b.png'\)"):
        outcomes_from_frame(df)


def test_bad_number_in_csv_is_a_clear_error(tmp_path: Path) -> None:
    paths = write_report(outcomes_to_frame([outcome()]), tmp_path)
    text = paths.csv.read_text().replace(",640,", ",six hundred,")
    paths.csv.write_text(text)
    with pytest.raises(ValueError, match="'width' cannot be read as Int64"):
        read_report(paths.csv)


# --------------------------------------------------------------------------- atomicity


def test_write_report_writes_both_files(tmp_path: Path) -> None:
    paths = write_report(outcomes_to_frame(TRICKY), tmp_path / "new" / "out")
    assert paths.csv == tmp_path / "new" / "out" / "report.csv"
    assert paths.parquet == tmp_path / "new" / "out" / "report.parquet"
    assert paths.csv.read_text().startswith("name,status,reason,")


def test_crash_during_write_keeps_previous_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = write_report(outcomes_to_frame([outcome("old.png")]), tmp_path)
    old_csv, old_parquet = old.csv.read_bytes(), old.parquet.read_bytes()

    def crash(src: object, dst: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(storage.os, "replace", crash)
    with pytest.raises(OSError, match="Input/output"):
        write_report(outcomes_to_frame(TRICKY), tmp_path)
    assert old.csv.read_bytes() == old_csv
    assert old.parquet.read_bytes() == old_parquet
    assert [o.name for o in outcomes_from_frame(read_report(old.parquet))] == ["old.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv", "report.parquet"]


def test_crash_while_writing_keeps_previous_report(tmp_path: Path) -> None:
    old = write_report(outcomes_to_frame([outcome("old.png")]), tmp_path)
    before = (old.csv.read_bytes(), old.parquet.read_bytes())

    def rows_then_killed() -> Iterator[JobOutcome]:
        for i in range(ROWS_PER_WRITE + 10):  # the first rows are already in both files
            yield outcome(f"{i}.png")
        raise KeyboardInterrupt  # killed mid-write

    with pytest.raises(KeyboardInterrupt):
        write_report_rows(rows_then_killed(), tmp_path)
    assert (old.csv.read_bytes(), old.parquet.read_bytes()) == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_rows_written_a_few_at_a_time_give_the_same_report(tmp_path: Path) -> None:
    rows = [*TRICKY, *(outcome(f"{i}.png") for i in range(2 * ROWS_PER_WRITE + 3))]
    whole = write_report(outcomes_to_frame(rows), tmp_path / "whole")
    streamed = write_report_rows(iter(rows), tmp_path / "streamed")
    assert streamed.csv.read_bytes() == whole.csv.read_bytes()
    for path in (streamed.csv, streamed.parquet):
        assert outcomes_from_frame(read_report(path)) == rows
    empty = write_report_rows([], tmp_path / "empty")
    assert (
        empty.csv.read_bytes()
        == write_report(outcomes_to_frame([]), tmp_path / "e").csv.read_bytes()
    )
    assert list(read_report(empty.parquet).columns) == list(COLUMNS)


# --------------------------------------------------------------------------- merge


def test_merge_replaces_by_name_and_keeps_order() -> None:
    previous = [
        outcome("a.png"),
        outcome("b.png", status="failed", reason="TASK_FAILED"),
        outcome("c.png", status="invalid", reason="INVALID_MASK"),
    ]
    new = [outcome("c.png", task_id="t-c2"), outcome("b.png", task_id="t-b2")]
    merged = merge_outcomes(previous, new)
    assert [o.name for o in merged] == ["a.png", "b.png", "c.png"]
    assert merged[0] is previous[0]
    assert merged[1].task_id == "t-b2" and merged[1].status == JobStatus.SUCCEEDED
    assert merged[2].task_id == "t-c2"


def test_merge_appends_new_names_in_new_order() -> None:
    merged = merge_outcomes([outcome("a.png")], [outcome("z.png"), outcome("a.png"), outcome("m")])
    assert [o.name for o in merged] == ["a.png", "z.png", "m"]


@pytest.mark.parametrize(
    ("previous", "new", "names"),
    [
        pytest.param([], [], [], id="both-empty"),
        pytest.param([], ["a"], ["a"], id="no-previous"),
        pytest.param(["a", "b"], [], ["a", "b"], id="nothing-rerun"),
    ],
)
def test_merge_edge_cases(previous: list[str], new: list[str], names: list[str]) -> None:
    merged = merge_outcomes([outcome(n) for n in previous], [outcome(n) for n in new])
    assert [o.name for o in merged] == names


def test_merge_refuses_duplicate_names() -> None:
    with pytest.raises(ValueError, match=r"new outcomes repeat the name.*'a\.png'"):
        merge_outcomes([outcome("a.png")], [outcome("a.png"), outcome("a.png")])
    with pytest.raises(ValueError, match="previous outcomes repeat"):
        merge_outcomes([outcome("b"), outcome("b")], [])


def test_merge_through_the_files(tmp_path: Path) -> None:
    # What rerun-failed does: read the report, rerun failures, merge, write it back.
    write_report(outcomes_to_frame([outcome("a.png"), outcome("b.png", status="failed")]), tmp_path)
    previous = outcomes_from_frame(read_report(tmp_path / "report.csv"))
    write_report(outcomes_to_frame(merge_outcomes(previous, [outcome("b.png")])), tmp_path)
    final = outcomes_from_frame(read_report(tmp_path / "report.parquet"))
    assert [(o.name, o.status) for o in final] == [
        ("a.png", JobStatus.SUCCEEDED),
        ("b.png", JobStatus.SUCCEEDED),
    ]


# --------------------------------------------------------------------------- summary


def test_summary_counts_reasons_latency_and_throughput() -> None:
    rows = [
        outcome("a", latency_s=10.0, finished_at="2025-01-01T00:00:10+00:00"),
        outcome("b", latency_s=20.0, finished_at="2025-01-01T00:00:30+00:00"),
        outcome("c", status="failed", reason="TASK_FAILED", latency_s=30.0, outputs=()),
        outcome("d", status="failed", reason="TASK_FAILED", latency_s=None, outputs=()),
        outcome("e", status="invalid", reason="INVALID_MASK", outputs=(), latency_s=None),
        outcome("f", status="failed", reason=None, outputs=(), latency_s=None),
        outcome(
            "g",
            status="skipped-already-done",
            latency_s=999.0,
            submitted_at="2024-01-01T00:00:00+00:00",
        ),
    ]
    s = summarize(rows)
    assert s.total == 7
    assert s.counts[JobStatus.SUCCEEDED] == 2
    assert s.counts["failed"] == 3
    assert s.counts[JobStatus.PENDING] == 0
    assert list(s.counts) == list(JobStatus)
    assert s.failed == 4
    assert s.top_reasons == (("TASK_FAILED", 2), ("INVALID_MASK", 1), ("UNKNOWN", 1))
    assert s.outputs == 3
    # The skipped row's old latency and timestamps belong to an earlier run.
    assert s.latency_count == 3
    assert s.latency_total_s == 60.0
    assert s.latency_mean_s == 20.0
    assert s.latency_median_s == 20.0
    assert s.latency_max_s == 30.0
    assert s.latency_p95_s is not None and 20.0 < s.latency_p95_s <= 30.0
    assert s.wall_s == 30.0
    assert s.images_per_min == pytest.approx(4.0)


def test_summary_top_limits_the_reasons() -> None:
    rows = [outcome(str(i), status="failed", reason=f"R{i}") for i in range(8)]
    assert len(summarize(rows, top=3).top_reasons) == 3


def test_summary_of_nothing() -> None:
    s = summarize([])
    assert s.total == 0 and s.failed == 0
    assert s.latency_mean_s is None and s.images_per_min is None and s.wall_s is None
    assert "**total** | **0**" in s.to_markdown()


def test_summary_markdown_shows_counts_and_reasons() -> None:
    text = summarize(
        [outcome("a"), outcome("b", status="failed", reason="TASK_FAILED")]
    ).to_markdown()
    assert "| succeeded | 1 |" in text
    assert "| failed | 1 |" in text
    assert "| pending |" not in text  # zero rows left out
    assert "`TASK_FAILED`: 1" in text
    assert "images/min" in text
