"""API keys: required when configured (400 missing, 403 wrong), optional otherwise, never leaked."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from novita_local.server import LocalServer
from tests.novita_local.helpers import (
    StartServer,
    assert_error,
    http,
    submit,
    valid_body,
    wait_done,
)

KEY = "sk-local-TEST-KEY-7f3a9"


@pytest.fixture
def keyed(start_server: StartServer) -> Iterator[LocalServer]:
    yield start_server(api_key=KEY, access_log=True)


ROUTES = [
    pytest.param("POST", "/v3/async/inpainting", id="submit"),
    pytest.param("GET", "/v3/async/task-result?task_id=x", id="task-result"),
    pytest.param("GET", "/v3/model", id="models"),
]

CASES = [
    pytest.param({}, 400, "MISSING_API_KEY", id="absent"),
    pytest.param({"Authorization": "Bearer"}, 400, "MISSING_API_KEY", id="bearer-without-key"),
    pytest.param({"Authorization": KEY}, 400, "MISSING_API_KEY", id="no-scheme"),
    pytest.param({"Authorization": f"Basic {KEY}"}, 400, "MISSING_API_KEY", id="basic-scheme"),
    pytest.param({"Authorization": "Bearer sk-wrong"}, 403, "INVALID_API_KEY", id="wrong"),
    pytest.param({"Authorization": f"Bearer {KEY}x"}, 403, "INVALID_API_KEY", id="longer"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(("headers", "status", "reason"), CASES)
def test_configured_key_is_enforced(
    keyed: LocalServer, method: str, path: str, headers: dict[str, str], status: int, reason: str
) -> None:
    with http(keyed) as client:
        response = client.request(method, path, headers=headers, json=valid_body())
    body = assert_error(response, status, reason)
    assert KEY not in response.text and "sk-wrong" not in body["message"]


def test_configured_key_is_accepted(keyed: LocalServer) -> None:
    with http(keyed, headers={"Authorization": f"Bearer {KEY}"}) as client:
        assert wait_done(client, submit(client))["task"]["status"] == "TASK_STATUS_SUCCEED"
        assert client.get("/v3/model").status_code == 200
    with http(keyed, headers={"authorization": f"bearer {KEY}"}) as client:  # case-insensitive
        assert client.get("/v3/model").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer anything"}, {"Authorization": "garbage"}],
    ids=["none", "any-key", "garbage"],
)
def test_without_configured_key_anything_goes(
    client: httpx.Client, headers: dict[str, str]
) -> None:
    assert (
        client.post("/v3/async/inpainting", json=valid_body(), headers=headers).status_code == 200
    )


def test_local_routes_need_no_key(keyed: LocalServer) -> None:
    with http(keyed) as client:
        assert client.get("/_local/stats").status_code == 200
        assert client.get("/openapi.json").status_code == 200


def test_key_never_reaches_the_logs(keyed: LocalServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with http(keyed) as client:
        for key in (KEY, "sk-wrong-key-123"):
            headers = {"Authorization": f"Bearer {key}"}
            client.post("/v3/async/inpainting", json=valid_body(), headers=headers)
            client.get("/v3/async/task-result?task_id=x", headers=headers)
            client.get("/v3/model", headers=headers)
    assert "/v3/async/inpainting" in caplog.text  # the access log did record the requests
    assert KEY not in caplog.text and "sk-wrong-key-123" not in caplog.text
    assert KEY not in repr(keyed.config)
