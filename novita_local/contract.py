"""The Novita inpainting contract as code: enums, limits and error reasons.

Single source for these facts on both sides: the local server validates with them and the
pipeline's client-side checks (mask validation, parameter models) import them.
See ../shared/novita-contract.md for the prose.
"""

from __future__ import annotations

SAMPLERS: tuple[str, ...] = (
    "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2S a", "DPM++ 2M", "DPM++ SDE",
    "DPM fast", "DPM adaptive", "LMS Karras", "DPM2 Karras", "DPM2 a Karras",
    "DPM++ 2S a Karras", "DPM++ 2M Karras", "DPM++ SDE Karras", "DDIM", "PLMS", "UniPC",
)
RESPONSE_IMAGE_TYPES: tuple[str, ...] = ("png", "webp", "jpeg")
MAX_PIXELS = 16 * 1024 * 1024  # "16 megapixels"; Novita does not say 10^6 or 2^20: we take 2^20
MAX_IMAGE_BYTES = 30 * 1024 * 1024  # "30 MB", applied to the decoded file bytes

# reason -> HTTP status (contract "Errors" table)
ERROR_STATUS: dict[str, int] = {
    "INVALID_REQUEST_BODY": 400, "IMAGE_FILE_EXCEEDS_MAX_SIZE": 400, "INVALID_IMAGE_FORMAT": 400,
    "IMAGE_EXCEEDS_MAX_RESOLUTION": 400, "INVALID_IMAGE_SIZE": 400, "ILLEGAL_PROMPT": 400,
    "ILLEGAL_IMAGE_CONTENT": 400, "BILLING_BALANCE_NOT_ENOUGH": 400, "MISSING_API_KEY": 400,
    "INVALID_API_KEY": 403, "BILLING_AUTH_FAILED": 403, "FEATURE_NOT_ALLOWED": 403,
    "API_NOT_ALLOWED": 403, "API_NOT_FOUND": 404, "TASK_NOT_FOUND": 404,
    "RATE_LIMIT_EXCEEDED": 429, "BILLING_FAILED": 500, "CREATE_TASK_FAILED": 500,
    "GET_RESULT_FAILED": 500, "TASK_FAILED": 500,
}

TASK_STATUSES: tuple[str, ...] = (
    "TASK_STATUS_QUEUED", "TASK_STATUS_PROCESSING", "TASK_STATUS_SUCCEED", "TASK_STATUS_FAILED",
)


def error_body(reason: str, message: str, metadata: dict[str, object] | None = None) -> dict[str, object]:
    """The contract's error body for `reason`."""
    return {"code": ERROR_STATUS[reason], "reason": reason, "message": message, "metadata": metadata or {}}
