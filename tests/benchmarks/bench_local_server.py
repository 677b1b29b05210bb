"""Benchmark the local Novita server: task-result polls per second, and submit-to-done times.

    python -m tests.benchmarks.bench_local_server [--seconds 5] [--clients 4]

The server runs in its own process (`python -m novita_local.cli`, access log off) so the client's
work does not share its GIL. Polling: `--clients` concurrent httpx.AsyncClient connections
(keep-alive) poll one finished task for `--seconds`. Inpainting: one task per size, image_num 1,
PNG output, mask = centred quarter-area square, latency 0: wall time from submit to SUCCEED as
seen by a client polling every 10 ms, so it includes decode, queueing, inpaint and PNG encoding.
Not collected by pytest (file name), not run in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx
import numpy as np
from PIL import Image


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _png_b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _body(size: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[size // 4 : size * 3 // 4, size // 4 : size * 3 // 4] = 255
    return {
        "extra": {"response_image_type": "png"},
        "request": {
            "model_name": "local-telea-inpainting",
            "image_base64": _png_b64(Image.fromarray(pixels)),
            "mask_image_base64": _png_b64(Image.fromarray(mask)),
            "prompt": "benchmark",
            "image_num": 1,
            "steps": 20,
            "guidance_scale": 7.5,
            "sampler_name": "Euler a",
            "seed": 1,
        },
    }


def _wait_up(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{base}/_local/stats", timeout=1)
            return
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the local server did not start") from None
            time.sleep(0.1)


def _submit_and_wait(client: httpx.Client, body: dict[str, Any]) -> tuple[str, float]:
    started = time.perf_counter()
    task_id: str = client.post("/v3/async/inpainting", json=body).json()["task_id"]
    while True:
        status = client.get("/v3/async/task-result", params={"task_id": task_id}).json()
        if status["task"]["status"] in ("TASK_STATUS_SUCCEED", "TASK_STATUS_FAILED"):
            assert status["task"]["status"] == "TASK_STATUS_SUCCEED", status
            return task_id, time.perf_counter() - started
        time.sleep(0.01)


async def _poll_rate(base: str, task_id: str, clients: int, seconds: float) -> tuple[int, int]:
    stop = time.perf_counter() + seconds
    counts = [0] * clients
    errors = [0] * clients

    async def worker(index: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            while time.perf_counter() < stop:
                response = await client.get("/v3/async/task-result", params={"task_id": task_id})
                if response.status_code == 200:
                    counts[index] += 1
                else:
                    errors[index] += 1

    await asyncio.gather(*(worker(i) for i in range(clients)))
    return sum(counts), sum(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sizes", type=int, nargs="*", default=[512, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOVITA")}
    command = [sys.executable, "-m", "novita_local.cli", "--port", str(port), "--no-access-log"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        _wait_up(base, process)
        with httpx.Client(base_url=base, timeout=60) as client:
            task_id, _ = _submit_and_wait(client, _body(64))  # warm-up; polled below
            for size in args.sizes:
                body = _body(size)
                times = []
                for _ in range(args.repeats):
                    times.append(_submit_and_wait(client, body)[1])
                print(
                    f"inpaint {size}x{size}: median {statistics.median(times) * 1000:.0f} ms "
                    f"submit-to-SUCCEED (min {min(times) * 1000:.0f}, max "
                    f"{max(times) * 1000:.0f}; {args.repeats} runs)"
                )
        polls, errors = asyncio.run(_poll_rate(base, task_id, args.clients, args.seconds))
        print(
            f"task-result polling: {polls / args.seconds:.0f} requests/s "
            f"({args.clients} keep-alive clients, {args.seconds:g} s, {polls} ok, {errors} errors)"
        )
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)


if __name__ == "__main__":
    main()
