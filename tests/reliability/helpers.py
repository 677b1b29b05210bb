"""What the reliability tests share: tiny batches, the server's view per job, report checks.

The server's `by_content_hash` counters are keyed by the hash of the request body; `job_hashes`
computes that hash for each job of a batch exactly as the client builds the body, so a test can
say "job X was paid for twice" rather than "some job was".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from PIL import Image

from inpaint_flows.jobs import discover_jobs
from inpaint_flows.ledger import LedgerEntry, entry_from_row
from inpaint_flows.models import InpaintParams
from inpaint_flows.payload import encode_payload
from inpaint_flows.report import read_report
from inpaint_flows.result_images import validate_result_image
from inpaint_flows.store_location import SQLITE_FILE
from novita_local.server import LocalServer
from novita_local.stats import content_hash
from tests.flows.helpers import call_batch_flow

FAST = InpaintParams(steps=1)
HANG_GUARD_S = 150.0  # a run that takes longer is stuck: not a performance bound
TERMINAL = ("succeeded", "failed", "invalid", "skipped-already-done")


def write_batch(root: Path, count: int, size: tuple[int, int] = (96, 64), seed: int = 0) -> Path:
    """`count` distinct noise images with half masks, in the `name` + `name_mask` layout."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = size
    mask = np.zeros((height, width), np.uint8)
    mask[:, : width // 2] = 255
    for index in range(count):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(root / f"img{index}.png")
        Image.fromarray(mask, "L").save(root / f"img{index}_mask.png")
    return root


def job_hashes(source: Path, defaults: InpaintParams = FAST) -> dict[str, str]:
    """Job name -> the server's content hash of the body the client sends for it."""
    hashes: dict[str, str] = {}
    for job in discover_jobs(source, defaults):
        if job.problem is not None:
            continue
        try:
            image_b64, mask_b64 = encode_payload(job)
        except Exception:  # invalid inputs are never sent, so they have no hash
            continue
        body = {
            "extra": job.params.extra_fields(),
            "request": {
                **job.params.request_fields(),
                "image_base64": image_b64,
                "mask_image_base64": mask_b64,
            },
        }
        # The server hashes the JSON it parsed: round-trip through JSON like the wire does.
        hashes[job.name] = content_hash(json.loads(json.dumps(body)))
    return hashes


@dataclass(frozen=True)
class ServerView:
    """One `/_local/stats` snapshot, read per job."""

    stats: dict[str, Any]

    def accepted(self, digest: str) -> int:
        entry = self.stats["submissions"]["by_content_hash"].get(digest)
        return int(entry["accepted"]) if entry else 0

    def submitted(self, digest: str) -> int:
        entry = self.stats["submissions"]["by_content_hash"].get(digest)
        return int(entry["submitted"]) if entry else 0

    @property
    def total_submitted(self) -> int:
        return int(self.stats["submissions"]["total"])

    @property
    def total_accepted(self) -> int:
        return int(self.stats["submissions"]["accepted"])

    def downloads_for(self, task_id: str) -> int:
        return int(self.stats["downloads"]["by_task"].get(task_id, 0))

    def faults(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.stats["faults"].items() if v}


def server_view(server: LocalServer | str) -> ServerView:
    base = server if isinstance(server, str) else server.base_url
    return ServerView(httpx.get(f"{base}/_local/stats", timeout=10).json())


def ledger_entries(state_dir: Path) -> dict[str, LedgerEntry]:
    """Job name -> ledger entry, read from the SQLite job store as a later run would decode it.

    Read with the standard library, so a test can look while the run writes (WAL: a reader
    sees the last commit).
    """
    entries: dict[str, LedgerEntry] = {}
    path = state_dir / SQLITE_FILE
    if not path.is_file():
        return entries
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        db.row_factory = sqlite3.Row
        try:
            rows = db.execute("SELECT * FROM inpaint_jobs").fetchall()
        except sqlite3.OperationalError as exc:  # the first run has not made the table yet
            if "no such table" in str(exc):
                return entries
            raise
    for row in rows:
        entry = entry_from_row(dict(row))
        if entry is not None:
            entries[entry.name] = entry
    return entries


def report_rows(out: Path) -> pd.DataFrame:
    """report.csv, parsed and typed by the project's own reader (indexed by name)."""
    return read_report(out / "report.csv").set_index("name", drop=False)


def outputs_of(row: Any) -> list[str]:
    cell = row["outputs"]
    return [] if pd.isna(cell) else list(json.loads(cell))


def assert_outputs_whole(out: Path, rows: pd.DataFrame) -> int:
    """Every output a row names is a complete, decodable image; returns how many there are."""
    count = 0
    for _, row in rows.iterrows():
        for rel in outputs_of(row):
            data = (out / rel).read_bytes()
            validate_result_image(data)  # raises on a partial or corrupt file
            count += 1
        if row["status"] in ("succeeded", "skipped-already-done"):
            assert outputs_of(row), f"{row['name']}: {row['status']} without outputs"
    return count


def visible_files(out: Path) -> list[Path]:
    """Files under `out` a person would see as results: not hidden, not the ledger, no reports."""
    skip = {"report.csv", "report.parquet", "index.html", "batch.json"}
    found = []
    for path in out.rglob("*"):
        rel = path.relative_to(out)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if rel.as_posix() in skip:
            continue
        found.append(path)
    return sorted(found)


def stray_temp_files(out: Path) -> list[Path]:
    """Temporary files of atomic writes (`.name.XXXX.tmp`) left anywhere under `out`."""
    return sorted(p for p in out.rglob(".*.tmp") if p.is_file())


def names(rows: pd.DataFrame, status: str | Iterable[str]) -> set[str]:
    wanted = {status} if isinstance(status, str) else set(status)
    return {str(n) for n, s in zip(rows["name"], rows["status"], strict=True) if s in wanted}


@dataclass
class RunResult:
    elapsed: float
    completed: bool
    statuses: Counter[str]
    reasons: Counter[str]


async def run_batch(
    src: Path,
    out: Path,
    base_url: str,
    request_timeout_s: float = 60.0,
    poll_timeout_s: float = 60.0,
    **kwargs: Any,
) -> RunResult:
    """One flow run of the batch (a new flow run each call), under the hang guard."""
    started = time.monotonic()
    state = await asyncio.wait_for(
        call_batch_flow(
            source=str(src),
            out=str(out),
            defaults=FAST,
            base_url=base_url,
            images_per_minute=None,
            max_in_flight=4,
            poll_timeout_s=poll_timeout_s,
            request_timeout_s=request_timeout_s,
            return_state=True,
            **kwargs,
        ),
        timeout=HANG_GUARD_S,
    )
    elapsed = time.monotonic() - started
    rows = report_rows(out)
    return RunResult(
        elapsed=elapsed,
        completed=state.is_completed(),
        statuses=Counter(rows["status"]),
        reasons=Counter(r for r in rows["reason"] if isinstance(r, str)),
    )
