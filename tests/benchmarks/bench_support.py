"""Plumbing for `bench_pipeline`: servers in child processes, inputs, child runs, API probes.

Everything the benchmark measures runs in its own process so that CPU and memory are
attributed honestly on a small machine: a started `prefect server` (the API and dashboard a user
would have), the local Novita server (`inpaint-flows local-api`), and the flow or the reference
loop (`bench_child`). They still share the machine's cores, which is why the figures that matter
are ratios taken within one run.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
_START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(url: str, timeout: float, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f} s")


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """End a child we started, and its own children (it leads its session)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def child_env(api_url: str | None, prefect_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.pop("NOVITA_API_KEY", None)  # never reach a real API from a benchmark
    env["PREFECT_HOME"] = str(prefect_home)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["DO_NOT_TRACK"] = "1"
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


# ---------------------------------------------------------------------------- Prefect API


@contextlib.contextmanager
def prefect_server(home: Path, log: Path) -> Iterator[str]:
    """A started `prefect server` (SQLite in `home`), as a user's dashboard; yields its API URL."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    env = child_env(None, home)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            cwd=home,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = f"http://127.0.0.1:{port}/api"
    try:
        _wait_until(f"{api}/health", _START_TIMEOUT_S, proc, "prefect server")
        yield api
    finally:
        _stop(proc)


@dataclass
class ApiProbe:
    """Measures how the dashboard's API answers while a batch runs (one request per second)."""

    api_url: str
    interval_s: float = 1.0
    health_ms: list[float] = field(default_factory=list)
    filter_ms: list[float] = field(default_factory=list)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> ApiProbe:
        self._thread = threading.Thread(target=self._run, name="api-probe", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        with httpx.Client(timeout=30.0) as client:
            while not self._stop.is_set():
                for bucket, call in (
                    (self.health_ms, lambda: client.get(f"{self.api_url}/health")),
                    (
                        self.filter_ms,
                        lambda: client.post(
                            f"{self.api_url}/flow_runs/filter",
                            json={"limit": 10, "sort": "START_TIME_DESC"},
                        ),
                    ),
                ):
                    started = time.perf_counter()
                    try:
                        call().raise_for_status()
                    except httpx.HTTPError:
                        self.errors += 1
                        bucket.append(30_000.0)
                    else:
                        bucket.append((time.perf_counter() - started) * 1000)
                self._stop.wait(self.interval_s)

    def summary(self) -> dict[str, Any]:
        return {
            "probes": len(self.health_ms),
            "errors": self.errors,
            "health_ms": _spread(self.health_ms),
            "flow_runs_filter_ms": _spread(self.filter_ms),
            "slow_over_2s": sum(1 for v in self.health_ms + self.filter_ms if v > 2000),
        }


def _spread(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "p50": round(statistics.median(ordered), 1),
        "p95": round(p95, 1),
        "max": round(ordered[-1], 1),
    }


def task_run_counts(api_url: str, flow_run_id: str) -> dict[str, int]:
    """Task runs of one flow run as the API has recorded them so far, by state type."""
    counts: dict[str, int] = {}
    with httpx.Client(timeout=60.0) as client:
        for state in ("COMPLETED", "FAILED", "RUNNING", "PENDING", "CRASHED", "SCHEDULED"):
            body = {
                "flow_runs": {"id": {"any_": [flow_run_id]}},
                "task_runs": {"state": {"type": {"any_": [state]}}},
            }
            response = client.post(f"{api_url}/task_runs/count", json=body)
            response.raise_for_status()
            counts[state] = int(response.json())
    return counts


def wait_for_recording(api_url: str, flow_run_id: str, timeout: float = 300.0) -> dict[str, Any]:
    """Seconds until every task run of the flow run is recorded as finished, and the counts."""
    started = time.monotonic()
    counts: dict[str, int] = {}
    previous = -1
    stable = 0
    while time.monotonic() - started < timeout:
        counts = task_run_counts(api_url, flow_run_id)
        done = counts.get("COMPLETED", 0) + counts.get("FAILED", 0) + counts.get("CRASHED", 0)
        pending = sum(counts.get(k, 0) for k in ("RUNNING", "PENDING", "SCHEDULED"))
        if pending == 0 and done == previous:
            stable += 1
            if stable >= 2:
                break
        else:
            stable = 0
        previous = done
        time.sleep(0.5)
    return {"recording_lag_s": round(time.monotonic() - started, 1), "task_runs": counts}


# ---------------------------------------------------------------------------- local Novita API


@dataclass
class LocalApi:
    """`inpaint-flows local-api` in a child process (so its CPU and memory are not the flow's)."""

    base_url: str
    proc: subprocess.Popen[bytes] | None  # None: an address where nothing listens
    cpu_at_ready_s: float = 0.0  # what its own start-up used, left out of `cpu_s`

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.base_url}/_local/stats", timeout=60.0)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def cpu_s(self) -> float:
        """CPU seconds (user + system, all threads) the server has used since it answered: on
        a 2-core machine its inpainting competes with the client for the same cores."""
        assert self.proc is not None, "no server process"
        return _process_cpu_s(self.proc) - self.cpu_at_ready_s

    def submit_times_ms(self, task_ids: Sequence[str]) -> list[int]:
        """When the server accepted each task (its own clock, `debug_info.submit_time_ms`)."""
        times: list[int] = []
        with httpx.Client(base_url=self.base_url, timeout=60.0) as client:
            for task_id in task_ids:
                response = client.get("/v3/async/task-result", params={"task_id": task_id})
                response.raise_for_status()
                info = response.json()["extra"]["debug_info"]
                times.append(int(info["submit_time_ms"]))
        return times


def _process_cpu_s(proc: subprocess.Popen[bytes]) -> float:
    times = psutil.Process(proc.pid).cpu_times()
    return float(times.user + times.system)


@contextlib.contextmanager
def local_api(log: Path, *, flags: Sequence[str]) -> Iterator[LocalApi]:
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from cli.app import app; app()",
                "local-api",
                "--port",
                str(port),
                "--no-access-log",
                # The figures and the reference loops read the server's eta and debug_info
                # timings (submit_times_ms above), which only `helpful` reports; a run's
                # `flags` may still say `--profile novita` (the last one wins).
                "--profile",
                "helpful",
                *flags,
            ],
            env=child_env(None, log.parent / "unused-prefect-home"),
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until(f"{base}/_local/stats", _START_TIMEOUT_S, proc, "local Novita API")
        yield LocalApi(base, proc, cpu_at_ready_s=_process_cpu_s(proc))
    finally:
        _stop(proc)


