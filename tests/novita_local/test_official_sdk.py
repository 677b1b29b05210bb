"""The official `novita-client` SDK works against the local server unmodified.

It sends explicit nulls, `extra.response_image_type = "jpeg"`, bool flags, and parses the result
with strict dataclasses that crash on a missing `extra` or an `{}` nsfw result: passing here means
the result shape honours those rules.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from novita_client import NovitaClient
from novita_client.exceptions import NovitaResponseError
from novita_client.proto import V3TaskResponseStatus
from PIL import Image

from novita_local.inpaint import LOCAL_MODEL_NS
from novita_local.server import LocalServer
from tests.novita_local.helpers import SIZE, StartServer, sample_image, sample_mask

REAL_MODEL = "realisticVisionV40_v40VAE-inpainting_81543.safetensors"


def _inpaint(client: NovitaClient, **overrides: object) -> Any:
    arguments: dict[str, object] = {
        "model_name": REAL_MODEL,
        "image": sample_image(),
        "mask": sample_mask(),
        "prompt": "a clean background",
        "image_num": 2,
        "sampler_name": "DPM++ 2M Karras",
        "steps": 20,
        "guidance_scale": 7.5,
        "seed": 11,
    }
    arguments.update(overrides)
    return client.inpainting(**arguments)


def test_sdk_inpainting_end_to_end(local_server: LocalServer) -> None:
    client = NovitaClient("any-key", base_url=local_server.base_url)
    result = _inpaint(client)
    assert result.task.status == V3TaskResponseStatus.TASK_STATUS_SUCCEED
    assert result.extra.seed == 11
    encoded = result.images_encoded
    assert len(encoded) == 2
    for data in encoded:
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        assert image.format == "JPEG"  # the SDK asks for jpeg
        assert image.size == (SIZE, SIZE)


def test_sdk_with_local_model_and_all_options(local_server: LocalServer) -> None:
    client = NovitaClient("any-key", base_url=local_server.base_url)
    result = _inpaint(
        client,
        model_name=LOCAL_MODEL_NS,
        image_num=1,
        mask_blur=2,
        negative_prompt="blurry",
        clip_skip=2,
        strength=0.8,
        inpainting_full_res=1,
        inpainting_full_res_padding=16,
        inpainting_mask_invert=0,
        initial_noise_multiplier=1.0,
        response_image_type="png",  # goes to `extra` (set_response_image_type does not apply)
    )
    assert Image.open(io.BytesIO(base64.b64decode(result.images_encoded[0]))).format == "PNG"


def test_sdk_with_required_key(start_server: StartServer) -> None:
    server = start_server(api_key="sk-sdk-key")
    assert len(_inpaint(NovitaClient("sk-sdk-key", base_url=server.base_url)).images_encoded) == 2
    with pytest.raises(NovitaResponseError, match="403"):
        _inpaint(NovitaClient("sk-other", base_url=server.base_url))


def test_sdk_sees_failed_tasks(start_server: StartServer) -> None:
    server = start_server(task_fail_rate=1.0)
    with pytest.raises(NovitaResponseError, match="TASK_STATUS_FAILED"):
        _inpaint(NovitaClient("any", base_url=server.base_url))


def test_sdk_lists_models(local_server: LocalServer) -> None:
    client = NovitaClient("any", base_url=local_server.base_url)
    models = client.models_v3(refresh=True)
    assert models.get_by_sd_name(REAL_MODEL) is not None
    page = client.query_model_v3(limit=1)
    assert len(page.models) == 1 and page.pagination.next_cursor == "c_1"
