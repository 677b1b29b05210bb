"""Run one batch flow in its own process, so a test can SIGKILL it at a chosen point.

    python -m tests.reliability.crash_driver SOURCE OUT BASE_URL [IMAGES_PER_MINUTE]

With `CRASH_PAUSE_AT` set, the process stops at a point that is too short to hit by timing
alone, announces it by writing `CRASH_MARKER`, and sleeps until it is killed:

- `submit`: just before the first submit leaves (nothing paid yet);
- `output`: half-way through writing the first result image (its temporary file half full);
- `report`: half-way through writing report.csv.

The pauses wrap the real code (the real `atomic_writer`, the real client), so what the kill
leaves behind is what a real crash at that point would leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

PAUSE_ENV = "CRASH_PAUSE_AT"
MARKER_ENV = "CRASH_MARKER"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def _announce_and_hang(what: str) -> None:
    Path(os.environ[MARKER_ENV]).write_text(what, encoding="utf-8")
    time.sleep(600)  # blocks the event loop too: nothing else moves until the kill


class _HalfWriter:
    """A file wrapper that writes half of the first chunk, then hangs."""

    def __init__(self, fh: BinaryIO, target: Path) -> None:
        self._fh = fh
        self._target = target

    def write(self, data: bytes) -> int:
        self._fh.write(data[: len(data) // 2])
        self._fh.flush()
        os.fsync(self._fh.fileno())
        _announce_and_hang(str(self._target))
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def _install_pauses(out: Path) -> None:
    point = os.environ.get(PAUSE_ENV, "")
    if not point:
        return
    if point == "submit":
        from inpaint_flows import client

        real_submit = client.NovitaClient.submit

        async def submit(self: client.NovitaClient, *args: Any, **kwargs: Any) -> Any:
            _announce_and_hang("submit")
            return await real_submit(self, *args, **kwargs)

        client.NovitaClient.submit = submit  # type: ignore[method-assign]
        return

    from inpaint_flows import storage

    real_writer = storage.atomic_writer
    state_dir = (out / ".inpaint-state").resolve()

    def wanted(target: Path) -> bool:
        if point == "report":
            return target.name == "report.csv"
        inside_state = state_dir in target.resolve().parents
        return point == "output" and target.suffix in IMAGE_SUFFIXES and not inside_state

    @contextlib.contextmanager
    def pausing_writer(path: storage.StrPath, *, durable: bool = True) -> Iterator[BinaryIO]:
        with real_writer(path, durable=durable) as fh:
            target = Path(path)
            yield _HalfWriter(fh, target) if wanted(target) else fh  # type: ignore[misc]

    storage.atomic_writer = pausing_writer


async def main(source: str, out: str, base_url: str, images_per_minute: float | None) -> None:
    from inpaint_flows.models import InpaintParams
    from tests.flows.helpers import call_batch_flow

    _install_pauses(Path(out))
    await call_batch_flow(
        source=source,
        out=out,
        defaults=InpaintParams(steps=1),
        base_url=base_url,
        images_per_minute=images_per_minute,
        max_in_flight=4,
        return_state=True,
    )


if __name__ == "__main__":
    src, dst, url = sys.argv[1:4]
    ipm = float(sys.argv[4]) if len(sys.argv) > 4 else None
    asyncio.run(main(src, dst, url, ipm))