# ---------------------------------------------------------------------------- inputs


def _write_manifest(path: Path, rows: Sequence[tuple[str, str]]) -> Path:
    """One row per job: an image, its mask, and a seed of its own (distinct job keys)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "mask", "seed"])
        for number, (image, mask) in enumerate(rows):
            writer.writerow([image, mask, number])
    return path


def _mask(size: int) -> Image.Image:
    mask = np.zeros((size, size), dtype=np.uint8)
    quarter = size // 4
    mask[quarter : size - quarter, quarter : size - quarter] = 255
    return Image.fromarray(mask, mode="L")


def tiny_batch(folder: Path, jobs: int, side: int = 64) -> Path:
    """A manifest of `jobs` rows over one small image and mask; each row has its own seed."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels, mode="RGB").save(folder / "tiny.png")
    _mask(side).save(folder / "tiny_mask.png")
    return _write_manifest(folder / "manifest.csv", [("tiny.png", "tiny_mask.png")] * jobs)


def megapixel_images(cache: Path, count: int = 8, side: int = 1024) -> list[tuple[Path, Path]]:
    """`count` distinct photo-like 1 MP PNGs (~1.5 MB each) and masks, made once in `cache`."""
    cache.mkdir(parents=True, exist_ok=True)
    pairs: list[tuple[Path, Path]] = []
    mask_path = cache / f"mask_{side}.png"
    if not mask_path.is_file():
        _mask(side).save(mask_path)
    for number in range(count):
        path = cache / f"photo_{side}_{number}.png"
        if not path.is_file():
            rng = np.random.default_rng(number)
            y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
            base = np.stack(
                [
                    128 + 100 * np.sin(6.28 * (x * (number + 1) + y)),
                    128 + 100 * np.cos(6.28 * (y * 2 + x * number)),
                    128 + 80 * np.sin(6.28 * (x + y) * 3),
                ],
                axis=-1,
            )
            noisy = base + rng.normal(0, 6, size=base.shape)
            pixels = np.clip(noisy, 0, 255).astype(np.uint8)
            tmp = path.with_suffix(".tmp.png")
            Image.fromarray(pixels, mode="RGB").save(tmp)
            tmp.replace(path)
        pairs.append((path, mask_path))
    return pairs


