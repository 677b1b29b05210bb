"""Helpers for the local server's tests: tiny images, request bodies, polling, raw sockets."""

from __future__ import annotations

import base64
import copy
import io
import socket
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np
from PIL import Image

from inpaint_flows.contract import ERROR_BODY_KEYS
from novita_local.server import LocalServer

SIZE = 64
FINISHED = ("TASK_STATUS_SUCCEED", "TASK_STATUS_FAILED")

StartServer = Callable[
    ..., LocalServer
]  # the `start_server` fixture: ServerConfig fields -> server


# ------------------------------------------------------------------ images


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sample_image(size: tuple[int, int] = (SIZE, SIZE)) -> Image.Image:
    """A gradient, so inpainting has something to do and outputs differ by seed."""
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]]
    pixels = np.stack([(xs * 4) % 256, (ys * 4) % 256, (xs + ys) % 256], axis=-1)
    return Image.fromarray(pixels.astype(np.uint8))


def sample_mask(size: tuple[int, int] = (SIZE, SIZE)) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, (size[0] // 4, size[1] // 4, size[0] * 3 // 4, size[1] * 3 // 4))
    return mask


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose data is a few bytes (a 'bomb')."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


IMAGE_B64 = b64(encode(sample_image()))
MASK_B64 = b64(encode(sample_mask()))


def valid_body(**request_overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "extra": {"response_image_type": "png"},
        "request": {
            "model_name": "local-telea-inpainting",
            "image_base64": IMAGE_B64,
            "mask_image_base64": MASK_B64,
            "prompt": "a clean background",
            "image_num": 1,
            "steps": 20,
            "guidance_scale": 7.5,
            "sampler_name": "Euler a",
            "seed": 42,
        },
    }
    body["request"].update(request_overrides)
    return copy.deepcopy(body)


@contextmanager
def http(server: LocalServer, **kwargs: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10, **kwargs) as client:
        yield client


def submit(client: httpx.Client, body: dict[str, Any] | None = None, **kw: Any) -> str:
    response = client.post("/v3/async/inpainting", json=body or valid_body(), **kw)
    assert response.status_code == 200, response.text
    task_id: str = response.json()["task_id"]
    return task_id


def poll(client: httpx.Client, task_id: str) -> dict[str, Any]:
    response = client.get("/v3/async/task-result", params={"task_id": task_id})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def wait_done(client: httpx.Client, task_id: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        result = poll(client, task_id)
        if result["task"]["status"] in FINISHED:
            return result
        assert time.monotonic() < deadline, f"task {task_id} still {result['task']['status']}"
        time.sleep(0.02)


def assert_error(response: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    """The response is the contract's error body with this status and reason."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == ERROR_BODY_KEYS, body
    assert body["code"] == status
    assert body["reason"] == reason, body
    assert isinstance(body["message"], str) and body["message"]
    assert body["metadata"] == {}
    return body


def raw_request(server: LocalServer, request: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes exactly as given (no URL normalisation) and return everything received."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            chunks.append(data)
            if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                break
        return b"".join(chunks)


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False
