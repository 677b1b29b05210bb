"""Every contract field's accepted and refused values, over a real socket.

A refused value must give 400 INVALID_REQUEST_BODY whose message names the field and says what is
allowed, so a user can fix the request without reading the server's code.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from inpaint_flows.contract import SAMPLERS
from tests.novita_local.helpers import assert_error, valid_body

MISSING = object()  # remove the field instead of setting it

# Names from the catalogue: the default (`novita`) profile refuses names it does not list.
LORA = {"model_name": "add_detail_44319", "strength": 0.5}
EMBEDDING = {"model_name": "easynegative_8955"}
LORA_NAME = LORA["model_name"]

ACCEPTED: list[Any] = [
    pytest.param("model_name", "local-ns-inpainting", id="model-local-ns"),
    pytest.param(
        "model_name",
        "realisticVisionV40_v40VAE-inpainting_81543.safetensors",
        id="model-real-novita-name",
    ),
    pytest.param("model_name", "meinahentai_v4-inpainting_86046.safetensors", id="model-second"),
    pytest.param("prompt", "a", id="prompt-1-char"),
    pytest.param("prompt", "p" * 1024, id="prompt-1024-chars"),
    pytest.param("prompt", "un chat très calme 猫", id="prompt-unicode"),
    pytest.param("negative_prompt", None, id="negative-null"),
    pytest.param("negative_prompt", MISSING, id="negative-absent"),
    pytest.param("negative_prompt", "", id="negative-empty-is-unset"),
    pytest.param("negative_prompt", "n" * 1024, id="negative-1024-chars"),
    pytest.param("image_num", 1, id="image_num-1"),
    pytest.param("image_num", 8, id="image_num-8"),
    pytest.param("image_num", 2.0, id="image_num-integral-float"),
    pytest.param("steps", 1, id="steps-1"),
    pytest.param("steps", 100, id="steps-100"),
    pytest.param("guidance_scale", 1, id="guidance-1-int"),
    pytest.param("guidance_scale", 30.0, id="guidance-30"),
    pytest.param("guidance_scale", 7.5, id="guidance-7.5"),
    *[pytest.param("sampler_name", name, id=f"sampler-{name}") for name in SAMPLERS],
    pytest.param("seed", -1, id="seed-minus-1"),
    pytest.param("seed", 0, id="seed-0"),
    pytest.param("seed", 2**32, id="seed-2^32"),
    pytest.param("seed", 2**63 - 1, id="seed-int64-max"),
    pytest.param("seed", None, id="seed-null"),
    pytest.param("seed", MISSING, id="seed-absent"),
    pytest.param("mask_blur", 0, id="mask_blur-0"),
    pytest.param("mask_blur", 64, id="mask_blur-64"),
    pytest.param("mask_blur", None, id="mask_blur-null"),
    pytest.param("sd_vae", None, id="sd_vae-null"),
    pytest.param("sd_vae", "", id="sd_vae-empty"),
    pytest.param("sd_vae", "vae-ft-mse-840000-ema-pruned.safetensors", id="sd_vae-name"),
    pytest.param("loras", None, id="loras-null"),
    pytest.param("loras", [], id="loras-empty"),
    pytest.param("loras", [LORA] * 5, id="loras-5"),
    pytest.param("loras", [{"model_name": LORA_NAME, "strength": None}], id="loras-null-strength"),
    pytest.param("loras", [{"model_name": LORA_NAME, "strength": 0}], id="loras-strength-0"),
    pytest.param("loras", [{"model_name": LORA_NAME, "strength": 1}], id="loras-strength-1"),
    pytest.param("embeddings", None, id="embeddings-null"),
    pytest.param("embeddings", [EMBEDDING] * 5, id="embeddings-5"),
    pytest.param("clip_skip", None, id="clip_skip-null"),
    pytest.param("clip_skip", 0, id="clip_skip-0-is-unset"),
    pytest.param("clip_skip", 1, id="clip_skip-1"),
    pytest.param("clip_skip", 12, id="clip_skip-12"),
    pytest.param("strength", None, id="strength-null"),
    pytest.param("strength", 0, id="strength-0"),
    pytest.param("strength", 1.0, id="strength-1"),
    pytest.param("strength", 0.35, id="strength-0.35"),
    pytest.param("inpainting_full_res", 0, id="full_res-0"),
    pytest.param("inpainting_full_res", 1, id="full_res-1"),
    pytest.param("inpainting_full_res", True, id="full_res-true"),
    pytest.param("inpainting_full_res", False, id="full_res-false"),
    pytest.param("inpainting_full_res", None, id="full_res-null"),
    pytest.param("inpainting_full_res_padding", 0, id="padding-0"),
    pytest.param("inpainting_full_res_padding", 256, id="padding-256"),
    pytest.param("inpainting_full_res_padding", None, id="padding-null"),
    pytest.param("inpainting_mask_invert", 0, id="invert-0"),
    pytest.param("inpainting_mask_invert", 1, id="invert-1"),
    pytest.param("inpainting_mask_invert", True, id="invert-true"),
    pytest.param("inpainting_mask_invert", None, id="invert-null"),
    pytest.param("initial_noise_multiplier", 0, id="noise-0"),
    pytest.param("initial_noise_multiplier", 1.5, id="noise-1.5"),
    pytest.param("initial_noise_multiplier", None, id="noise-null"),
    *[pytest.param("inpainting_fill", v, id=f"legacy-fill-{v}") for v in (0, 1, 2, 3)],
    pytest.param("inpainting_fill", None, id="legacy-fill-null"),
    pytest.param("inpainting_fill", 7, id="legacy-fill-out-of-range-ignored"),
    pytest.param("inpainting_fill", "original", id="legacy-fill-string-ignored"),
    pytest.param("some_future_field", {"x": 1}, id="unknown-field-ignored"),
]


@pytest.mark.parametrize(("field", "value"), ACCEPTED)
def test_accepted_request_values(client: httpx.Client, field: str, value: Any) -> None:
    body = valid_body()
    if value is MISSING:
        body["request"].pop(field, None)
    else:
        body["request"][field] = value
    response = client.post("/v3/async/inpainting", json=body)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"task_id"}


REFUSED: list[Any] = [
    pytest.param("model_name", "", "must be a non-empty checkpoint name", id="model-empty"),
    pytest.param("model_name", 5, "must be a non-empty checkpoint name", id="model-int"),
    pytest.param("model_name", None, "got null", id="model-null"),
    pytest.param("model_name", MISSING, "is required", id="model-missing"),
    pytest.param("image_base64", MISSING, "is required", id="image-missing"),
    pytest.param("image_base64", "", "non-empty base64", id="image-empty"),
    pytest.param("image_base64", 12, "non-empty base64", id="image-int"),
    pytest.param("mask_image_base64", MISSING, "is required", id="mask-missing"),
    pytest.param("prompt", "", "1 to 1024 characters", id="prompt-empty"),
    pytest.param("prompt", "p" * 1025, "got a string of 1025 characters", id="prompt-1025"),
    pytest.param("prompt", None, "got null", id="prompt-null"),
    pytest.param("prompt", MISSING, "is required", id="prompt-missing"),
    pytest.param("prompt", ["a"], "1 to 1024 characters", id="prompt-list"),
    pytest.param("negative_prompt", "n" * 1025, "1 to 1024", id="negative-1025"),
    pytest.param("negative_prompt", 3, "1 to 1024", id="negative-int"),
    pytest.param("image_num", 0, "an integer from 1 to 8; got 0", id="image_num-0"),
    pytest.param("image_num", 9, "an integer from 1 to 8; got 9", id="image_num-9"),
    pytest.param("image_num", 2.5, "got 2.5", id="image_num-fraction"),
    pytest.param("image_num", "2", 'got "2"', id="image_num-string"),
    pytest.param("image_num", True, "got true", id="image_num-bool"),
    pytest.param("image_num", MISSING, "is required", id="image_num-missing"),
    pytest.param("steps", 0, "an integer from 1 to 100; got 0", id="steps-0"),
    pytest.param("steps", 500, "an integer from 1 to 100; got 500", id="steps-500"),
    pytest.param("steps", "20", "an integer from 1 to 100", id="steps-string"),
    pytest.param("steps", None, "got null", id="steps-null"),
    pytest.param("guidance_scale", 0.5, "a number from 1 to 30; got 0.5", id="guidance-0.5"),
    pytest.param("guidance_scale", 31, "a number from 1 to 30; got 31", id="guidance-31"),
    pytest.param("guidance_scale", "7", "a number from 1 to 30", id="guidance-string"),
    pytest.param("guidance_scale", True, "a number from 1 to 30", id="guidance-bool"),
    pytest.param("sampler_name", "euler a", "one of: Euler a, Euler", id="sampler-lowercase"),
    pytest.param("sampler_name", "k_euler", 'got "k_euler"', id="sampler-unknown"),
    pytest.param("sampler_name", "", "one of:", id="sampler-empty"),
    pytest.param("sampler_name", MISSING, "is required", id="sampler-missing"),
    pytest.param("seed", -2, "an integer from -1", id="seed-minus-2"),
    pytest.param("seed", 1.5, "an integer from -1", id="seed-fraction"),
    pytest.param("seed", "42", "an integer from -1", id="seed-string"),
    pytest.param("seed", 2**63, "an integer from -1", id="seed-beyond-int64"),
    pytest.param("mask_blur", -1, "an integer from 0 to 64", id="mask_blur--1"),
    pytest.param("mask_blur", 65, "an integer from 0 to 64", id="mask_blur-65"),
    pytest.param("sd_vae", 5, "a string", id="sd_vae-int"),
    pytest.param("loras", [LORA] * 6, "at most 5", id="loras-6"),
    pytest.param("loras", "add_detail", "at most 5", id="loras-string"),
    pytest.param("loras", [{"strength": 0.5}], "is required", id="loras-no-name"),
    pytest.param(
        "loras", [{"model_name": "x", "strength": 1.5}], "a number from 0 to 1", id="loras-strength"
    ),
    pytest.param("embeddings", [EMBEDDING] * 6, "at most 5", id="embeddings-6"),
    pytest.param("embeddings", [{}], "is required", id="embeddings-no-name"),
    pytest.param("clip_skip", 13, "an integer from 1 to 12", id="clip_skip-13"),
    pytest.param("clip_skip", -1, "an integer from 1 to 12", id="clip_skip--1"),
    pytest.param("strength", -0.1, "a number from 0 to 1", id="strength-negative"),
    pytest.param("strength", 1.1, "a number from 0 to 1", id="strength-1.1"),
    pytest.param("strength", "1", "a number from 0 to 1", id="strength-string"),
    pytest.param("inpainting_full_res", 2, "0 (whole picture) or 1", id="full_res-2"),
    pytest.param("inpainting_full_res", "1", "0 (whole picture) or 1", id="full_res-string"),
    pytest.param("inpainting_full_res_padding", -1, "from 0 to 256", id="padding--1"),
    pytest.param("inpainting_full_res_padding", 257, "from 0 to 256", id="padding-257"),
    pytest.param("inpainting_mask_invert", 2, "0 (inpaint masked) or 1", id="invert-2"),
    pytest.param("initial_noise_multiplier", -0.1, "from 0 to 1.5", id="noise-negative"),
    pytest.param("initial_noise_multiplier", 1.6, "from 0 to 1.5", id="noise-1.6"),
]


def _path(field: str, value: Any) -> str:
    if field in ("loras", "embeddings") and isinstance(value, list) and len(value) <= 5:
        return f"request.{field}[0]"
    return f"request.{field}"


@pytest.mark.parametrize(("field", "value", "allowed"), REFUSED)
def test_refused_request_values(client: httpx.Client, field: str, value: Any, allowed: str) -> None:
    body = valid_body()
    if value is MISSING:
        body["request"].pop(field, None)
    else:
        body["request"][field] = value
    error = assert_error(
        client.post("/v3/async/inpainting", json=body), 400, "INVALID_REQUEST_BODY"
    )
    assert _path(field, value) in error["message"]
    assert allowed in error["message"]


EXTRA_ACCEPTED: list[Any] = [
    pytest.param(None, id="extra-null"),
    pytest.param({}, id="extra-empty"),
    *[pytest.param({"response_image_type": t}, id=f"type-{t}") for t in ("png", "webp", "jpeg")],
    pytest.param({"response_image_type": None}, id="type-null"),
    pytest.param({"enable_nsfw_detection": True, "nsfw_detection_level": 2}, id="nsfw"),
    pytest.param({"enterprise_plan": {}}, id="enterprise-empty-as-sdk-sends"),
    pytest.param({"enterprise_plan": {"enabled": True}}, id="enterprise-enabled"),
    pytest.param({"custom_storage": {}}, id="custom-storage-empty-as-sdk-sends"),
    pytest.param(
        {
            "custom_storage": {
                "aws_s3": {
                    "region": "us-east-1",
                    "bucket": "b",
                    "path": "/out",
                    "save_to_path_directly": True,
                }
            }
        },
        id="custom-storage-s3",
    ),
    pytest.param(
        {
            "webhook": {
                "url": "http://127.0.0.1:9/hook",
                "test_mode": {"enabled": False, "return_task_status": "TASK_STATUS_SUCCEED"},
            }
        },
        id="webhook",
    ),
]


@pytest.mark.parametrize("extra", EXTRA_ACCEPTED)
def test_accepted_extra_values(client: httpx.Client, extra: Any) -> None:
    body = valid_body()
    body["extra"] = extra
    response = client.post("/v3/async/inpainting", json=body)
    assert response.status_code == 200, response.text


EXTRA_REFUSED: list[Any] = [
    pytest.param({"response_image_type": "jpg"}, "extra.response_image_type", id="type-jpg"),
    pytest.param({"response_image_type": "PNG"}, "one of: png, webp, jpeg", id="type-upper"),
    pytest.param({"response_image_type": 1}, "extra.response_image_type", id="type-int"),
    pytest.param({"nsfw_detection_level": 3}, "0, 1 or 2", id="nsfw-level-3"),
    pytest.param({"enable_nsfw_detection": "yes"}, "true or false", id="nsfw-string"),
    pytest.param({"webhook": {"url": "ftp://x"}}, "http:// or https://", id="webhook-ftp"),
    pytest.param({"webhook": {}}, "extra.webhook.url is required", id="webhook-no-url"),
    pytest.param(
        {"webhook": {"url": "http://x", "test_mode": {"return_task_status": "DONE"}}},
        "extra.webhook.test_mode.return_task_status",
        id="webhook-bad-status",
    ),
    pytest.param({"enterprise_plan": {"enabled": "y"}}, "true or false", id="enterprise-string"),
    pytest.param("png", "extra must be an object", id="extra-string"),
]


@pytest.mark.parametrize(("extra", "expected"), EXTRA_REFUSED)
def test_refused_extra_values(client: httpx.Client, extra: Any, expected: str) -> None:
    body = valid_body()
    body["extra"] = extra
    error = assert_error(
        client.post("/v3/async/inpainting", json=body), 400, "INVALID_REQUEST_BODY"
    )
    assert expected in error["message"]


BAD_BODIES: list[Any] = [
    pytest.param(b"", "request body is empty", id="empty"),
    pytest.param(b"{", "not valid JSON", id="truncated-json"),
    pytest.param(b"[]", "must be a JSON object", id="array"),
    pytest.param(b'"text"', "must be a JSON object", id="string"),
    pytest.param(b"{}", "request is required", id="no-request"),
    pytest.param(b'{"request": null}', "request must be an object", id="request-null"),
    pytest.param(b'{"request": []}', "request must be an object", id="request-array"),
    pytest.param(b'{"request": {"steps": NaN}}', "not valid JSON", id="nan"),
    pytest.param(b'{"request": {"steps": Infinity}}', "not valid JSON", id="infinity"),
    pytest.param(b"\xff\xfe{}", "not valid JSON", id="not-utf8"),
    pytest.param(b"[" * 100_000, "not valid JSON", id="deeply-nested"),
    pytest.param(b'{"request": {"seed": 1' + b"0" * 5000 + b"}}", "not valid JSON", id="huge-int"),
]


@pytest.mark.parametrize(("raw", "expected"), BAD_BODIES)
def test_malformed_bodies(client: httpx.Client, raw: bytes, expected: str) -> None:
    response = client.post(
        "/v3/async/inpainting", content=raw, headers={"content-type": "application/json"}
    )
    error = assert_error(response, 400, "INVALID_REQUEST_BODY")
    assert expected in error["message"]


def test_several_bad_fields_are_reported_together(client: httpx.Client) -> None:
    body = valid_body(steps=0, guidance_scale=99)
    del body["request"]["prompt"]
    message = assert_error(
        client.post("/v3/async/inpainting", json=body), 400, "INVALID_REQUEST_BODY"
    )["message"]
    for path in ("request.steps", "request.guidance_scale", "request.prompt"):
        assert path in message


def test_sdk_style_body_with_explicit_nulls_is_accepted(client: httpx.Client) -> None:
    """The official SDK sends every optional field, unset ones as null, plus its extra defaults."""
    body = valid_body(
        negative_prompt=None,
        mask_blur=None,
        sd_vae=None,
        loras=None,
        embeddings=None,
        clip_skip=None,
        strength=None,
        inpainting_full_res=0,
        inpainting_full_res_padding=8,
        inpainting_mask_invert=0,
        initial_noise_multiplier=0.5,
    )
    body["extra"] = {
        "response_image_type": "jpeg",
        "enable_nsfw_detection": False,
        "nsfw_detection_level": 0,
        "custom_storage": {},
        "enterprise_plan": {},
    }
    assert client.post("/v3/async/inpainting", json=body).status_code == 200