def megapixel_batch(folder: Path, cache: Path, jobs: int) -> Path:
    """A manifest of `jobs` rows cycling over a few cached 1 MP images, one seed per row."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = megapixel_images(cache)
    rows = [(str(pairs[i % len(pairs)][0]), str(pairs[i % len(pairs)][1])) for i in range(jobs)]
    return _write_manifest(folder / "manifest.csv", rows)


# ---------------------------------------------------------------------------- child runs


@dataclass
class ChildResult:
    figures: dict[str, Any]
    polled_peak_rss_mb: float
    wall_s: float


def run_child(
    config: dict[str, Any], *, env: dict[str, str], log: Path, timeout: float = 3600.0
) -> ChildResult:
    """Run `bench_child` with `config`; its JSON figures, and its peak RSS as polled from here."""
    started = time.monotonic()
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.benchmarks.bench_child", json.dumps(config)],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
        peak = 0.0
        watched = psutil.Process(proc.pid)
        sink: list[bytes] = []
        reader = threading.Thread(target=_drain, args=(proc, sink), daemon=True)
        reader.start()
        while proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                peak = max(peak, watched.memory_info().rss / 2**20)
            if time.monotonic() - started > timeout:
                _stop(proc)
                raise RuntimeError(f"child run exceeded {timeout:.0f} s; see {log}")
            time.sleep(0.1)
        reader.join(10)
        output = b"".join(sink)
    if proc.returncode != 0:
        raise RuntimeError(f"child run failed with code {proc.returncode}; see {log}")
    lines = [line for line in output.decode().splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"child run printed no figures; see {log}")
    return ChildResult(json.loads(lines[-1]), round(peak, 1), time.monotonic() - started)


def _drain(proc: subprocess.Popen[bytes], sink: list[bytes]) -> None:
    stream = proc.stdout
    assert stream is not None
    while chunk := stream.read(65536):
        sink.append(chunk)


def report_rows(out: Path) -> list[dict[str, str]]:
    with (out / "report.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------- photo-like inputs


def photo_sides(jobs: int, size: str) -> list[tuple[int, int]]:
    """(width, height) per job: `size` is one side ("384") or a range ("384-1024")."""
    low_text, _, high_text = size.partition("-")
    low, high = int(low_text), int(high_text or low_text)
    if not 16 <= low <= high:
        raise ValueError(f"image size {size!r}: expected N or LOW-HIGH with 16 <= LOW <= HIGH")
    if low == high:
        return [(low, low)] * jobs
    rng = np.random.default_rng(12)
    sides = rng.integers(low, high + 1, size=(jobs, 2))
    return [(int(w), int(h)) for w, h in sides]


def _photo(number: int, width: int, height: int) -> np.ndarray:
    """Smooth noise (a coarse random grid, upscaled) over gradients, plus grain: JPEG-like."""
    rng = np.random.default_rng(1000 + number)
    coarse = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    smooth = np.asarray(
        Image.fromarray(coarse, mode="RGB").resize((width, height), Image.Resampling.BICUBIC),
        dtype=np.float32,
    )
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 6.28, size=3).astype(np.float32)
    waves = 40 * np.sin(x[..., None] / width * 6.28 * 2 + y[..., None] / height * 3.14 + phase)
    grain = rng.normal(0, 8, size=(height, width, 3)).astype(np.float32)
    return np.clip(0.7 * smooth + waves + grain + 20, 0, 255).astype(np.uint8)


def _ellipse_mask(number: int, width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(5000 + number)
    cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
    rx, ry = rng.uniform(0.1, 0.25) * width, rng.uniform(0.1, 0.25) * height
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    inside = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0
    return Image.fromarray(np.where(inside, 255, 0).astype(np.uint8), mode="L")


def photo_batch(folder: Path, cache: Path, jobs: int, size: str = "384") -> Path:
    """A manifest of `jobs` distinct photo-like JPEGs (quality 90) and PNG masks.

    Generated deterministically (image `k` is the same in every run) and kept in `cache`, so
    the CLI and the reference loop read the very same files, and a second run costs nothing.
    """
    folder.mkdir(parents=True, exist_ok=True)
    store = cache / f"photos-{size}"
    store.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str]] = []
    for number, (width, height) in enumerate(photo_sides(jobs, size)):
        image = store / f"photo_{number:05d}.jpg"
        mask = store / f"photo_{number:05d}_mask.png"
        if not image.is_file():
            tmp = image.with_suffix(".tmp.jpg")
            Image.fromarray(_photo(number, width, height), mode="RGB").save(tmp, quality=90)
            tmp.replace(image)
        if not mask.is_file():
            tmp = mask.with_suffix(".tmp.png")
            _ellipse_mask(number, width, height).save(tmp)
            tmp.replace(mask)
        rows.append((str(image), str(mask)))
    path = folder / "manifest.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "mask"])
        writer.writerows(rows)
    return path


# ---------------------------------------------------------------------------- the CLI, cold


@dataclass
class CliResult:
    returncode: int
    wall_start: float  # time.time() just before the process was started
    wall_end: float  # time.time() when it had exited
    peak_rss_mb: float  # the CLI process alone, sampled
    peak_tree_rss_mb: float  # the CLI process and its children (Prefect's temporary server)
    cpu_s: float  # user + system of the CLI and the children it waited for
    samples: int

    @property
    def wall_s(self) -> float:
        return self.wall_end - self.wall_start


def _tree_rss_mb(proc: psutil.Process) -> tuple[float, float]:
    own = proc.memory_info().rss
    total = own
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return own / 2**20, total / 2**20


def run_cli(
    args: Sequence[str], *, env: dict[str, str], log: Path, cwd: Path, timeout: float = 3600.0
) -> CliResult:
    """`inpaint-flows ARGS` in a new process, as a user starts it; RSS sampled every 50 ms."""
    wall_start = time.time()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from cli.main import main; main()", *args],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        watched = psutil.Process(proc.pid)
        peak_own = peak_tree = 0.0
        samples = 0
        status = None
        while status is None:
            with contextlib.suppress(psutil.Error):
                own, tree = _tree_rss_mb(watched)
                peak_own, peak_tree = max(peak_own, own), max(peak_tree, tree)
                samples += 1
            if time.time() - wall_start > timeout:
                _stop(proc)
                raise RuntimeError(f"the CLI ran over {timeout:.0f} s; see {log}")
            time.sleep(0.05)
            pid, raw, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status = raw
        wall_end = time.time()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return CliResult(
        returncode=proc.returncode,
        wall_start=wall_start,
        wall_end=wall_end,
        peak_rss_mb=round(peak_own, 1),
        peak_tree_rss_mb=round(peak_tree, 1),
        cpu_s=round(usage.ru_utime + usage.ru_stime, 1),
        samples=samples,
    )
