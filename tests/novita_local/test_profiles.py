"""The two profiles where they differ, and the account knobs both share, over a real socket.

`novita` (the default) answers as Novita's docs show: eta/progress 0 and debug_info times "",
no Retry-After, model names checked against the catalogue, sides capped at 2048 px. `helpful`
keeps the richer answers. Balance, moderation, TASK_STATUS_UNKNOWN and the 401 key refusal are
knobs of both profiles.
"""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import pytest
from PIL import Image

from novita_local.catalog import DEFAULT_REAL_MODEL, SECOND_REAL_MODEL
from novita_local.config import ServerConfig
from novita_local.inpaint import LOCAL_MODEL_NS, LOCAL_MODEL_TELEA
from tests.novita_local.helpers import (
    FINISHED,
    StartServer,
    assert_error,
    b64,
    encode,
    http,
    poll,
    sample_image,
    sample_mask,
    submit,
    valid_body,
    wait_done,
)

KEY = "sk-profile-TEST-KEY-31"
TIMES = ("submit_time_ms", "execute_time_ms", "complete_time_ms")


def _image_pair(width: int, height: int) -> dict[str, str]:
    size = (width, height)
    return {
        "image_base64": b64(encode(sample_image(size))),
        "mask_image_base64": b64(encode(sample_mask(size))),
    }


def _distinct_image(number: int) -> str:
    """A 64x64 image that differs from every other `number` by one pixel."""
    image = sample_image()
    image.putpixel((number % 64, number // 64), (255, 0, 255))
    return b64(encode(image))


def _download(client: httpx.Client, result: dict[str, Any]) -> bytes:
    response = client.get(result["images"][0]["image_url"])
    assert response.status_code == 200
    return response.content


# ------------------------------------------------------------------ progress and timings


def test_novita_reports_no_progress_and_no_timings_at_any_status(
    start_server: StartServer,
) -> None:
    server = start_server(latency=1.0, workers=1)
    seen: list[dict[str, Any]] = []
    with http(server) as client:
        # Both queued for certain (held), then run one after the other, each for 1 s.
        client.post("/_local/hold").raise_for_status()
        first, second = submit(client), submit(client)
        seen += [poll(client, second), poll(client, first)]
        client.post("/_local/hold", params={"held": "false"}).raise_for_status()
        deadline = time.monotonic() + 15
        while not seen or seen[-1]["task"]["status"] not in FINISHED:
            assert time.monotonic() < deadline
            seen += [poll(client, second), poll(client, first)]
            time.sleep(0.05)
        seen.append(wait_done(client, second))
    statuses = {result["task"]["status"] for result in seen}
    assert {"TASK_STATUS_QUEUED", "TASK_STATUS_PROCESSING", "TASK_STATUS_SUCCEED"} <= statuses
    for result in seen:
        assert result["task"]["eta"] == 0 and result["task"]["progress_percent"] == 0
        assert all(result["extra"]["debug_info"][name] == "" for name in TIMES)
    assert seen[-1]["images"]  # done, with images, yet still "0 %" as in Novita's example


def test_novita_failed_task_has_a_reason_and_no_timings(start_server: StartServer) -> None:
    with http(start_server(task_fail_rate=1.0)) as client:
        result = wait_done(client, submit(client))
    assert result["task"]["status"] == "TASK_STATUS_FAILED" and result["task"]["reason"]
    assert result["task"]["progress_percent"] == 0
    assert all(result["extra"]["debug_info"][name] == "" for name in TIMES)


def test_helpful_reports_progress_and_timings(helpful_client: httpx.Client) -> None:
    result = wait_done(helpful_client, submit(helpful_client))
    assert result["task"]["progress_percent"] == 100
    submitted, executed, completed = (int(result["extra"]["debug_info"][n]) for n in TIMES)
    assert submitted <= executed <= completed


# ------------------------------------------------------------------ 429


@pytest.mark.parametrize("profile", ["novita", "helpful"])
def test_429_says_when_to_retry_only_under_helpful(start_server: StartServer, profile: str) -> None:
    server = start_server(ipm=1, profile=profile)
    with http(server) as client:
        submit(client)
        refused = client.post("/v3/async/inpainting", json=valid_body())
    error = assert_error(refused, 429, "RATE_LIMIT_EXCEEDED")
    rate_headers = {n for n in refused.headers if "ratelimit" in n.lower().replace("-", "")}
    assert not rate_headers  # no X-RateLimit-* / RateLimit-* in either profile
    if profile == "novita":
        assert "retry-after" not in refused.headers
        assert "retry after" not in error["message"]
    else:
        assert 55 <= int(refused.headers["Retry-After"]) <= 60


# ------------------------------------------------------------------ model names


def test_novita_refuses_an_unknown_checkpoint(client: httpx.Client) -> None:
    body = valid_body(model_name="sd_xl_base_1.0.safetensors")  # a real name, not inpainting
    error = assert_error(client.post("/v3/async/inpainting", json=body), 404, "MODEL_NOT_FOUND")
    assert "request.model_name 'sd_xl_base_1.0.safetensors'" in error["message"]
    assert "filter.is_inpainting=true" in error["message"]  # where to find a valid name


def test_novita_names_every_unknown_vae_lora_and_embedding(start_server: StartServer) -> None:
    server = start_server()
    body = valid_body(
        sd_vae="no-such.vae.pt",
        loras=[{"model_name": "add_detail_44319", "strength": 0.5}, {"model_name": "detail"}],
        embeddings=[{"model_name": "easynegative"}],
    )
    with http(server) as client:
        response = client.post("/v3/async/inpainting", json=body)
    message = assert_error(response, 404, "MODEL_NOT_FOUND")["message"]
    assert "request.sd_vae 'no-such.vae.pt'" in message
    assert "request.loras[1].model_name 'detail'" in message
    assert "request.embeddings[0].model_name 'easynegative'" in message
    assert "loras[0]" not in message  # the known LoRA is not blamed
    stats = server.stats()
    assert stats["submissions"]["rejected"] == {"MODEL_NOT_FOUND": 1}
    assert stats["tasks"]["total"] == 0


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"sd_vae": "vae-ft-mse-840000-ema-pruned.safetensors"}, id="vae"),
        pytest.param({"loras": [{"model_name": "more_details_59655"}]}, id="lora-api-name"),
        pytest.param({"loras": [{"model_name": "add_detail_44319.safetensors"}]}, id="lora-file"),
        pytest.param({"embeddings": [{"model_name": "easynegative_8955.safetensors"}]}, id="emb"),
        pytest.param({"embeddings": [{"model_name": "BadDream_53202"}]}, id="emb-api-name"),
    ],
)
def test_novita_accepts_catalogue_names(client: httpx.Client, fields: dict[str, Any]) -> None:
    body = valid_body(model_name=DEFAULT_REAL_MODEL, **fields)
    assert client.post("/v3/async/inpainting", json=body).status_code == 200


