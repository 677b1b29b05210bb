"""The batch report: one row per input, as a DataFrame, `report.csv` and `report.parquet`.

The report is both what a person reads and what `rerun-failed` reads back, so it round-trips:
`outcomes_from_frame(read_report(p))` rebuilds the `JobOutcome`s that were written, from either
file. That decides the format:

- A fixed column order and explicit nullable dtypes (`Int64`, `Float64`, `string`), so the CSV
  and the parquet file read back as the same frame, and an all-empty column keeps its type.
- Request parameters get one `param_<field>` column each, derived from `InpaintParams`, so a
  field added there shows up here. Values are the ones sent; a parameter left out of the
  request (None) is an empty cell. Compound values (`loras`, `embeddings`) are JSON text.
- `outputs` is a JSON array of paths, not a `;`-joined string: file names may contain `;`.
  An input with no outputs has an empty cell.
- CSV cannot tell an empty string from a missing value, so the frame cannot either: in optional
  text fields (reason, message, task id, ...) an empty string is recorded as missing. Required
  text fields read back as "" when empty.
- Timestamps stay ISO 8601 text as the pipeline wrote them, so they come back unchanged.

Writes are atomic (see `storage`): a crash leaves the previous report, never half of one.
"""

from __future__ import annotations

import itertools
import json
import math
import types
import typing
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

# pyarrow writes the report (and reads it, as pandas' parquet engine): imported here, it loads
# with the rest at start-up, while the run waits for Prefect's server, not after the last download.
import pyarrow as pa
import pyarrow.parquet as pq

from inpaint_flows.models import InpaintParams, JobOutcome, JobStatus
from inpaint_flows.storage import StrPath, atomic_text_writer, atomic_writer

CSV_NAME = "report.csv"
PARQUET_NAME = "report.parquet"
PARAM_PREFIX = "param_"

Dtype = Literal["string", "Int64", "Float64", "boolean"]


