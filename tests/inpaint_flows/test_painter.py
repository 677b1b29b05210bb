"""The mask painter's server: what it lists, serves and writes, and what it refuses.

Each test talks HTTP to the painter on a real loopback socket (uvicorn in a thread), as the
page does. The page itself is driven in tests/browser/test_painter.py.
"""

from __future__ import annotations

import io
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.app import app as cli_app
from inpaint_flows import painter
from inpaint_flows.errors import ConfigError
from inpaint_flows.input_checks import prepare_job
from inpaint_flows.jobs import discover_jobs
from inpaint_flows.models import InpaintParams
from inpaint_flows.painter import bind_loopback
from inpaint_flows.pictures import load_image, load_mask
from tests.inpaint_flows.painter_support import landscape, running_painter, save_rotated_jpeg


def png(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def box_mask(width: int, height: int, box: tuple[int, int, int, int]) -> np.ndarray:
    values = np.zeros((height, width), np.uint8)
    x0, y0, x1, y1 = box
    values[y0:y1, x0:x1] = 255
    return values


@contextmanager
def client_for(folder: Path) -> Iterator[httpx.Client]:
    with running_painter(folder) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture
def split(tmp_path: Path) -> Path:
    """images/ + masks/: a.png (mask), sub/b.jpg (none), phone.jpg (EXIF-rotated, none)."""
    root = tmp_path / "batch"
    (root / "images" / "sub").mkdir(parents=True)
    (root / "masks").mkdir()
    landscape(40, 30).save(root / "images" / "a.png")
    landscape(24, 16).save(root / "images" / "sub" / "b.jpg")
    save_rotated_jpeg(landscape(60, 40), root / "images" / "phone.jpg")  # stored 40x60
    Image.fromarray(box_mask(40, 30, (5, 5, 20, 15))).save(root / "masks" / "a.png")
    (root / "notes.txt").write_text("not an image", encoding="utf-8")
    return root


@pytest.fixture
def client(split: Path) -> Iterator[httpx.Client]:
    with client_for(split) as c:
        yield c


def test_lists_every_image_with_its_masks_and_save_target(client: httpx.Client) -> None:
    body = client.get("/api/images").json()

    assert body["layout"] == "images/ + masks/"
    assert body["images"] == [
        {
            "name": "a.png",
            "image": "images/a.png",
            "masks": ["masks/a.png"],
            "target": "masks/a.png",
            "shared_with": [],
        },
        {
            "name": "phone.jpg",
            "image": "images/phone.jpg",
            "masks": [],
            "target": "masks/phone.png",
            "shared_with": [],
        },
        {
            "name": "sub/b.jpg",
            "image": "images/sub/b.jpg",
            "masks": [],
            "target": "masks/sub/b.png",
            "shared_with": [],
        },
    ]


def test_image_is_served_with_its_exif_orientation_applied(
    split: Path, client: httpx.Client
) -> None:
    response = client.get("/api/image", params={"name": "phone.jpg"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(response.content)) as served:
        assert served.size == (60, 40), "served as stored (40x60), not as the pipeline sees it"
        assert served.getexif().get(0x0112, 1) == 1, "an orientation left for the browser"
        pixels = np.asarray(served.convert("RGB"), np.int16)
    expected = np.asarray(load_image(split / "images" / "phone.jpg"), np.int16)
    assert np.abs(pixels - expected).mean() < 3  # the same picture, JPEG-encoded for display


def test_existing_mask_is_served_as_the_pipeline_reads_it(
    split: Path, client: httpx.Client
) -> None:
    # A mask drawn on the stored (unrotated) pixels: the pipeline turns it like the image.
    stored = box_mask(40, 60, (0, 0, 10, 20))
    Image.fromarray(stored).save(split / "masks" / "phone.png")

    response = client.get("/api/mask", params={"name": "phone.jpg"})

    assert response.status_code == 200
    with Image.open(io.BytesIO(response.content)) as served:
        assert (served.mode, served.size) == ("L", (60, 40))
        expected = load_mask(split / "masks" / "phone.png", (60, 40), image_orientation=6)
        assert np.array_equal(np.asarray(served), np.asarray(expected))
    missing = client.get("/api/mask", params={"name": "sub/b.jpg"})
    assert (missing.status_code, missing.json()["reason"]) == (404, "NO_MASK")


def test_saved_mask_fits_the_oriented_image_and_the_pipeline_takes_it(
    split: Path, client: httpx.Client
) -> None:
    painted = box_mask(60, 40, (30, 10, 50, 30))

    response = client.post(
        "/api/mask", params={"name": "phone.jpg"}, content=png(np.dstack([painted] * 3))
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"mask": "masks/phone.png", "history": []}
    with Image.open(split / "masks" / "phone.png") as saved:
        assert (saved.mode, saved.size) == ("L", (60, 40))
        assert np.array_equal(np.asarray(saved), painted)
    job = next(j for j in discover_jobs(split, InpaintParams()) if j.name == "phone.jpg")
    assert job.mask_path == str(split / "masks" / "phone.png")
    assert prepare_job(job).mask_coverage_pct == pytest.approx(100 * 20 * 20 / (60 * 40), abs=1e-3)


@pytest.mark.parametrize(
    ("size", "why"),
    [
        pytest.param((40, 60), "the stored size, not the oriented one", id="unrotated"),
        pytest.param((61, 40), "one pixel too wide", id="off-by-one"),
    ],
)
def test_mask_of_another_size_is_refused(
    split: Path, client: httpx.Client, size: tuple[int, int], why: str
) -> None:
    response = client.post(
        "/api/mask",
        params={"name": "phone.jpg"},
        content=png(box_mask(*size, (0, 0, 10, 10))),
    )

    assert response.status_code == 422, why
    body = response.json()
    assert body["reason"] == "MASK_SIZE_MISMATCH"
    assert f"{size[0]}x{size[1]}" in body["message"] and "60x40" in body["message"]
    assert not (split / "masks" / "phone.png").exists()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"not a picture", "INVALID_IMAGE_FORMAT", id="garbage"),
        pytest.param(None, "INVALID_IMAGE_FORMAT", id="jpeg"),
        pytest.param(png(np.zeros((16, 24))), "EMPTY_MASK", id="all-black"),
    ],
)
def test_unusable_upload_is_refused(
    split: Path, client: httpx.Client, body: bytes | None, reason: str
) -> None:
    if body is None:
        buffer = io.BytesIO()
        Image.new("L", (24, 16), 255).save(buffer, format="JPEG")
        body = buffer.getvalue()

    response = client.post("/api/mask", params={"name": "sub/b.jpg"}, content=body)

    assert (response.status_code, response.json()["reason"]) == (422, reason)
    assert not (split / "masks" / "sub" / "b.png").exists()


