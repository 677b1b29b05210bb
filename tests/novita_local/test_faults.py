"""Each fault knob does what it says, and a fault seed replays the same faults."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.novita_local.helpers import (
    StartServer,
    assert_error,
    http,
    submit,
    valid_body,
    wait_done,
)

SUBMIT_ERRORS = [
    pytest.param("submit_429_rate", 429, "RATE_LIMIT_EXCEEDED", id="submit-429"),
    pytest.param("submit_500_rate", 500, "CREATE_TASK_FAILED", id="submit-500"),
    pytest.param("submit_503_rate", 503, "SERVICE_UNAVAILABLE", id="submit-503"),
]


@pytest.mark.parametrize(("knob", "status", "reason"), SUBMIT_ERRORS)
def test_submit_error_faults_create_no_task(
    start_server: StartServer, knob: str, status: int, reason: str
) -> None:
    server = start_server(**{knob: 1.0})
    with http(server) as client:
        response = client.post("/v3/async/inpainting", json=valid_body())
        assert_error(response, status, reason)
        assert "Retry-After" not in response.headers  # Novita documents none
    stats = server.stats()
    assert stats["tasks"]["total"] == 0
    assert stats["submissions"]["total"] == 1 and stats["submissions"]["accepted"] == 0


def test_dropped_submit_before_create(start_server: StartServer) -> None:
    server = start_server(drop_submit_rate=1.0)
    with http(server) as client, pytest.raises(httpx.RemoteProtocolError):
        client.post("/v3/async/inpainting", json=valid_body())
    stats = server.stats()
    assert stats["tasks"]["total"] == 0
    assert stats["submissions"]["dropped"] == 1 and stats["faults"]["submit_drop"] == 1


def test_dropped_submit_after_create_leaves_a_running_task(start_server: StartServer) -> None:
    server = start_server(drop_submit_rate=1.0, drop_after_create=True)
    with http(server) as client, pytest.raises(httpx.RemoteProtocolError):
        client.post("/v3/async/inpainting", json=valid_body())
    stats = server.stats()
    assert stats["tasks"]["total"] == 1  # billed, but the client never got its id
    assert stats["submissions"]["accepted"] == 1
    (counts,) = stats["submissions"]["by_content_hash"].values()
    assert counts == {"submitted": 1, "accepted": 1}


POLL_ERRORS = [
    pytest.param("result_500_rate", 500, "GET_RESULT_FAILED", id="poll-500"),
    pytest.param("result_429_rate", 429, "RATE_LIMIT_EXCEEDED", id="poll-429"),
]


@pytest.mark.parametrize(("knob", "status", "reason"), POLL_ERRORS)
def test_poll_error_faults(start_server: StartServer, knob: str, status: int, reason: str) -> None:
    server = start_server(**{knob: 1.0})
    with http(server) as client:
        task_id = submit(client)
        assert_error(
            client.get("/v3/async/task-result", params={"task_id": task_id}), status, reason
        )


def test_dropped_poll(start_server: StartServer) -> None:
    server = start_server(drop_poll_rate=1.0)
    with http(server) as client:
        task_id = submit(client)
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/v3/async/task-result", params={"task_id": task_id})
        assert client.get("/v3/model").status_code == 200  # the server itself is fine
    assert server.stats()["faults"]["poll_drop"] == 1


def test_task_failure_has_a_reason(start_server: StartServer) -> None:
    server = start_server(task_fail_rate=1.0, profile="helpful")  # helpful: completion time
    with http(server) as client:
        result = wait_done(client, submit(client))
    assert result["task"]["status"] == "TASK_STATUS_FAILED"
    assert "TASK_FAILED" in result["task"]["reason"]
    assert result["images"] == []
    assert result["extra"]["debug_info"]["complete_time_ms"] != ""
    assert server.stats()["tasks"]["by_status"]["TASK_STATUS_FAILED"] == 1


def test_corrupt_images_are_served_truncated(start_server: StartServer) -> None:
    server = start_server(corrupt_image_rate=1.0)
    with http(server) as client:
        result = wait_done(client, submit(client))
        assert result["task"]["status"] == "TASK_STATUS_SUCCEED"
        response = client.get(result["images"][0]["image_url"])
    assert response.status_code == 200
    assert response.content.startswith(b"\x89PNG")
    with pytest.raises(OSError):
        Image.open(io.BytesIO(response.content)).load()


def test_latency_range_is_drawn_per_task(start_server: StartServer) -> None:
    server = start_server(latency=(0.05, 0.3), workers=4)
    latencies = set()
    with http(server) as client:
        ids = [submit(client) for _ in range(4)]
        for task_id in ids:
            wait_done(client, task_id)
    for task_id in ids:
        task = server.state.store.get(task_id)
        assert task is not None and 0.05 <= task.latency <= 0.3
        latencies.add(task.latency)
    assert len(latencies) == 4


MIXED: dict[str, Any] = {
    "submit_429_rate": 0.2,
    "submit_500_rate": 0.1,
    "submit_503_rate": 0.1,
    "drop_submit_rate": 0.1,
    "result_500_rate": 0.2,
    "result_429_rate": 0.1,
    "drop_poll_rate": 0.1,
    "task_fail_rate": 0.3,
    "corrupt_image_rate": 0.3,
}


def _run_mixed(start_server: StartServer, seed: int) -> list[str]:
    """The outcome of 16 submits, each followed by a poll, under MIXED faults."""
    server = start_server(seed=seed, **MIXED)
    outcomes = []
    with http(server) as client:
        for number in range(16):
            try:
                response = client.post("/v3/async/inpainting", json=valid_body(seed=number))
            except httpx.RemoteProtocolError:
                outcomes.append("submit-dropped")
                continue
            if response.status_code != 200:
                outcomes.append(f"submit-{response.status_code}")
                continue
            task_id = response.json()["task_id"]
            try:
                polled = client.get("/v3/async/task-result", params={"task_id": task_id})
                outcomes.append(f"poll-{polled.status_code}")
            except httpx.RemoteProtocolError:
                outcomes.append("poll-dropped")
            task = server.state.store.get(task_id)
            assert task is not None
            outcomes.append(f"fail={task.will_fail},corrupt={task.corrupt}")
    return outcomes


def test_same_fault_seed_replays_the_same_faults(start_server: StartServer) -> None:
    first = _run_mixed(start_server, seed=7)
    assert _run_mixed(start_server, seed=7) == first
    assert _run_mixed(start_server, seed=8) != first
    kinds = {outcome.split("-")[0] for outcome in first}
    assert {"submit", "poll"} <= kinds
    assert any(o.startswith("submit-") and o != "submit-dropped" for o in first)


def test_fault_seed_is_reported(start_server: StartServer) -> None:
    assert start_server(seed=1234).stats()["fault_seed"] == 1234
    assert isinstance(start_server(seed=None).stats()["fault_seed"], int)


@pytest.mark.parametrize(
    "fields",
    [
        {"submit_429_rate": 1.5},
        {"submit_429_rate": 0.6, "submit_500_rate": 0.6},
        {"result_500_rate": 0.5, "drop_poll_rate": 0.6},
        {"latency": -1.0},
        {"latency": (2.0, 1.0)},
        {"workers": 0},
        {"ipm": 0},
        {"api_key": ""},
    ],
    ids=str,
)
def test_impossible_configs_are_refused(fields: dict[str, Any]) -> None:
    from novita_local.config import ServerConfig

    with pytest.raises(ValueError):
        ServerConfig(**fields)


def test_poll_counts_survive_faults(start_server: StartServer) -> None:
    server = start_server(result_500_rate=0.5, seed=3)
    with http(server) as client:
        task_id = submit(client)
        for _ in range(10):
            client.get("/v3/async/task-result", params={"task_id": task_id})
    stats = server.stats()
    assert stats["polls"]["by_task"][task_id] == 10
    assert 0 < stats["faults"]["poll_500"] < 10
