"""`GET /v3/model`: the local models in Novita's shape, with filters and cursor pagination."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from novita_local.catalog import DEFAULT_REAL_MODEL
from novita_local.inpaint import LOCAL_MODEL_NS, LOCAL_MODEL_TELEA
from tests.novita_local.helpers import assert_error

ALL = [LOCAL_MODEL_TELEA, LOCAL_MODEL_NS, DEFAULT_REAL_MODEL]


def _names(client: httpx.Client, **params: Any) -> list[str]:
    response = client.get("/v3/model", params=params)
    assert response.status_code == 200, response.text
    return [model["sd_name"] for model in response.json()["models"]]


def test_lists_local_models_and_the_alias(client: httpx.Client) -> None:
    body = client.get("/v3/model").json()
    assert [m["sd_name"] for m in body["models"]] == ALL
    assert body["pagination"] == {"next_cursor": ""}
    for model in body["models"]:
        assert {"id", "name", "sd_name", "type", "base_model_type", "is_sdxl", "status"} <= set(
            model
        )
        assert model["type"] == {"name": "checkpoint", "display_name": "Checkpoint"}
        assert model["base_model_type"] == "Inpainting"
    alias = body["models"][2]
    assert alias["alias_of"] == LOCAL_MODEL_TELEA


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"filter.visibility": "public"}, ALL, id="public"),
        pytest.param({"filter.visibility": "private"}, [], id="private"),
        pytest.param({"filter.types": "checkpoint"}, ALL, id="types-checkpoint"),
        pytest.param({"filter.types": "lora,vae"}, [], id="types-lora-vae"),
        pytest.param({"filter.type": "checkpoint"}, ALL, id="sdk-spelling-type"),
        pytest.param({"filter.is_sdxl": "true"}, [], id="sdxl-true"),
        pytest.param({"filter.is_sdxl": "false"}, ALL, id="sdxl-false"),
        pytest.param({"filter.is_inpainting": "true"}, ALL, id="inpainting-true"),
        pytest.param({"filter.is_inpainting": "False"}, ALL, id="inpainting-false-no-filter"),
        pytest.param({"filter.query": "NS-inp"}, [LOCAL_MODEL_NS], id="query"),
        pytest.param({"filter.query": "realistic"}, [DEFAULT_REAL_MODEL], id="query-alias"),
        pytest.param({"filter.source": "civitai"}, [], id="source-other"),
    ],
)
def test_filters(client: httpx.Client, params: dict[str, str], expected: list[str]) -> None:
    assert _names(client, **params) == expected


def test_cursor_pagination_walks_every_model(client: httpx.Client) -> None:
    seen: list[str] = []
    cursor = ""
    for _ in range(10):
        body = client.get(
            "/v3/model", params={"pagination.limit": 2, "pagination.cursor": cursor}
        ).json()
        seen += [m["sd_name"] for m in body["models"]]
        cursor = body["pagination"]["next_cursor"]
        if not cursor:
            break
    assert seen == ALL


def test_sdk_style_offset_cursor(client: httpx.Client) -> None:
    assert _names(client, **{"pagination.cursor": "c_1", "pagination.limit": "1"}) == [
        LOCAL_MODEL_NS
    ]
    assert _names(client, **{"pagination.cursor": "c_c_2"}) == [DEFAULT_REAL_MODEL]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"pagination.limit": "0"}, "pagination.limit", id="limit-0"),
        pytest.param({"pagination.limit": "101"}, "pagination.limit", id="limit-101"),
        pytest.param({"pagination.limit": "ten"}, "pagination.limit", id="limit-text"),
        pytest.param({"pagination.cursor": "zzz"}, "pagination.cursor", id="cursor-garbage"),
        pytest.param({"filter.is_sdxl": "maybe"}, "filter.is_sdxl", id="bool-garbage"),
    ],
)
def test_bad_query_values(client: httpx.Client, params: dict[str, str], field: str) -> None:
    error = assert_error(client.get("/v3/model", params=params), 400, "INVALID_REQUEST_BODY")
    assert field in error["message"]