def test_helpful_runs_any_model_name(helpful_client: httpx.Client) -> None:
    body = valid_body(model_name="any-checkpoint.safetensors", loras=[{"model_name": "detail"}])
    result = wait_done(helpful_client, submit(helpful_client, body))
    assert result["task"]["status"] == "TASK_STATUS_SUCCEED"


def test_real_checkpoint_names_run_their_local_algorithm(client: httpx.Client) -> None:
    def output(model_name: str) -> bytes:
        return _download(
            client, wait_done(client, submit(client, valid_body(model_name=model_name)))
        )

    telea, ns = output(LOCAL_MODEL_TELEA), output(LOCAL_MODEL_NS)
    assert telea != ns
    assert output(DEFAULT_REAL_MODEL) == telea
    assert output(SECOND_REAL_MODEL) == ns


# ------------------------------------------------------------------ per-side limit


def test_novita_caps_each_side_at_2048_with_no_minimum(start_server: StartServer) -> None:
    server = start_server()
    with http(server) as client:
        wide = client.post("/v3/async/inpainting", json=valid_body(**_image_pair(2049, 8)))
        message = assert_error(wide, 400, "INVALID_IMAGE_SIZE")["message"]
        assert "2049x8" in message and "at most 2048 pixels" in message
        tall = client.post("/v3/async/inpainting", json=valid_body(**_image_pair(8, 2049)))
        assert_error(tall, 400, "INVALID_IMAGE_SIZE")
        submit(client, valid_body(**_image_pair(2048, 8)))  # at the cap
        tiny = submit(client, valid_body(**_image_pair(1, 1)))  # no minimum side
        assert wait_done(client, tiny)["task"]["status"] == "TASK_STATUS_SUCCEED"
    assert server.stats()["submissions"]["rejected"] == {"INVALID_IMAGE_SIZE": 2}


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        pytest.param({"profile": "helpful"}, False, id="helpful-default-none"),
        pytest.param({"max_side": 0}, False, id="novita-max-side-0"),
        pytest.param({"profile": "helpful", "max_side": 2048}, True, id="helpful-max-side"),
        pytest.param({"max_side": 4000}, False, id="novita-raised"),
    ],
)
def test_max_side_is_configurable(
    start_server: StartServer, fields: dict[str, Any], refused: bool
) -> None:
    with http(start_server(**fields)) as client:
        response = client.post("/v3/async/inpainting", json=valid_body(**_image_pair(2049, 8)))
    if refused:
        assert_error(response, 400, "INVALID_IMAGE_SIZE")
    else:
        assert response.status_code == 200, response.text


