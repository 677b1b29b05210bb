"""Pure pieces without a server: URL signing, expiry sweeping, error paths, contract constants."""

from __future__ import annotations

import pytest

from inpaint_flows.contract import (
    ERROR_STATUS,
    FIELD_DESCRIPTIONS,
    MAX_IMAGE_BYTES,
    MAX_PIXELS,
    SAMPLERS,
    error_body,
)
from novita_local.images import decoded_size
from novita_local.inpaint import InpaintSettings
from novita_local.signing import Refusal, UrlSigner
from novita_local.store import Task, TaskStore
from novita_local.validation import _field_path


def test_contract_constants_the_pipeline_imports() -> None:
    assert len(SAMPLERS) == 20 and "Euler a" in SAMPLERS
    assert MAX_PIXELS == 16 * 1024 * 1024 and MAX_IMAGE_BYTES == 30 * 1024 * 1024
    assert error_body("TASK_NOT_FOUND", "gone") == {
        "code": 404,
        "reason": "TASK_NOT_FOUND",
        "message": "gone",
        "metadata": {},
    }
    assert ERROR_STATUS["RATE_LIMIT_EXCEEDED"] == 429


def test_every_field_has_a_description_for_messages() -> None:
    for path in ("request.steps", "request.loras[].strength", "extra.webhook.test_mode.enabled"):
        assert FIELD_DESCRIPTIONS[path] != "a valid value", path


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        (("request", "steps"), ("request.steps", "request.steps")),
        (
            ("request", "loras", 2, "strength"),
            ("request.loras[2].strength", "request.loras[].strength"),
        ),
        (
            ("request", "inpainting_full_res", "function-before[...]"),
            ("request.inpainting_full_res", "request.inpainting_full_res"),
        ),
        ((), ("request body", "")),
    ],
)
def test_error_locations_become_field_paths(
    loc: tuple[str | int, ...], expected: tuple[str, str]
) -> None:
    assert _field_path(loc) == expected


@pytest.mark.parametrize(("text", "size"), [("", 0), ("AAAA", 3), ("AAA=", 2), ("AA==", 1)])
def test_decoded_size_without_decoding(text: str, size: int) -> None:
    assert decoded_size(text) == size


def test_signer_accepts_until_expiry_then_refuses() -> None:
    signer = UrlSigner(b"k" * 32)
    signature = signer.signature("t", "0.png", 1000)
    assert signer.check("t", "0.png", "1000", signature, now=999.5) is None
    assert signer.check("t", "0.png", "1000", signature, now=1000.0) is None
    assert signer.check("t", "0.png", "1000", signature, now=1000.5) is Refusal.EXPIRED
    assert signer.check("t", "1.png", "1000", signature, now=0) is Refusal.SIGNATURE
    assert signer.check("t", "0.png", "1000", signature.upper(), now=0) is None
    assert signer.check("t", "0.png", None, signature, now=0) is Refusal.MISSING
    assert "<Code>AccessDenied</Code>" in Refusal.EXPIRED.xml("/t/0.png")


def test_sweep_frees_expired_result_bytes() -> None:
    store = TaskStore()
    task = Task("t", InpaintSettings(), "png", "http://x", 0.0, 0.0, False, False)
    task.files, task.expires_at = [b"data"], 100
    store.add(task)
    store.sweep_expired(now=100.0)
    assert task.files == [b"data"]
    store.sweep_expired(now=200.0)
    assert task.files is None
