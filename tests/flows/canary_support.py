"""A small batch for canary tests, and waiting for a flow run to pause (shared with
tests/deployments/ and tests/browser/)."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

FILES = tuple(f"photo{i}.png" for i in range(1, 7))
NAMES = tuple(f"images/{file}" for file in FILES)  # job names: paths relative to the manifest
# pick_canary's spread over six usable jobs: the 2nd, 4th and 6th.
CANARY = ("images/photo2.png", "images/photo4.png", "images/photo6.png")
REST = tuple(name for name in NAMES if name not in CANARY)
# This canary row sets its own strength: new request defaults do not change its request.
OWN_STRENGTH = "images/photo4.png"


def write_batch(root: Path) -> Path:
    """Six 64x48 photos with a box mask each, and a manifest; one row sets its own strength."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    rng = np.random.default_rng(16)
    rows = []
    for index, name in enumerate(FILES):
        pixels = rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / name)
        mask = np.zeros((48, 64), dtype=np.uint8)
        mask[8 + index : 30, 10 : 40 + index] = 255
        Image.fromarray(mask).save(masks / name)
        strength = "0.5" if f"images/{name}" == OWN_STRENGTH else ""
        rows.append({"image": f"images/{name}", "mask": f"masks/{name}", "strength": strength})
    manifest = root / "batch.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "mask", "strength"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


async def wait_until(
    what: str,
    check: Callable[[], Awaitable[Any]],
    timeout: float = 180.0,
    still_running: Callable[[], bool] = lambda: True,
) -> Any:
    """Poll `check` until it returns something truthy; fail early if the run ended."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = await check()
        if value:
            return value
        if not still_running():
            raise AssertionError(f"the run ended while waiting for {what}")
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