def test_oversized_upload_is_refused_while_it_arrives(
    split: Path, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(painter, "MAX_UPLOAD_BYTES", 1000)

    def body() -> Iterator[bytes]:  # streamed: no Content-Length to trust
        yield from [bytes(600)] * 3

    response = client.post("/api/mask", params={"name": "sub/b.jpg"}, content=body())

    assert (response.status_code, response.json()["reason"]) == (413, "UPLOAD_TOO_LARGE")
    assert not (split / "masks" / "sub" / "b.png").exists()


def test_overwrite_needs_the_flag_and_keeps_the_old_mask(split: Path, client: httpx.Client) -> None:
    mask_file = split / "masks" / "a.png"
    old = mask_file.read_bytes()
    new = box_mask(40, 30, (20, 10, 35, 25))

    refused = client.post("/api/mask", params={"name": "a.png"}, content=png(new))

    assert refused.status_code == 409
    assert refused.json()["reason"] == "MASK_EXISTS"
    assert "overwrite=true" in refused.json()["message"]
    assert mask_file.read_bytes() == old

    done = client.post("/api/mask", params={"name": "a.png", "overwrite": "true"}, content=png(new))

    assert done.status_code == 200, done.text
    (kept,) = done.json()["history"]
    assert re.fullmatch(r"masks/\.history/a\.\d{8}T\d{6}\.\d{6}Z\.png", kept), kept
    assert (split / kept).read_bytes() == old
    assert np.array_equal(np.asarray(Image.open(mask_file)), new)
    # The history folder is invisible to the pipeline: same jobs, and a.png uses the new mask.
    jobs = {j.name: j for j in discover_jobs(split, InpaintParams())}
    assert sorted(jobs) == ["a.png", "phone.jpg", "sub/b.jpg"]
    assert jobs["a.png"].mask_path == str(mask_file) and jobs["a.png"].problem is None


def test_mask_with_another_extension_is_retired_so_the_new_one_is_used(
    split: Path, client: httpx.Client
) -> None:
    # sub/b.jpg's old mask is a JPEG: left beside the new PNG it would win (same extension).
    old = split / "masks" / "sub" / "b.jpg"
    old.parent.mkdir()
    Image.fromarray(box_mask(24, 16, (0, 0, 5, 5))).save(old, quality=100)
    old_bytes = old.read_bytes()

    done = client.post(
        "/api/mask",
        params={"name": "sub/b.jpg", "overwrite": "true"},
        content=png(box_mask(24, 16, (10, 5, 20, 15))),
    )

    assert done.status_code == 200, done.text
    assert not old.exists()
    (kept,) = done.json()["history"]
    assert kept.startswith("masks/.history/sub/b.") and kept.endswith(".jpg")
    assert (split / kept).read_bytes() == old_bytes
    job = next(j for j in discover_jobs(split, InpaintParams()) if j.name == "sub/b.jpg")
    assert (job.mask_path, job.problem) == (str(split / "masks" / "sub" / "b.png"), None)


def test_pair_layout_saves_name_mask_beside_the_image(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    (root / "trip").mkdir(parents=True)
    landscape(30, 20).save(root / "trip" / "beach.png")
    landscape(30, 20).save(root / "cat.webp")
    with client_for(root) as client:
        listed = client.get("/api/images").json()
        done = client.post(
            "/api/mask",
            params={"name": "trip/beach.png"},
            content=png(box_mask(30, 20, (0, 0, 10, 10))),
        )
        again = client.post(
            "/api/mask",
            params={"name": "trip/beach.png", "overwrite": "true"},
            content=png(box_mask(30, 20, (10, 10, 20, 20))),
        )

    assert listed["layout"] == "name + name_mask"
    assert [(e["name"], e["target"]) for e in listed["images"]] == [
        ("cat.webp", "cat_mask.png"),
        ("trip/beach.png", "trip/beach_mask.png"),
    ]
    assert done.json()["mask"] == "trip/beach_mask.png"
    (kept,) = again.json()["history"]
    assert kept.startswith(".history/trip/beach_mask.") and kept.endswith(".png")
    jobs = {j.name: j for j in discover_jobs(root, InpaintParams())}
    assert sorted(jobs) == ["cat.webp", "trip/beach.png"], "a saved mask became an image"
    assert jobs["trip/beach.png"].mask_path == str(root / "trip" / "beach_mask.png")


def test_two_images_sharing_a_mask_name_cannot_be_saved(split: Path, client: httpx.Client) -> None:
    landscape(40, 30).save(split / "images" / "a.jpg")  # a.jpg and a.png both read masks/a.png

    listed = {e["name"]: e for e in client.get("/api/images").json()["images"]}
    response = client.post(
        "/api/mask",
        params={"name": "a.jpg", "overwrite": "true"},
        content=png(box_mask(40, 30, (0, 0, 9, 9))),
    )

    assert listed["a.jpg"]["shared_with"] == ["a.png"]
    assert (response.status_code, response.json()["reason"]) == (409, "SHARED_MASK")
    assert "a.png" in response.json()["message"]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("../outside.png", id="dotdot"),
        pytest.param("sub/../../outside.png", id="dotdot-inside"),
        pytest.param("../../batch-secret/outside.png", id="sibling"),
        pytest.param("/etc/hostname", id="absolute"),
        pytest.param("link.png", id="symlink-out"),
        pytest.param("a.png\x00.txt", id="nul"),
    ],
)
def test_paths_outside_the_folder_are_refused(split: Path, client: httpx.Client, name: str) -> None:
    outside = split.parent / "outside.png"
    landscape(40, 30).save(outside)
    (split / "images" / "link.png").symlink_to(outside)
    before = outside.read_bytes()

    responses = [
        client.get("/api/image", params={"name": name}),
        client.get("/api/mask", params={"name": name}),
        client.post(
            "/api/mask",
            params={"name": name, "overwrite": "true"},
            content=png(box_mask(40, 30, (0, 0, 9, 9))),
        ),
    ]

    for response in responses:
        assert response.status_code in (400, 404), response.text
        assert response.json()["reason"] in ("UNSAFE_PATH", "IMAGE_NOT_FOUND")
    assert outside.read_bytes() == before
    assert sorted(p.name for p in split.parent.iterdir()) == ["batch", "outside.png"]