def _param_dtype(annotation: Any) -> Dtype | None:
    """The column dtype for one InpaintParams field, or None for JSON text."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _param_dtype(args[0])
    if origin is Literal:
        kinds = {type(a) for a in args}
        return _param_dtype(kinds.pop()) if len(kinds) == 1 else None
    if annotation is bool:
        return "boolean"
    if annotation is int:
        return "Int64"
    if annotation is float:
        return "Float64"
    if annotation is str:
        return "string"
    return None


def _is_optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


# Every JobOutcome field except `params`, in the model's (report) order, with its dtype.
OUTCOME_COLUMNS: dict[str, Dtype] = {
    name: _param_dtype(info.annotation) or "string"
    for name, info in JobOutcome.model_fields.items()
    if name != "params"
}
# Fields written as JSON text rather than a scalar column.
_JSON_OUTCOME_FIELDS = frozenset(
    name
    for name, info in JobOutcome.model_fields.items()
    if name != "params" and typing.get_origin(info.annotation) is tuple
)

# Columns added after reports were first written: an older report without them still reads,
# and its rows take the field's default.
_LATER_COLUMNS = frozenset({"mask_source", "mask_ops", "mask_warnings", "rate_limited", "api"})

# param field -> dtype; None means the value is stored as JSON text in a string column.
_PARAM_FIELDS: dict[str, Dtype | None] = {
    name: _param_dtype(info.annotation) for name, info in InpaintParams.model_fields.items()
}

PARAM_COLUMNS: dict[str, Dtype] = {
    f"{PARAM_PREFIX}{name}": dtype or "string" for name, dtype in _PARAM_FIELDS.items()
}

COLUMNS: dict[str, Dtype] = {**OUTCOME_COLUMNS, **PARAM_COLUMNS}
"""Every report column, in order, with its pandas dtype."""


@dataclass(frozen=True)
class ReportPaths:
    """Where `write_report` put the two files."""

    csv: Path
    parquet: Path


# --------------------------------------------------------------------------- frame <-> outcomes


def outcomes_to_frame(outcomes: Iterable[JobOutcome]) -> pd.DataFrame:
    """One row per outcome, columns and dtypes as in `COLUMNS`, input order kept."""
    values: dict[str, list[Any]] = {column: [] for column in COLUMNS}
    for outcome in outcomes:
        for column, value in _row(outcome).items():
            values[column].append(value)
    columns = {}
    for column, dtype in COLUMNS.items():
        try:
            columns[column] = pd.array(values[column], dtype=dtype)
        except OverflowError as exc:  # e.g. a seed beyond 64 bits
            raise ValueError(
                f"report column {column!r} holds a number outside the 64-bit range: {exc}"
            ) from exc
    return pd.DataFrame(columns)


def _row(outcome: JobOutcome) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for field in OUTCOME_COLUMNS:
        value = getattr(outcome, field)
        if field == "outputs":
            row[field] = json.dumps(list(value), ensure_ascii=False) if value else None
        elif field == "status":
            row[field] = JobStatus(value).value
        elif value == "" and _is_optional(JobOutcome.model_fields[field].annotation):
            row[field] = None  # see module docstring: "" and missing are one in CSV
        else:
            row[field] = value
    sent = outcome.params.model_dump(mode="json")
    for field, dtype in _PARAM_FIELDS.items():
        value = sent[field]
        if dtype is None and value is not None:
            value = json.dumps(value, ensure_ascii=False)
        elif value == "" and _is_optional(InpaintParams.model_fields[field].annotation):
            value = None
        row[f"{PARAM_PREFIX}{field}"] = value
    return row


def outcomes_from_frame(df: pd.DataFrame) -> list[JobOutcome]:
    """Rebuild the outcomes a report frame was made from.

    Extra columns (a note a person added in a spreadsheet) are ignored. A missing `param_`
    column takes the parameter's default, so an older report still reads; a missing outcome
    column, an unknown status or an invalid value raises ValueError naming the row.
    """
    missing = [c for c in OUTCOME_COLUMNS if c not in df.columns and c not in _LATER_COLUMNS]
    if missing:
        raise ValueError(
            f"report is missing column(s) {', '.join(missing)}; was it written by inpaint-flows?"
        )
    outcomes: list[JobOutcome] = []
    for index, record in enumerate(df.to_dict("records")):
        label = record.get("name")
        where = f"report row {index + 1} ({label!r})" if _present(label) else f"row {index + 1}"
        try:
            outcomes.append(_outcome(record))
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            raise ValueError(f"{where} cannot be read back: {exc}") from exc
    return outcomes


def _outcome(record: Mapping[Any, Any]) -> JobOutcome:
    data: dict[str, Any] = {}
    for field, dtype in OUTCOME_COLUMNS.items():
        if field not in record:  # a column added after the report was written
            continue
        value = record[field]
        if field in _JSON_OUTCOME_FIELDS:
            data[field] = tuple(json.loads(value)) if _present(value) else ()
        else:
            data[field] = _scalar(value, dtype, JobOutcome.model_fields[field].annotation)
    data["status"] = JobStatus(data["status"])
    params: dict[str, Any] = {}
    for field, param_dtype in _PARAM_FIELDS.items():
        column = f"{PARAM_PREFIX}{field}"
        if column not in record:
            continue
        value = record[column]
        annotation = InpaintParams.model_fields[field].annotation
        if param_dtype is None:
            params[field] = json.loads(value) if _present(value) else None
        else:
            params[field] = _scalar(value, param_dtype, annotation)
    data["params"] = InpaintParams.model_validate(params)
    return JobOutcome.model_validate(data)


def _present(value: Any) -> bool:
    return not (value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)))


def _scalar(value: Any, dtype: Dtype, annotation: Any) -> Any:
    if not _present(value):
        # A required text field that was "" comes back from CSV as missing.
        if dtype == "string" and not _is_optional(annotation):
            return ""
        return None
    if dtype == "Int64":
        return int(value)
    if dtype == "Float64":
        return float(value)
    if dtype == "boolean":
        return bool(value)
    return str(value)


# --------------------------------------------------------------------------- files


ROWS_PER_WRITE = 500
"""Rows turned into a frame and written at a time: a report's memory does not grow with it."""


def write_report(df: pd.DataFrame, out_dir: StrPath) -> ReportPaths:
    """Write `report.csv` and `report.parquet` into `out_dir`, each atomically.

    Each file is either the previous version or the new one, never partial. The two are
    replaced one after the other (parquet first), so a crash between them can leave them one
    run apart; both are complete either way.
    """
    return _write_frames([_conform(df)], Path(out_dir))


def write_report_rows(outcomes: Iterable[JobOutcome], out_dir: StrPath) -> ReportPaths:
    """`write_report(outcomes_to_frame(outcomes), out_dir)`, `ROWS_PER_WRITE` rows at a time.

    The same two files, byte for byte, without the whole report in memory at once as a frame,
    an Arrow table, a parquet buffer and a CSV string: at 3,000 rows those were +24 MB of peak
    memory at the end of a run, growing with the batch.
    """

    def frames(rows: Iterator[JobOutcome]) -> Iterator[pd.DataFrame]:
        batch = list(itertools.islice(rows, ROWS_PER_WRITE))
        yield outcomes_to_frame(batch)  # even empty: the files still get a header and schema
        while batch := list(itertools.islice(rows, ROWS_PER_WRITE)):
            yield outcomes_to_frame(batch)

    return _write_frames(frames(iter(outcomes)), Path(out_dir))