# ------------------------------------------------------------------ balance


@pytest.mark.parametrize("profile", ["novita", "helpful"])
def test_balance_runs_out_then_every_submit_is_refused(
    start_server: StartServer, profile: str
) -> None:
    server = start_server(balance=3, ipm=4, profile=profile)
    with http(server) as client:
        submit(client, valid_body(image_num=2))
        short = client.post("/v3/async/inpainting", json=valid_body(image_num=2))
        assert "1 left" in assert_error(short, 400, "BILLING_BALANCE_NOT_ENOUGH")["message"]
        submit(client, valid_body(image_num=1, seed=2))  # exactly what is left
        for _ in range(2):
            assert_error(
                client.post("/v3/async/inpainting", json=valid_body(seed=3)),
                400,
                "BILLING_BALANCE_NOT_ENOUGH",
            )
        invalid = client.post("/v3/async/inpainting", json=valid_body(steps=0))
        assert_error(invalid, 400, "INVALID_REQUEST_BODY")  # refused for what it is
        server.restart()  # the account's money does not come back with a restart
        assert_error(
            client.post("/v3/async/inpainting", json=valid_body()),
            400,
            "BILLING_BALANCE_NOT_ENOUGH",
        )
    stats = server.stats()
    assert stats["billing"] == {"balance": 0, "spent": 3}
    assert stats["submissions"]["accepted"] == 2
    assert stats["submissions"]["rejected"]["BILLING_BALANCE_NOT_ENOUGH"] == 4


def test_a_rate_limited_submit_costs_nothing(start_server: StartServer) -> None:
    server = start_server(balance=5, ipm=1)
    with http(server) as client:
        submit(client)
        assert_error(
            client.post("/v3/async/inpainting", json=valid_body(seed=9)), 429, "RATE_LIMIT_EXCEEDED"
        )
    assert server.stats()["billing"] == {"balance": 4, "spent": 1}


# ------------------------------------------------------------------ moderation


def test_moderation_refuses_the_submit_and_costs_nothing(start_server: StartServer) -> None:
    server = start_server(moderation_rate=1.0, balance=10)
    with http(server) as client:
        refused = client.post("/v3/async/inpainting", json=valid_body())
    assert "request.image_base64" in assert_error(refused, 400, "ILLEGAL_IMAGE_CONTENT")["message"]
    stats = server.stats()
    assert stats["tasks"]["total"] == 0 and stats["billing"]["spent"] == 0
    assert stats["faults"]["moderation"] == 1
    assert stats["submissions"]["rejected"] == {"ILLEGAL_IMAGE_CONTENT": 1}


def test_moderation_judges_each_image_the_same_way_every_time(start_server: StartServer) -> None:
    def refused_images(server_seed: int) -> list[int]:
        server = start_server(moderation_rate=0.5, seed=server_seed)
        refused = []
        with http(server) as client:
            for number in [*range(12), *range(12)]:  # each image twice
                body = valid_body(image_base64=_distinct_image(number), seed=number)
                status = client.post("/v3/async/inpainting", json=body).status_code
                assert status in (200, 400)
                refused += [number] if status == 400 else []
        return refused

    refused = refused_images(7)
    once = sorted(set(refused))
    assert refused == once + once  # the second round refused exactly the same images
    assert 0 < len(once) < 12
    assert refused_images(7) == refused  # the seed replays it


