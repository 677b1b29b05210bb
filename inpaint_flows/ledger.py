"""The job ledger: what was paid for, per job key, durable across crashes and reruns.

Why not only Prefect's task cache: a cache entry is written when a task *finishes*. A flow killed
while polling has finished no task, yet it has created paid remote tasks. The ledger is written
the moment a submit is answered, so any later run (a UI Retry of the same flow run, a new flow
run, a rerun-failed run, on this or another machine that sees the same state directory) resumes
by polling the recorded task id instead of paying again.

One small JSON file per job key, written atomically, in `state_dir/<2 hex>/<job key>.json`.
The state directory defaults to `<output dir>/.inpaint-state` and can point at shared storage.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from inpaint_flows.errors import ConfigError
from inpaint_flows.storage import atomic_write_text, is_temp_file_of

LedgerState = Literal["submitting", "submitted", "succeeded", "needs-submit"]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class LedgerEntry(BaseModel):
    """The durable record of one job.

    `state`:
    - submitting: a submit was sent and not answered (crash or unknown outcome); a paid task
      may exist that we cannot find: the next run submits again and says so.
    - submitted: `task_id` is live as far as we know; the next run polls it.
    - needs-submit: the remote task FAILED, expired, is unknown or its stored result is damaged;
      the next run submits anew.
    - succeeded: `outputs` (relative to the output dir) are complete; nothing more to do.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_key: str
    name: str
    state: LedgerState
    task_id: str | None = None
    submits: int = 0  # submits that were sent (paid, or possibly paid), across all runs
    attempts: int = 0
    polls: int = 0
    remote_failures: int = 0
    submitted_at: str | None = None
    finished_at: str | None = None
    seed_used: str | None = None
    outputs: tuple[str, ...] = ()
    output_sizes: tuple[int, ...] = ()
    output_stem: str | None = None  # the stem `outputs` were named from (None: older entries)
    reason: str | None = None
    message: str | None = None

    def evolve(self, **changes: object) -> LedgerEntry:
        """A copy with `changes`, validated: an unknown or mistyped field is an error."""
        return LedgerEntry.model_validate({**dict(self), **changes})


class Ledger:
    """Read and write ledger entries under one directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._swept: set[str] = set()  # job keys whose stale temporary files are gone

    def _path(self, job_key: str) -> Path:
        return self.root / job_key[:2] / f"{job_key}.json"

    def get(self, job_key: str) -> LedgerEntry | None:
        path = self._path(job_key)
        try:
            return LedgerEntry.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def put(self, entry: LedgerEntry) -> LedgerEntry:
        path = self._path(entry.job_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        if entry.job_key not in self._swept:
            self._remove_stale_temps(path)
            self._swept.add(entry.job_key)
        atomic_write_text(path, entry.model_dump_json(indent=1))
        return entry

    @staticmethod
    def _remove_stale_temps(path: Path) -> None:
        """Delete the temporary file a run killed while writing this entry left beside it."""
        stale: list[str] = []
        with contextlib.suppress(OSError), os.scandir(path.parent) as entries:
            stale = [e.path for e in entries if is_temp_file_of(e.name, path.name)]
        for name in stale:
            with contextlib.suppress(OSError):
                os.unlink(name)

    def outputs_intact(
        self, entry: LedgerEntry, out_dir: str | Path, outputs: tuple[str, ...] | None = None
    ) -> bool:
        """Whether every output the entry lists is still on disk with its recorded size.

        `outputs` checks other paths against the entry's sizes: copies of its outputs made for
        another input with the same content.
        """
        paths = entry.outputs if outputs is None else outputs
        if entry.state != "succeeded" or not paths or len(paths) != len(entry.outputs):
            return False
        sizes = entry.output_sizes or (None,) * len(paths)
        for rel, size in zip(paths, sizes, strict=True):
            path = Path(out_dir) / rel
            if not path.is_file() or (size is not None and path.stat().st_size != size):
                return False
        return True


@contextlib.contextmanager
def exclusive_use(root: str | Path) -> Iterator[None]:
    """Hold the state directory for one run at a time, across processes.

    Two runs on one ledger could both read a job as "not yet submitted" and both pay for it.
    An OS file lock (released by the kernel even when the holder is SIGKILLed) lets the second
    run stop at once with a clear message instead.
    """
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ConfigError(
                f"The job state in {folder} is in use by {holder}. Two runs on one output "
                "folder could pay twice for the same image: wait for that run to finish, or "
                "use another --out / --state-dir.",
                reason="STATE_IN_USE",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {utc_now()}")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
