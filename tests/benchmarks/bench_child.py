"""What the benchmark runs in a child process: the real flow, the minimal reference loop, or
the job store's per-job transactions.

    python -m tests.benchmarks.bench_child '{"mode": "flow", ...}'

A child process so that its peak RSS is its own (`ru_maxrss` of RUSAGE_SELF, read at exit) and
so that the flow meets the same Prefect API a user's run would (`PREFECT_API_URL` comes from the
environment the parent sets). The last line on stdout is one JSON object with the figures.

The reference loop is what the issue asks the flow to be measured against: plain asyncio + httpx,
one client, `concurrency` jobs at once, each job submit → poll → download with the same request
body, writing each result to a file. No ledger, no report, no Prefect: the floor that
orchestration is compared with. Its poll rule, by `first_poll` in the config:
- "eta" (the issue's plain loop): poll at once, then wait the server's `eta` clamped to
  [0.25, 10] s, 0.5 s when there is none;
- "every": poll every 0.25 s from the submit on (the end-to-end figure's bare loop);
- "learned": the pipeline's own rule, so both make the same requests at the same moments and
  the ratio is orchestration alone: every poll waits as `inpaint_flows.polling.PollPlanner` says
  (learnt from the server's reported durations), later polls follow `eta` as above.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from inpaint_flows.models import InpaintParams
from inpaint_flows.pipeline import Tuning
from inpaint_flows.polling import PollPlanner
from inpaint_flows.task_results import server_duration_s

SUBMIT_PATH = "/v3/async/inpainting"
TASK_RESULT_PATH = "/v3/async/task-result"
MIN_POLL_S = 0.25
MAX_POLL_S = 10.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _poll_wait(eta: Any) -> float:
    """The plain loop's rule: twice the shortest interval without an eta, else the eta."""
    if not isinstance(eta, int | float) or eta <= 0:
        return MIN_POLL_S * 2
    return max(MIN_POLL_S, min(MAX_POLL_S, float(eta)))