# ------------------------------------------------------------------ TASK_STATUS_UNKNOWN


def test_unknown_status_is_transient(start_server: StartServer) -> None:
    server = start_server(unknown_status_rate=0.5, latency=5, workers=1)
    with http(server) as client:
        task_id = submit(client)
        statuses = [poll(client, task_id)["task"]["status"] for _ in range(12)]
    assert "TASK_STATUS_UNKNOWN" in statuses
    assert set(statuses) - {"TASK_STATUS_UNKNOWN"}  # the next poll may tell the truth again
    assert server.stats()["faults"]["unknown_status"] == statuses.count("TASK_STATUS_UNKNOWN")


def test_a_finished_task_never_reports_unknown(start_server: StartServer) -> None:
    server = start_server(unknown_status_rate=1.0, latency=0.3)
    unknown = 0
    with http(server) as client:
        # Kept queued until its first poll has been answered: at least one unfinished poll.
        assert client.post("/_local/hold").json() == {"held": True}
        task_id = submit(client)
        result = poll(client, task_id)
        assert result["task"]["status"] == "TASK_STATUS_UNKNOWN" and result["images"] == []
        unknown += 1
        assert client.post("/_local/hold", params={"held": "false"}).json() == {"held": False}
        deadline = time.monotonic() + 15
        while (result := poll(client, task_id))["task"]["status"] != "TASK_STATUS_SUCCEED":
            assert result["task"]["status"] == "TASK_STATUS_UNKNOWN"  # every unfinished poll
            assert result["images"] == []
            unknown += 1
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert unknown >= 1
        assert all(poll(client, task_id)["task"]["status"] == "TASK_STATUS_SUCCEED" for _ in "ab")
        image = Image.open(io.BytesIO(_download(client, result)))
    assert image.size == (64, 64)


# ------------------------------------------------------------------ auth status


@pytest.mark.parametrize(
    ("auth_status", "missing", "wrong"),
    [pytest.param(403, 400, 403, id="403-error-table"), pytest.param(401, 401, 401, id="401")],
)
def test_refused_keys_get_the_configured_status(
    start_server: StartServer, auth_status: int, missing: int, wrong: int
) -> None:
    server = start_server(api_key=KEY, auth_status=auth_status)
    with http(server) as client:
        assert_error(client.get("/v3/model"), missing, "MISSING_API_KEY")
        wrong_key = {"Authorization": "Bearer sk-wrong"}
        response = client.post("/v3/async/inpainting", json=valid_body(), headers=wrong_key)
        assert_error(response, wrong, "INVALID_API_KEY")
        assert_error(client.get("/v3/async/task-result?task_id=x", headers=wrong_key), wrong,
                     "INVALID_API_KEY")  # fmt: skip
    assert server.stats()["auth_refused"] == {"MISSING_API_KEY": 1, "INVALID_API_KEY": 2}


# ------------------------------------------------------------------ configuration


def test_novita_is_the_default_profile() -> None:
    assert ServerConfig().profile == "novita"
    assert ServerConfig().side_limit == 2048
    assert ServerConfig(profile="helpful").side_limit is None
    assert ServerConfig(max_side=0).side_limit is None
    assert ServerConfig(profile="helpful", max_side=640).side_limit == 640


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"profile": "real"}, "profile must be one of novita, helpful", id="profile"),
        pytest.param({"auth_status": 402}, "auth_status must be 401 or 403", id="auth"),
        pytest.param({"max_side": -1}, "max_side must be", id="max-side"),
        pytest.param({"balance": -1}, "balance must be", id="balance"),
        pytest.param({"moderation_rate": 1.5}, "moderation_rate", id="moderation"),
        pytest.param({"unknown_status_rate": -0.1}, "unknown_status_rate", id="unknown"),
    ],
)
def test_impossible_settings_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServerConfig(**fields)
