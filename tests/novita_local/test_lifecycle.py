"""A task's life as a client sees it: statuses, eta/progress, result shape, outputs, restarts."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from inpaint_flows.contract import TASK_STATUSES
from novita_local.server import LocalServer
from tests.novita_local.helpers import (
    SIZE,
    StartServer,
    assert_error,
    b64,
    encode,
    http,
    poll,
    sample_image,
    submit,
    valid_body,
    wait_done,
)


def _download(client: httpx.Client, result: dict[str, Any]) -> list[bytes]:
    files = []
    for image in result["images"]:
        response = client.get(image["image_url"])
        assert response.status_code == 200
        files.append(response.content)
    return files


def test_result_has_the_exact_contract_shape(helpful_client: httpx.Client) -> None:
    """Under `helpful`: progress 100 and real timings once done (test_profiles: `novita`)."""
    client = helpful_client
    result = wait_done(client, submit(client, valid_body(image_num=2, seed=7)))
    assert set(result) == {"task", "images", "videos", "audios", "extra"}
    task = result["task"]
    assert set(task) == {"task_id", "task_type", "status", "reason", "eta", "progress_percent"}
    assert task["status"] == "TASK_STATUS_SUCCEED"
    assert task["eta"] == 0 and task["progress_percent"] == 100
    assert result["videos"] == [] and result["audios"] == []
    assert len(result["images"]) == 2
    for image in result["images"]:
        assert set(image) == {"image_url", "image_url_ttl", "image_type", "nsfw_detection_result"}
        assert image["nsfw_detection_result"] is None  # the SDK crashes on {}
        assert isinstance(image["image_url_ttl"], int) and 3590 <= image["image_url_ttl"] <= 3600
        assert image["image_type"] == "png"
    extra = result["extra"]
    assert extra["seed"] == "7"
    assert extra["enable_nsfw_detection"] is False
    debug = extra["debug_info"]
    assert set(debug) == {"request_info", "submit_time_ms", "execute_time_ms", "complete_time_ms"}
    assert all(isinstance(value, str) for value in debug.values())
    assert int(debug["submit_time_ms"]) <= int(debug["execute_time_ms"])
    assert int(debug["execute_time_ms"]) <= int(debug["complete_time_ms"])


def test_queued_then_processing_then_succeed_with_honest_eta(start_server: StartServer) -> None:
    # 2 s per task: the second is still queued when polled, also on a busy machine.
    server = start_server(latency=2.0, workers=1, profile="helpful")
    with http(server) as client:
        first = submit(client)
        second = submit(client)
        queued = poll(client, second)["task"]
        assert queued["status"] == "TASK_STATUS_QUEUED"
        assert queued["progress_percent"] == 0
        assert queued["eta"] >= 2  # waits for the first task, then its own 2 s
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            task = poll(client, first)["task"]
            seen.append(task)
            if task["status"] == "TASK_STATUS_SUCCEED":
                break
            time.sleep(0.05)
        statuses = [task["status"] for task in seen]
        assert "TASK_STATUS_PROCESSING" in statuses
        assert statuses[-1] == "TASK_STATUS_SUCCEED"
        processing = [t for t in seen if t["status"] == "TASK_STATUS_PROCESSING"]
        progress = [t["progress_percent"] for t in processing]
        assert progress == sorted(progress) and all(0 <= p < 100 for p in progress)
        assert max(progress) >= 30
        assert all(t["eta"] <= 2 for t in processing)
        assert wait_done(client, second)["task"]["status"] == "TASK_STATUS_SUCCEED"
        assert {t["status"] for t in seen} <= set(TASK_STATUSES)


def test_unknown_task_is_404(client: httpx.Client) -> None:
    response = client.get("/v3/async/task-result", params={"task_id": "no-such-task"})
    error = assert_error(response, 404, "TASK_NOT_FOUND")
    assert "no-such-task" in error["message"]


@pytest.mark.parametrize("query", [{}, {"task_id": ""}], ids=["absent", "empty"])
def test_task_id_is_required(client: httpx.Client, query: dict[str, str]) -> None:
    error = assert_error(
        client.get("/v3/async/task-result", params=query), 400, "INVALID_REQUEST_BODY"
    )
    assert "task_id" in error["message"]


def test_restart_loses_every_task(start_server: StartServer) -> None:
    server = start_server(latency=5, workers=1)
    with http(server) as client:
        task_id = submit(client)
        assert poll(client, task_id)["task"]["status"] in (
            "TASK_STATUS_QUEUED",
            "TASK_STATUS_PROCESSING",
        )
        server.restart()
        assert_error(
            client.get("/v3/async/task-result", params={"task_id": task_id}), 404, "TASK_NOT_FOUND"
        )
        assert server.stats()["restarts"] == 1
        assert server.stats()["tasks"]["total"] == 0
        # the worker is freed at once, as after a crash: a new task starts without waiting 5 s
        fresh = submit(client)
        deadline = time.monotonic() + 2
        while poll(client, fresh)["task"]["status"] != "TASK_STATUS_PROCESSING":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert client.post("/_local/restart").json() == {"restarted": True}
        assert server.stats()["restarts"] == 2


def test_a_hold_keeps_tasks_queued_until_released(start_server: StartServer) -> None:
    server = start_server(latency=0, workers=1)
    with http(server) as client:
        assert client.post("/_local/hold").json() == {"held": True}
        task_id = submit(client)
        for _ in range(20):  # unheld, a zero-latency task ends within milliseconds
            assert poll(client, task_id)["task"]["status"] == "TASK_STATUS_QUEUED"
        assert client.post("/_local/hold", params={"held": "false"}).json() == {"held": False}
        assert wait_done(client, task_id)["task"]["status"] == "TASK_STATUS_SUCCEED"


def test_the_in_process_server_holds_as_the_endpoint_does(start_server: StartServer) -> None:
    server = start_server(latency=0, workers=1)
    with http(server) as client:
        server.hold()
        task_id = submit(client)
        for _ in range(20):
            assert poll(client, task_id)["task"]["status"] == "TASK_STATUS_QUEUED"
        server.hold(False)
        assert wait_done(client, task_id)["task"]["status"] == "TASK_STATUS_SUCCEED"


def test_same_seed_gives_the_same_bytes(client: httpx.Client) -> None:
    body = valid_body(seed=1234, image_num=2)
    first = _download(client, wait_done(client, submit(client, body)))
    second = _download(client, wait_done(client, submit(client, body)))
    assert first == second
    assert first[0] != first[1]  # images within a request differ
    other = _download(client, wait_done(client, submit(client, valid_body(seed=1235, image_num=2))))
    assert other != first


def test_seed_minus_one_picks_a_seed_and_reports_it(client: httpx.Client) -> None:
    result = wait_done(client, submit(client, valid_body(seed=-1)))
    seed = result["extra"]["seed"]
    assert isinstance(seed, str) and seed.isdigit()
    replay = wait_done(client, submit(client, valid_body(seed=int(seed))))
    assert _download(client, replay) == _download(client, result)


def test_same_fault_seed_picks_the_same_random_seeds(start_server: StartServer) -> None:
    seeds = []
    for _ in range(2):
        server = start_server(seed=99)
        with http(server) as client:
            seeds.append(poll(client, submit(client, valid_body(seed=-1)))["extra"]["seed"])
    assert seeds[0] == seeds[1]


@pytest.mark.parametrize(
    ("image_type", "pil_format", "content_type"),
    [("png", "PNG", "image/png"), ("webp", "WEBP", "image/webp"), ("jpeg", "JPEG", "image/jpeg")],
)
def test_outputs_decode_in_each_response_image_type(
    client: httpx.Client, image_type: str, pil_format: str, content_type: str
) -> None:
    body = valid_body(image_num=2)
    body["extra"] = {"response_image_type": image_type}
    result = wait_done(client, submit(client, body))
    for image in result["images"]:
        assert image["image_type"] == image_type
        assert image["image_url"].split("?")[0].endswith(f".{image_type}")
        response = client.get(image["image_url"])
        assert response.headers["content-type"] == content_type
        decoded = Image.open(io.BytesIO(response.content))
        decoded.load()
        assert decoded.format == pil_format
        assert decoded.size == (SIZE, SIZE)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="whole-picture"),
        pytest.param({"inpainting_full_res": 1, "inpainting_full_res_padding": 4}, id="full-res"),
        pytest.param({"inpainting_mask_invert": 1}, id="inverted"),
    ],
)
def test_pixels_outside_the_mask_are_unchanged(
    client: httpx.Client, options: dict[str, int]
) -> None:
    """Through the whole server: outside the (maybe inverted) mask, outputs equal the input."""
    body = valid_body(mask_blur=0, **options)
    png = _download(client, wait_done(client, submit(client, body)))[0]
    output = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    original = np.asarray(sample_image())
    inside = np.zeros((SIZE, SIZE), dtype=bool)
    inside[16:48, 16:48] = True  # the white square of sample_mask()
    edge = np.zeros_like(inside)
    edge[12:52, 12:52] = True
    edge[20:44, 20:44] = False  # a band around the square's border, left out of both checks
    repainted = ~inside if options.get("inpainting_mask_invert") else inside
    kept = ~repainted & ~edge
    assert np.array_equal(output[kept], original[kept])
    assert not np.array_equal(output[repainted & ~edge], original[repainted & ~edge])


def test_enable_nsfw_detection_is_echoed(client: httpx.Client) -> None:
    body = valid_body()
    body["extra"] = {"enable_nsfw_detection": True}
    result = wait_done(client, submit(client, body))
    assert result["extra"]["enable_nsfw_detection"] is True
    assert all(image["nsfw_detection_result"] is None for image in result["images"])


def test_result_urls_use_the_address_the_client_used(local_server: LocalServer) -> None:
    with httpx.Client(base_url=f"http://localhost:{local_server.port}") as client:
        result = wait_done(client, submit(client))
        assert result["images"][0]["image_url"].startswith(f"http://localhost:{local_server.port}/")


def test_uploaded_jpeg_and_mask_from_alpha_complete(client: httpx.Client) -> None:
    mask = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    mask.paste((0, 0, 0, 255), (20, 20, 44, 44))
    body = valid_body(
        image_base64=b64(encode(sample_image(), "JPEG")), mask_image_base64=b64(encode(mask))
    )
    assert wait_done(client, submit(client, body))["task"]["status"] == "TASK_STATUS_SUCCEED"
