"""Property tests: no input, however odd, yields a 500 or an error body outside the contract.

Two generators: schemathesis over the server's own `/openapi.json` (every route, parameter and
body schema, both conforming and not), and a hypothesis strategy that mixes valid and invalid
values per field around a real image, so requests also get past the image checks.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inpaint_flows.contract import ERROR_BODY_KEYS, SAMPLERS
from novita_local.server import LocalServer
from tests.novita_local.helpers import valid_body


def _assert_contract_answer(response: Any) -> None:
    status = response.status_code
    assert status < 500, response.text
    if status >= 400:
        body = response.json()
        assert set(body) == ERROR_BODY_KEYS, body
        assert body["code"] == status
        assert isinstance(body["reason"], str) and body["reason"].isupper()


@pytest.fixture(scope="module")
def schema_cases(local_server: LocalServer) -> st.SearchStrategy[Any]:
    """Cases for every operation in the live schema, conforming (positive) and not (negative).

    Built directly from schemathesis' strategies: its pytest plugin (`from_fixture`) does not
    run under pytest 9.
    """
    schema: Any = schemathesis.openapi.from_url(f"{local_server.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v3/async/inpainting", "/v3/async/task-result"}
    return st.one_of(
        [
            operation.as_strategy(generation_mode=mode)
            for operation in operations
            for mode in schemathesis.GenerationMode
        ]
    )


# schemathesis' own strategies call `random` inside hypothesis (schemathesis' code, not ours);
# newer hypothesis warns about it on some draws, and `filterwarnings = error` made that a
# flaky failure in CI. The check on our server is unaffected.
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
def test_schema_fuzzing_never_breaks_the_contract(
    local_server: LocalServer, schema_cases: st.SearchStrategy[Any]
) -> None:
    @given(case=schema_cases)
    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        _assert_contract_answer(case.call(base_url=local_server.base_url, timeout=10))

    check()


ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)

FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "prompt": st.text(max_size=1100) | ANY_JSON,
    "negative_prompt": st.none() | st.text(max_size=1100) | ANY_JSON,
    "image_num": st.integers(-2, 10) | ANY_JSON,
    "steps": st.integers(-5, 120) | st.floats(0, 120) | ANY_JSON,
    "guidance_scale": st.floats(-1, 40, allow_nan=False) | ANY_JSON,
    "sampler_name": st.sampled_from(SAMPLERS) | st.text(max_size=12),
    "seed": st.integers(-5, 2**64) | st.none() | ANY_JSON,
    "mask_blur": st.none() | st.integers(-3, 70),
    "loras": st.none()
    | st.lists(
        st.fixed_dictionaries(
            {
                # catalogue LoRAs get past the name check; other names meet MODEL_NOT_FOUND
                "model_name": st.sampled_from(["add_detail_44319", "more_details_59655"])
                | st.text(max_size=4),
                "strength": st.floats(-1, 2),
            }
        ),
        max_size=7,
    )
    | ANY_JSON,
    "clip_skip": st.none() | st.integers(-1, 14),
    "strength": st.none() | st.floats(-0.5, 1.5) | ANY_JSON,
    "inpainting_full_res": st.none() | st.booleans() | st.integers(-1, 2),
    "inpainting_full_res_padding": st.none() | st.integers(-5, 300),
    "inpainting_mask_invert": st.none() | st.booleans() | st.integers(-1, 2),
    "initial_noise_multiplier": st.none() | st.floats(-1, 2),
    "inpainting_fill": ANY_JSON,
}


@given(
    overrides=st.dictionaries(st.sampled_from(sorted(FIELD_VALUES)), st.none(), max_size=6).flatmap(
        lambda keys: st.fixed_dictionaries({k: FIELD_VALUES[k] for k in keys})
    ),
    image_type=st.sampled_from(["png", "webp", "jpeg", "gif", None]),
)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_random_field_values_get_200_or_a_contract_4xx(
    local_server: LocalServer, overrides: dict[str, Any], image_type: str | None
) -> None:
    body = valid_body(**overrides)
    body["extra"] = {"response_image_type": image_type}
    with httpx.Client(base_url=local_server.base_url, timeout=10) as client:
        response = client.post("/v3/async/inpainting", json=body)
        _assert_contract_answer(response)
        if response.status_code == 200:
            task_id = response.json()["task_id"]
            _assert_contract_answer(
                client.get("/v3/async/task-result", params={"task_id": task_id})
            )
        elif response.status_code == 404:  # a LoRA name the catalogue does not hold
            assert response.json()["reason"] == "MODEL_NOT_FOUND"
        else:
            assert response.status_code == 400