def _write_frames(frames: Iterable[pd.DataFrame], directory: Path) -> ReportPaths:
    """Append each frame (typed as `COLUMNS`, the same columns each) to both files."""
    paths = ReportPaths(csv=directory / CSV_NAME, parquet=directory / PARQUET_NAME)
    # Nested so that the parquet file is replaced first, as `write_report` says.
    with atomic_text_writer(paths.csv) as csv, atomic_writer(paths.parquet) as parquet_file:
        parquet: pq.ParquetWriter | None = None
        try:
            for frame in frames:
                header = parquet is None
                if parquet is None:
                    schema = pa.Schema.from_pandas(frame, preserve_index=False)
                    parquet = pq.ParquetWriter(parquet_file, schema)
                parquet.write_table(
                    pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
                )
                # CRLF (RFC 4180) also makes the csv writer quote a lone "\r" inside a value,
                # which it leaves bare with "\n" line ends, and a reader takes for a line break.
                frame.to_csv(csv, header=header, index=False, lineterminator="\r\n")
        finally:
            if parquet is not None:
                parquet.close()
    return paths


def read_report(path: StrPath) -> pd.DataFrame:
    """Read a report written by `write_report`, typed as `COLUMNS`.

    `path` is a `.csv` or `.parquet` file, or an output folder (its `report.parquet` is
    preferred, else its `report.csv`).
    """
    source = Path(path)
    if source.is_dir():
        for name in (PARQUET_NAME, CSV_NAME):
            if (source / name).is_file():
                source = source / name
                break
        else:
            raise FileNotFoundError(
                f"no {PARQUET_NAME} or {CSV_NAME} in {source}; pass the report file itself"
            )
    suffix = source.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(source, engine="pyarrow")
    elif suffix == ".csv":
        # Only an empty cell is missing: a prompt reading "NA" or "null" stays text.
        frame = pd.read_csv(
            source,
            dtype={c: "string" for c in COLUMNS},
            keep_default_na=False,
            na_values=[""],
            encoding="utf-8",
        )
    else:
        raise ValueError(f"cannot read report {source}: expected a .csv or .parquet file")
    return _conform(frame)


def _conform(df: pd.DataFrame) -> pd.DataFrame:
    """Known columns first, in order and typed; any extra columns kept after them."""
    frame = df.copy()
    for column, dtype in COLUMNS.items():
        if column in frame.columns:
            frame[column] = _typed(frame[column], dtype, column)
        else:
            frame[column] = pd.array([None] * len(frame), dtype=dtype)
    extra = [c for c in frame.columns if c not in COLUMNS]
    return frame[[*COLUMNS, *extra]].reset_index(drop=True)


def _typed(series: pd.Series, dtype: Dtype, column: str) -> pd.Series:
    if str(series.dtype) == dtype:
        return series
    try:
        if dtype in ("Int64", "Float64") and not pd.api.types.is_numeric_dtype(series.dtype):
            # Text from CSV: parse with Python's exact float/int parsing.
            if dtype == "Int64":
                ints = [int(v) if _present(v) else None for v in series]
                return pd.Series(pd.array(ints, dtype=dtype), index=series.index, name=column)
            floats = [float(v) if _present(v) else None for v in series]
            return pd.Series(pd.array(floats, dtype=dtype), index=series.index, name=column)
        if dtype == "boolean" and not pd.api.types.is_bool_dtype(series.dtype):
            truth = {"true": True, "false": False, "1": True, "0": False}
            values = [truth[str(v).lower()] if _present(v) else None for v in series]
            return pd.Series(pd.array(values, dtype=dtype), index=series.index, name=column)
        return series.astype(dtype)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise ValueError(f"report column {column!r} cannot be read as {dtype}: {exc}") from exc


# --------------------------------------------------------------------------- merge


def merge_outcomes(previous: list[JobOutcome], new: list[JobOutcome]) -> list[JobOutcome]:
    """`previous` with each row replaced by the row of `new` with the same name.

    Used by `rerun-failed`: the rerun's outcomes overwrite the rows they redid, every other row
    stays as it was. Order is `previous`'s, then names only `new` has, in `new`'s order.
    Duplicate names in either list raise ValueError: a name identifies one input.
    """
    for label, outcomes in (("previous", previous), ("new", new)):
        dupes = sorted(n for n, c in Counter(o.name for o in outcomes).items() if c > 1)
        if dupes:
            raise ValueError(f"{label} outcomes repeat the name(s) {', '.join(map(repr, dupes))}")
    replacement = {o.name: o for o in new}
    merged = [replacement.pop(o.name, o) for o in previous]
    merged.extend(o for o in new if o.name in replacement)
    return merged