def test_masks_folder_linking_outside_is_not_written_through(tmp_path: Path) -> None:
    root = tmp_path / "batch"
    (root / "images").mkdir(parents=True)
    landscape(20, 10).save(root / "images" / "a.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "masks").symlink_to(elsewhere)

    with client_for(root) as client:
        response = client.post(
            "/api/mask", params={"name": "a.png"}, content=png(box_mask(20, 10, (0, 0, 5, 5)))
        )

    assert (response.status_code, response.json()["reason"]) == (400, "UNSAFE_PATH")
    assert list(elsewhere.iterdir()) == []


def test_requests_for_another_host_or_from_another_origin_are_refused(client: httpx.Client) -> None:
    rebound = client.get("/api/images", headers={"Host": "attacker.example"})
    cross = client.post(
        "/api/mask",
        params={"name": "sub/b.jpg"},
        headers={"Origin": "https://attacker.example"},
        content=png(box_mask(24, 16, (0, 0, 5, 5))),
    )
    same = client.post(
        "/api/mask",
        params={"name": "sub/b.jpg"},
        headers={"Origin": str(client.base_url).rstrip("/")},
        content=png(box_mask(24, 16, (0, 0, 5, 5))),
    )

    assert (rebound.status_code, rebound.json()["reason"]) == (400, "UNKNOWN_HOST")
    assert (cross.status_code, cross.json()["reason"]) == (403, "CROSS_ORIGIN")
    assert same.status_code == 200, same.text


def test_page_loads_nothing_from_elsewhere(client: httpx.Client) -> None:
    page = client.get("/")
    assets = [client.get("/static/painter.js"), client.get("/static/painter.css")]

    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/static/painter.js"' in page.text
    for response in [page, *assets]:
        assert response.status_code == 200
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]", response.text, re.I), (
            "a URL to another host: the page must work offline"
        )
        assert "default-src 'self'" in response.headers["content-security-policy"]
    assert client.get("/static/../painter.py").status_code == 404


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("0.0.0.0", id="all-interfaces"),
        pytest.param("::", id="all-interfaces-v6"),
        pytest.param("192.168.1.20", id="lan"),
        pytest.param("example.com", id="name"),
    ],
)
def test_binding_anything_but_loopback_is_refused(host: str) -> None:
    with pytest.raises(ConfigError, match=r"listens on 127\.0\.0\.1") as caught:
        bind_loopback(host, 0)
    assert caught.value.reason == "NOT_LOOPBACK"


