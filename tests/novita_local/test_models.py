"""`GET /v3/model`: the catalogue in Novita's shape, with filters and cursor pagination."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from novita_local.catalog import DEFAULT_REAL_MODEL, SECOND_REAL_MODEL
from novita_local.inpaint import LOCAL_MODEL_NS, LOCAL_MODEL_TELEA
from tests.novita_local.helpers import assert_error

LOCAL = [LOCAL_MODEL_TELEA, LOCAL_MODEL_NS]
CHECKPOINTS = [*LOCAL, DEFAULT_REAL_MODEL, SECOND_REAL_MODEL]
LORAS = ["add_detail_44319.safetensors", "more_details_59655.safetensors"]
EMBEDDINGS = ["easynegative_8955.safetensors", "BadDream_53202", "badhandv4_16755"]
VAES = ["vae-ft-mse-840000-ema-pruned.safetensors"]
ALL = CHECKPOINTS + LORAS + EMBEDDINGS + VAES


def _names(client: httpx.Client, **params: Any) -> list[str]:
    response = client.get("/v3/model", params=params)
    assert response.status_code == 200, response.text
    return [model["sd_name"] for model in response.json()["models"]]


def test_lists_the_catalogue_and_which_local_algorithm_each_checkpoint_runs(
    client: httpx.Client,
) -> None:
    body = client.get("/v3/model").json()
    assert [m["sd_name"] for m in body["models"]] == ALL
    assert body["pagination"] == {"next_cursor": ""}
    models = {m["sd_name"]: m for m in body["models"]}
    for model in body["models"]:
        assert {"id", "name", "sd_name", "type", "base_model_type", "is_sdxl", "status"} <= set(
            model
        )
    for name in CHECKPOINTS:
        assert models[name]["type"] == {"name": "checkpoint", "display_name": "Checkpoint"}
        assert models[name]["base_model_type"] == "Inpainting"
    assert models[DEFAULT_REAL_MODEL]["id"] == 114600  # as in Novita's own example
    assert models[DEFAULT_REAL_MODEL]["alias_of"] == LOCAL_MODEL_TELEA
    assert models[SECOND_REAL_MODEL]["alias_of"] == LOCAL_MODEL_NS
    assert models[LOCAL_MODEL_TELEA]["alias_of"] is None
    assert models[LORAS[0]]["type"]["name"] == "lora"
    assert models[LORAS[0]]["sd_name_in_api"] == "add_detail_44319"  # what requests send
    assert models[LORAS[0]]["base_model_type"] == "Standard"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"filter.visibility": "public"}, ALL, id="public"),
        pytest.param({"filter.visibility": "private"}, [], id="private"),
        pytest.param({"filter.types": "checkpoint"}, CHECKPOINTS, id="types-checkpoint"),
        pytest.param({"filter.types": "lora,vae"}, LORAS + VAES, id="types-lora-vae"),
        pytest.param({"filter.types": "textualinversion"}, EMBEDDINGS, id="types-embedding"),
        pytest.param({"filter.types": "controlnet"}, [], id="types-controlnet"),
        pytest.param({"filter.type": "checkpoint"}, CHECKPOINTS, id="sdk-spelling-type"),
        pytest.param({"filter.is_sdxl": "true"}, [], id="sdxl-true"),
        pytest.param({"filter.is_sdxl": "false"}, ALL, id="sdxl-false"),
        pytest.param({"filter.is_inpainting": "true"}, CHECKPOINTS, id="inpainting-true"),
        pytest.param({"filter.is_inpainting": "False"}, ALL, id="inpainting-false-no-filter"),
        pytest.param({"filter.query": "NS-inp"}, [LOCAL_MODEL_NS], id="query"),
        pytest.param({"filter.query": "realistic"}, [DEFAULT_REAL_MODEL], id="query-real-name"),
        pytest.param({"filter.source": "local"}, LOCAL, id="source-local"),
        pytest.param({"filter.source": "civitai"}, ALL[2:], id="source-civitai"),
        pytest.param({"filter.source": "training"}, [], id="source-other"),
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
    assert _names(client, **{"pagination.cursor": "c_c_2"}) == ALL[2:]


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
