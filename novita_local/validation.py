"""Request body -> validated model, or a 400 whose message names each bad field and its range.

Messages read "request.steps must be an integer from 1 to 100; got 500", built from the field
descriptions in `contract.py`; several bad fields are reported together, separated by "; ".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from inpaint_flows.contract import FIELD_DESCRIPTIONS, InpaintingBody
from novita_local.errors import ApiError

_MAX_REPORTED = 5


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    """Strict JSON (no NaN/Infinity) or 400 INVALID_REQUEST_BODY saying where it broke."""
    if not raw.strip():
        raise ApiError(
            "INVALID_REQUEST_BODY",
            'request body is empty; send a JSON object {"request": {...}, "extra": {...}}',
        )
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(
            "INVALID_REQUEST_BODY",
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from None
    except (ValueError, RecursionError) as exc:  # bad UTF-8, NaN, huge ints, deep nesting
        detail = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
        raise ApiError(
            "INVALID_REQUEST_BODY", f"request body is not valid JSON: {detail[:200]}"
        ) from None


def validate_body(data: Any) -> InpaintingBody:
    """The parsed body as `InpaintingBody`, or 400 INVALID_REQUEST_BODY."""
    if not isinstance(data, dict):
        raise ApiError(
            "INVALID_REQUEST_BODY",
            f"request body must be a JSON object with a `request` object; got {_render(data)}",
        )
    try:
        return InpaintingBody.model_validate(data)
    except ValidationError as exc:
        raise ApiError("INVALID_REQUEST_BODY", describe(exc.errors())) from None


def describe(errors: Sequence[Any]) -> str:
    """One sentence per offending field, most specific description known for it."""
    seen: dict[str, str] = {}
    for error in errors:
        path, key = _field_path(error["loc"])
        if path in seen:
            continue
        allowed = FIELD_DESCRIPTIONS.get(key, "a valid value")
        if error["type"] == "missing":
            seen[path] = f"{path} is required: {allowed}"
        else:
            seen[path] = f"{path} must be {allowed}; got {_render(error.get('input'))}"
    messages = list(seen.values())
    if len(messages) > _MAX_REPORTED:
        rest = len(messages) - _MAX_REPORTED
        messages = [*messages[:_MAX_REPORTED], f"and {rest} more invalid field(s)"]
    return "; ".join(messages) or "request body is invalid"


def _field_path(loc: Sequence[str | int]) -> tuple[str, str]:
    """(display path, description key) for a pydantic error location.

    ("request", "loras", 0, "strength") -> ("request.loras[0].strength",
    "request.loras[].strength"); trailing parts that are not fields (union tags) are dropped.
    """
    display = key = ""
    for part in loc:
        if isinstance(part, int):
            candidate_display, candidate_key = f"{display}[{part}]", f"{key}[]"
        else:
            candidate_display = f"{display}.{part}" if display else part
            candidate_key = f"{key}.{part}" if key else part
        if not (candidate_key in FIELD_DESCRIPTIONS or isinstance(part, int)):
            break
        display, key = candidate_display, candidate_key
    return display or "request body", key


def _render(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str) and len(value) > 60:
        return f"a string of {len(value)} characters"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