def test_loopback_binds_and_a_busy_port_is_reported() -> None:
    with bind_loopback("localhost", 0) as first:
        host, port = first.getsockname()[:2]
        assert host == "127.0.0.1"
        with pytest.raises(ConfigError, match=f"Port {port} .* is in use") as caught:
            bind_loopback("127.0.0.1", port)
    assert caught.value.reason == "PORT_IN_USE"


def test_paint_command_refuses_a_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = CliRunner().invoke(
        cli_app, ["paint", str(missing), "--no-browser"], env={"COLUMNS": "300"}
    )

    assert result.exit_code == 2
    assert f"Invalid value for FOLDER: {missing} does not exist" in result.output


def test_paint_command_serves_the_folder_and_prints_its_url(split: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [sys.executable, "-c", "from cli.app import app; app()"]
    proc = subprocess.Popen(
        [*command, "paint", str(split), "--no-browser"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    stderr = proc.stderr
    assert stderr is not None

    def read_lines() -> None:
        for text in stderr:
            lines.put(text)

    threading.Thread(target=read_lines, daemon=True).start()
    try:
        line = lines.get(timeout=60)
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert match, f"no URL in {line!r}"
        listed = httpx.get(match.group(0) + "api/images", timeout=30).json()
        assert [e["name"] for e in listed["images"]] == ["a.png", "phone.jpg", "sub/b.jpg"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
