"""A batch's output folder: a local folder, or a prefix in a bucket (`s3://bucket/out`).

Results are written where the user asked, one whole file (or object) at a time: locally with
`storage.atomic_write_bytes`, in a bucket with one upload per object (an object appears under
its name complete, or not at all).

The run's other files (report.csv, report.parquet, index.html and its thumbnails, batch.json,
the SQLite job store) are written in a local working folder, `work`: for a local output it is the
output folder itself; for a bucket it is a temporary folder of this machine, and `publish` uploads
each of those files whole when the run writes its report. Results never stay in it, so its size
does not grow with the batch's results (only the thumbnails, ≤ 256 px each, and the report).

With a bucket and the default job store (an SQLite file), the store is downloaded when the run
starts and uploaded with the report, so the next run, in a new container, knows what was paid
for. Runs in several containers at once need a shared store (`--state-url`), as runs on several
machines do.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from inpaint_flows import locations
from inpaint_flows.storage import atomic_write_bytes, is_temp_file_of, safe_join
from inpaint_flows.store_location import SQLITE_FILE

STATE_DIR = ".inpaint-state"


class OutputFolder:
    """Where one run's outputs go; see the module docstring. Close it (`cleanup`) at the end."""

    def __init__(self, out: str, work: str | os.PathLike[str] | None = None) -> None:
        self.out = out
        self.remote = locations.is_remote(out)
        if self.remote:
            self.work = Path(work or tempfile.mkdtemp(prefix="inpaint-out-"))
        else:
            self.work = Path(work or out)
        self._sizes: dict[str, int] | None = None  # a bucket's objects, listed once
        self._temps: dict[Path, set[str]] = {}  # per local folder: temporary files at first use

    def __repr__(self) -> str:
        return f"OutputFolder({self.out!r})"

    def __str__(self) -> str:
        return self.out

    # -- naming ----------------------------------------------------------------------------
    def location(self, rel: str) -> str:
        """Where the user finds `rel`: a path, or the object's URL."""
        if self.remote:
            return locations.join(self.out, _checked(rel))
        return str(self.work / rel)

    def state_dir(self, state_dir: str | None) -> str:
        """The job store's folder: `state_dir` if given, else OUT/.inpaint-state (for a bucket,
        the working folder's copy)."""
        return state_dir or str(self.work / STATE_DIR)

    # -- results ---------------------------------------------------------------------------
    async def write_result(self, rel: str, data: bytes) -> None:
        """Write one result whole: a local file atomically, or one upload."""
        if self.remote:
            url = self.location(rel)
            await asyncio.to_thread(locations.write_bytes, url, data)
            if self._sizes is not None:
                self._sizes[rel] = len(data)
            return
        path = safe_join(self.work, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temps(path)
        # In a worker thread: its two fsyncs (~3 ms) would otherwise stall every other job's
        # polls and downloads on the event loop.
        await asyncio.to_thread(atomic_write_bytes, path, data)

    def read_result(self, rel: str) -> bytes:
        if self.remote:
            return locations.read_bytes(self.location(rel))
        return (self.work / rel).read_bytes()

    def result_size(self, rel: str) -> int | None:
        """The size of the result `rel`, or None when there is none."""
        if self.remote:
            if self._sizes is None:
                self._sizes = locations.sizes_under(self.out)
            return self._sizes.get(rel)
        path = self.work / rel
        try:
            return path.stat().st_size if path.is_file() else None
        except OSError:
            return None

    def _remove_stale_temps(self, path: Path) -> None:
        """Delete what an earlier run killed while writing this file left behind.

        The folder is listed once per run (its temporary files then are all stale: this run
        has written nothing there yet), not once per file.
        """
        folder = path.parent
        temps = self._temps.get(folder)
        if temps is None:
            try:
                temps = {entry.name for entry in os.scandir(folder) if entry.name.endswith(".tmp")}
            except OSError:
                temps = set()
            self._temps[folder] = temps
        for name in [n for n in temps if is_temp_file_of(n, path.name)]:
            temps.discard(name)
            (folder / name).unlink(missing_ok=True)

    # -- the run's other files ---------------------------------------------------------------
    def pull(self, rel: str) -> bool:
        """For a bucket: download `rel` into the working folder if it exists (True if it
        does). Locally: whether the file exists."""
        local = self.work / rel
        if not self.remote:
            return local.is_file()
        local.parent.mkdir(parents=True, exist_ok=True)
        return locations.download(self.location(rel), local)

    def publish(self, *rels: str) -> None:
        """For a bucket: upload these files of the working folder that exist, each whole.
        Locally: nothing to do."""
        if not self.remote:
            return
        for rel in rels:
            local = self.work / rel
            if local.is_file():
                locations.upload(local, self.location(rel))

    def pull_store(self) -> None:
        """For a bucket: the default job store (an SQLite file) as the last run left it."""
        if self.remote:
            self.pull(f"{STATE_DIR}/{SQLITE_FILE}")

    def publish_store(self) -> None:
        """For a bucket: upload the default job store, so the next run (in a new container)
        knows what was paid for. Call it when the store is closed."""
        self.publish(f"{STATE_DIR}/{SQLITE_FILE}")

    def check(self) -> None:
        """For a bucket: that it exists and lets us write (ConfigError naming it otherwise).
        Made before anything is paid for."""
        if self.remote:
            locations.check_writable(self.out)

    def cleanup(self) -> None:
        """Remove the working folder of a bucket's run (nothing to do locally)."""
        if self.remote:
            shutil.rmtree(self.work, ignore_errors=True)


def _checked(rel: str) -> str:
    """`rel` as an object name under the output prefix: no `..`, not absolute."""
    # safe_join raises ValueError for a name that would leave the folder, and normalises it.
    return PurePosixPath(safe_join("/", rel)).relative_to("/").as_posix()