async def _send(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request, sent again once if the connection dropped (a kept-alive connection the
    server closed meanwhile, on a busy machine): the loop measures time, not resilience."""
    try:
        return await client.request(method, url, **kwargs)
    except httpx.TransportError:
        return await client.request(method, url, **kwargs)


def _manifest_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


async def run_reference(config: dict[str, Any]) -> dict[str, Any]:
    manifest = Path(config["source"])
    rows = _manifest_rows(manifest)
    out = Path(config["out"])
    out.mkdir(parents=True, exist_ok=True)
    defaults = InpaintParams.model_validate(config.get("defaults") or {})
    concurrency = int(config["concurrency"])
    gate = asyncio.Semaphore(concurrency)
    tuning = Tuning()
    learned = (
        PollPlanner(tuning.min_poll_interval_s, tuning.max_poll_interval_s)
        if config.get("first_poll") == "learned"
        else None
    )
    every = config.get("first_poll") == "every"
    polls = 0
    job_seconds: list[float] = []
    last_download = 0.0

    async def one(index: int, row: dict[str, str], client: httpx.AsyncClient) -> None:
        nonlocal polls, last_download
        params = defaults.with_overrides({"seed": int(row["seed"])} if row.get("seed") else {})
        async with gate:
            image = base64.b64encode((manifest.parent / row["image"]).read_bytes()).decode()
            mask = base64.b64encode((manifest.parent / row["mask"]).read_bytes()).decode()
            body = {
                "extra": params.extra_fields(),
                "request": {
                    **params.request_fields(),
                    "image_base64": image,
                    "mask_image_base64": mask,
                },
            }
            del image, mask
            response = await _send(client, "POST", SUBMIT_PATH, json=body)
            response.raise_for_status()
            task_id = response.json()["task_id"]
            submitted = time.monotonic()  # as the flow's report counts latency_s
            scout = learned.enlist() if learned is not None else True
            if learned is not None:
                await asyncio.sleep(learned.first_wait_s(0.0, scout=scout))
            elif every:
                await asyncio.sleep(MIN_POLL_S)
            mine = 0
            while True:
                response = await _send(client, "GET", TASK_RESULT_PATH, params={"task_id": task_id})
                polls += 1
                mine += 1
                response.raise_for_status()
                data = response.json()
                status = data["task"]["status"]
                elapsed = time.monotonic() - submitted
                if status == "TASK_STATUS_SUCCEED":
                    if learned is not None:  # the flow's rule: the server's time, else ours
                        server = server_duration_s(data["extra"]["debug_info"])
                        if server is not None:
                            learned.observe(server)
                        else:
                            learned.observe(elapsed, at_first_poll=mine == 1)
                    break
                if status == "TASK_STATUS_FAILED":
                    raise RuntimeError(f"task {task_id} failed: {data['task'].get('reason')}")
                eta = data["task"].get("eta")
                wait = (
                    learned.next_wait_s(
                        elapsed, eta if isinstance(eta, int | float) else None, scout=scout
                    )
                    if learned is not None
                    else MIN_POLL_S
                    if every
                    else _poll_wait(eta)
                )
                await asyncio.sleep(wait)
            for number, item in enumerate(data["images"]):
                image_response = await _send(client, "GET", item["image_url"])
                image_response.raise_for_status()
                (out / f"{index:06d}_{number}.png").write_bytes(image_response.content)
            job_seconds.append(time.monotonic() - submitted)
            last_download = max(last_download, time.time())

    limits = httpx.Limits(max_connections=concurrency + 10, max_keepalive_connections=concurrency)
    started = time.monotonic()
    wall_start = time.time()
    async with httpx.AsyncClient(
        base_url=config["base_url"], timeout=60.0, limits=limits
    ) as client:
        await asyncio.gather(*(one(i, row, client) for i, row in enumerate(rows)))
    return {
        "mode": "reference",
        "first_poll": config.get("first_poll", "eta"),
        "jobs": len(rows),
        "makespan_s": time.monotonic() - started,
        "wall_start": wall_start,
        "wall_end": time.time(),
        "polls": polls,
        "mean_job_s": sum(job_seconds) / max(1, len(job_seconds)),
        "last_download_wall": last_download,
    }


async def run_flow(config: dict[str, Any]) -> dict[str, Any]:
    imported = time.monotonic()
    from tests.flows.helpers import call_batch_flow

    import_s = time.monotonic() - imported
    rss_after_import = peak_rss_mb()
    kwargs: dict[str, Any] = {
        "source": config["source"],
        "out": config["out"],
        "defaults": InpaintParams.model_validate(config.get("defaults") or {}),
        "base_url": config["base_url"],
        "max_in_flight": int(config["max_in_flight"]),
        "images_per_minute": config.get("images_per_minute"),
        "poll_timeout_s": float(config.get("poll_timeout_s", 900.0)),
        "batch_name": config.get("batch_name", "bench"),
    }
    if config.get("chunk_size"):
        kwargs["chunk_size"] = int(config["chunk_size"])
    from inpaint_flows import progress

    jobs_done: dict[str, float] = {}

    def on_progress(done: int, total: int) -> None:
        if done == total and not jobs_done:  # every job finished; the report comes next
            jobs_done["at_s"] = time.monotonic() - started
            jobs_done["peak_rss_mb"] = peak_rss_mb()

    started = time.monotonic()
    wall_start = time.time()
    with progress.listening(on_progress):
        state = await call_batch_flow(**kwargs, return_state=True)
    makespan = time.monotonic() - started
    return {
        "mode": "flow",
        "makespan_s": makespan,
        "wall_start": wall_start,
        "wall_end": time.time(),
        "state": state.type.value,
        "message": state.message,
        "flow_run_id": str(state.state_details.flow_run_id),
        "import_s": import_s,
        "rss_after_import_mb": rss_after_import,
        "jobs_done_s": jobs_done.get("at_s"),
        "peak_rss_before_report_mb": jobs_done.get("peak_rss_mb"),
    }


async def run_store(config: dict[str, Any]) -> dict[str, Any]:
    """A job's traffic to the job store, as the runner makes it, for `jobs` jobs at once: its
    claim, then three writes (submitting, submitted, final with the claim's release). Figures:
    CPU and wall time per job (CPU of the whole process, so the store's own thread counts)."""
    from inpaint_flows.ledger import Ledger, LedgerEntry
    from inpaint_flows.store_location import StoreLocation

    jobs = int(config["jobs"])
    async with Ledger.open(StoreLocation.sqlite(Path(config["state_dir"]))) as ledger:

        async def one(number: int) -> None:
            key = f"{number:064x}"
            async with ledger.claim(key, f"job {number}"):
                entry = LedgerEntry(job_key=key, name=f"job {number}", state="needs-submit")
                entry = await ledger.put(entry.evolve(state="submitting", submits=1))
                entry = await ledger.put(entry.evolve(state="submitted", task_id=f"t-{number}"))
                await ledger.put(entry.evolve(state="succeeded"), release=True)

        await one(-1 % 2**64)  # tables made, statements compiled: not counted
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(jobs)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "jobs": jobs,
        "cpu_ms_per_job": 1000 * cpu / jobs,
        "wall_ms_per_job": 1000 * wall / jobs,
    }


def main(argv: list[str]) -> int:
    config = json.loads(argv[1])
    mode = config["mode"]
    runner = {"flow": run_flow, "reference": run_reference, "store": run_store}[mode]
    result = asyncio.run(runner(config))
    result["peak_rss_mb"] = peak_rss_mb()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = usage.ru_utime + usage.ru_stime  # imports included
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
