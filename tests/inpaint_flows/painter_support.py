"""What the painter's tests share: the painter on a real socket, and a picture to paint on."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import uvicorn
from PIL import Image

from inpaint_flows.painter import MaskFolder, bind_loopback, create_app, url_of

ORIENTATION_TAG = 0x0112


@contextlib.contextmanager
def running_painter(folder: Path) -> Iterator[str]:
    """The painter for `folder` served by uvicorn in a thread on a free port; yields its URL."""
    sock = bind_loopback("127.0.0.1", 0)
    config = uvicorn.Config(
        create_app(MaskFolder(folder)), log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the painter's server stopped while starting"
        assert time.monotonic() < deadline, "the painter's server did not start within 30 s"
        time.sleep(0.01)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def landscape(width: int, height: int) -> Image.Image:
    """A picture with things one would paint out, at fractions of its size.

    A cable across the sky (y = 0.3, x = 0.05..0.7), a sign (x 0.08..0.26, y 0.68..0.88) and
    a red ball (centre 0.55, 0.78; radius 0.05 of the height). Drawn at a quarter of the size
    and enlarged: a big picture in a fraction of the time.
    """
    small = _landscape(max(1, width // 4), max(1, height // 4))
    return small.resize((width, height), Image.Resampling.BILINEAR)


def _landscape(width: int, height: int) -> Image.Image:
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    sky = np.array([95, 150, 215], np.float32) * (1 - y[..., None])
    sky = sky + np.array([210, 230, 245], np.float32) * y[..., None]
    pixels = np.broadcast_to(sky, (height, width, 3)).copy()
    hill = y > 0.62 + 0.05 * np.sin(x * 7.0)
    shade = (np.sin(x * 90.0) * np.cos(y * 70.0) * 8.0)[..., None]
    grass = np.array([70, 140, 60], np.float32) * (1.2 - 0.4 * y[..., None]) + shade
    pixels[hill] = grass[hill]
    yy, xx = np.ogrid[0:height, 0:width]
    sun = (xx - 0.82 * width) ** 2 + (yy - 0.18 * height) ** 2 < (0.07 * height) ** 2
    pixels[sun] = [255, 220, 90]
    cable = (np.abs(yy - 0.3 * height) < max(1, height // 400)) & (xx > 0.05 * width)
    pixels[cable & (xx < 0.7 * width)] = [40, 40, 45]
    sign = (xx > 0.08 * width) & (xx < 0.26 * width) & (yy > 0.68 * height) & (yy < 0.88 * height)
    pixels[sign] = [245, 245, 240]
    ball = (xx - 0.55 * width) ** 2 + (yy - 0.78 * height) ** 2 < (0.05 * height) ** 2
    pixels[ball] = [210, 40, 40]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def save_rotated_jpeg(picture: Image.Image, path: Path) -> None:
    """Store `picture` turned on its side with EXIF orientation 6, as a phone does.

    Applying the orientation (a quarter turn clockwise) gives `picture` back.
    """
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.transpose(Image.Transpose.ROTATE_90).save(path, quality=90, exif=exif.tobytes())
