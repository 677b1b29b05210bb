"""The client and the local server agree on the request contract, field by field.

Whatever `InpaintParams` accepts, the server's body validation accepts too (so no paid-for-
nothing round trip ends in a 400 the client could have foreseen); whatever the server refuses
for a field, the client refuses before sending (the row is `invalid`, not `failed`). Both sides
take their ranges from `inpaint_flows.contract`; this property test is what keeps it so.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from inpaint_flows.contract import MAX_SEED, SAMPLERS
from inpaint_flows.models import InpaintParams
from novita_local.errors import ApiError
from novita_local.validation import validate_body

# Values around and beyond every documented edge, plus wrong types.
_ints = st.one_of(
    st.integers(min_value=-3, max_value=300),
    st.sampled_from([MAX_SEED, MAX_SEED + 1, 2**64, -(2**63)]),
)
_floats = st.one_of(
    st.floats(min_value=-1, max_value=40, allow_nan=False), st.sampled_from([0.0, 1.0, 1.5, 30.0])
)
_texts = st.one_of(st.just(""), st.text(min_size=1, max_size=5), st.just("x" * 1025))
_names = st.one_of(st.just(""), st.just("a-model"), st.just(" "))
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "model_name": _names,
    "prompt": _texts,
    "negative_prompt": st.one_of(st.none(), _texts),
    "image_num": _ints,
    "steps": _ints,
    "guidance_scale": _floats,
    "sampler_name": st.one_of(st.sampled_from(SAMPLERS), st.just("Euler b")),
    "seed": _ints,
    "mask_blur": st.one_of(st.none(), _ints),
    "sd_vae": st.one_of(st.none(), _names),
    "loras": st.one_of(
        st.none(),
        st.lists(st.fixed_dictionaries({"model_name": _names, "strength": _floats}), max_size=6),
    ),
    "embeddings": st.one_of(
        st.none(), st.lists(st.fixed_dictionaries({"model_name": _names}), max_size=6)
    ),
    "clip_skip": st.one_of(st.none(), _ints),
    "strength": st.one_of(st.none(), _floats),
    "inpainting_full_res": st.sampled_from([0, 1, 2, -1]),
    "inpainting_full_res_padding": _ints,
    "inpainting_mask_invert": st.sampled_from([0, 1, 2]),
    "initial_noise_multiplier": _floats,
}


def _server_accepts(request_fields: dict[str, Any]) -> bool:
    body = {
        "request": {**request_fields, "image_base64": "aGk=", "mask_image_base64": "aGk="},
        "extra": {"response_image_type": "png"},
    }
    try:
        validate_body(json.loads(json.dumps(body)))  # as the wire carries it
    except ApiError:
        return False
    return True


def _client_accepts(fields: dict[str, Any]) -> bool:
    try:
        InpaintParams.model_validate(fields)
    except ValidationError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(st.fixed_dictionaries({}, optional=FIELDS))
def test_client_and_server_agree_on_every_field(fields: dict[str, Any]) -> None:
    if _client_accepts(fields):
        sent = InpaintParams.model_validate(fields).request_fields()
        assert _server_accepts(sent), sent  # what the client sends, the server takes
    if not _server_accepts({**InpaintParams().request_fields(), **fields}):
        # The server refuses these values: the client refuses them before sending. (The client
        # may be stricter: it never sends the proto3 "unset" values "" and 0 the server takes.)
        assert not _client_accepts(fields), fields


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"seed": 2**64}, id="seed beyond int64"),
        pytest.param({"loras": [{"model_name": "", "strength": 0.5}]}, id="LoRA without a name"),
        pytest.param({"steps": 101}, id="steps over 100"),
        pytest.param({"embeddings": [{"model_name": "e"}] * 6}, id="six embeddings"),
    ],
)
def test_what_the_server_refuses_the_client_refuses_before_sending(fields: dict[str, Any]) -> None:
    assert not _server_accepts({**InpaintParams().request_fields(), **fields})
    with pytest.raises(ValidationError):
        InpaintParams.model_validate(fields)
