"""The Novita inpainting contract as code: enums, limits, error reasons and request fields.

The one source of these facts for both sides: the client's request model
(`inpaint_flows.models.InpaintParams`), its input checks and its error handling import them, and
so does the bundled local server, which depends on this module, never the other way
round. Each request field's type, range and the phrase that describes it ("an integer from 1 to
100") are defined once below as an annotated type that both request models use, so whatever the
client accepts the server accepts too. See docs/novita-contract.md for the prose.

The request models mirror the contract table. Each field's `description` is the phrase used in
error messages ("request.steps must be an integer from 1 to 100; got 500"), so the OpenAPI schema
and the messages cannot drift apart. Types are strict (no "5" for 5, no true for 1) except that an
integral float (5.0) is accepted for an integer, as JSON decoders in other languages do.

Decisions where the contract is silent:

- Explicit `null` equals absent for every optional field (the official SDK sends nulls).
- proto3 zero values mean "unset" where zero is outside the documented range: `negative_prompt: ""`,
  `sd_vae: ""` and `clip_skip: 0` are accepted (the SDK's own dataclass defaults send them).
- `inpainting_full_res` and `inpainting_mask_invert` accept 0/1 and also true/false (the SDK's
  dataclass declares them bool).
- Unknown fields are ignored, as a tolerant API does. The legacy `inpainting_fill` is honoured when
  it is an integer 0..3 and ignored otherwise: it is never a reason to reject a request.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# fmt: off
SAMPLERS: tuple[str, ...] = (
    "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2S a", "DPM++ 2M", "DPM++ SDE",
    "DPM fast", "DPM adaptive", "LMS Karras", "DPM2 Karras", "DPM2 a Karras",
    "DPM++ 2S a Karras", "DPM++ 2M Karras", "DPM++ SDE Karras", "DDIM", "PLMS", "UniPC",
)
# fmt: on
RESPONSE_IMAGE_TYPES: tuple[str, ...] = ("png", "webp", "jpeg")
IMAGE_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP")  # Pillow's names for accepted inputs
MAX_PIXELS = 16 * 1024 * 1024  # "16 megapixels"; Novita does not say 10^6 or 2^20: we take 2^20
MAX_IMAGE_BYTES = 30 * 1024 * 1024  # "30 MB", applied to the decoded file bytes
MAX_TEXT_CHARS = 1024
MAX_LORAS = 5
MAX_EMBEDDINGS = 5
MAX_SEED = 2**63 - 1  # int64, like the proto field behind it
TASK_TYPE = "INPAINTING"
# Our assumption: Novita documents no per-side cap for inpainting (INVALID_IMAGE_SIZE says one
# exists); img2img documents 128..2048, so the `novita` profile refuses sides over 2048.
NOVITA_MAX_SIDE = 2048
DEFAULT_IMAGE_URL_TTL = 3600
# The seed's example checkpoint: a real Novita inpainting `sd_name`.
DEFAULT_MODEL = "realisticVisionV40_v40VAE-inpainting_81543.safetensors"

NEED_REAL_NAME_VERIFY = "NEED_REAL_NAME_VERIFY"
# The API's paths (the local server serves the same ones).
SUBMIT_PATH = "/v3/async/inpainting"
TASK_RESULT_PATH = "/v3/async/task-result"
MODELS_PATH = "/v3/model"
MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
# In the JS SDK's status enum beside the four below; a poll may report it for a running task.
TASK_STATUS_UNKNOWN = "TASK_STATUS_UNKNOWN"

# Statuses for a refused key: the error-code table gives 403 INVALID_API_KEY (and 400
# MISSING_API_KEY); Novita's general error guide gives 401 for a missing or wrong key.
AUTH_STATUSES: tuple[int, ...] = (401, 403)

# reason -> HTTP status (contract "Errors" table)
ERROR_STATUS: dict[str, int] = {
    "INVALID_REQUEST_BODY": 400,
    "IMAGE_FILE_EXCEEDS_MAX_SIZE": 400,
    "INVALID_IMAGE_FORMAT": 400,
    "IMAGE_EXCEEDS_MAX_RESOLUTION": 400,
    "INVALID_IMAGE_SIZE": 400,
    "ILLEGAL_PROMPT": 400,
    "ILLEGAL_IMAGE_CONTENT": 400,
    "BILLING_BALANCE_NOT_ENOUGH": 400,
    "MISSING_API_KEY": 400,
    "INVALID_API_KEY": 403,
    "BILLING_AUTH_FAILED": 403,
    "FEATURE_NOT_ALLOWED": 403,
    "API_NOT_ALLOWED": 403,
    "API_NOT_FOUND": 404,
    "TASK_NOT_FOUND": 404,
    "RATE_LIMIT_EXCEEDED": 429,
    "BILLING_FAILED": 500,
    "CREATE_TASK_FAILED": 500,
    "GET_RESULT_FAILED": 500,
    "TASK_FAILED": 500,
    # Not in the table: the contract's "What the real API does" section lists it beside
    # INVALID_API_KEY among the 403s (an account that must verify its identity first).
    NEED_REAL_NAME_VERIFY: 403,
    # Our assumption: how Novita refuses a checkpoint, VAE, LoRA or embedding name that does not
    # exist is unconfirmed. This token and status follow the common `model_not_found` 404 of
    # OpenAI-style APIs (and v2's distinct CodeModelNotExist); a client must also expect a 400.
    MODEL_NOT_FOUND: 404,
}

# Reasons that are about the account, not one image: the first one stops a batch's new submits
# (`inpaint_flows.halt`). Each maps to what the user should do. Sources: the error-code table,
# Novita's general error guide and its SDKs (docs/novita-contract.md); MODEL_NOT_FOUND is the
# local server's token for an unknown model name (how Novita refuses one is unconfirmed).
_RERUN = "then rerun the same command: finished jobs are skipped and nothing is paid twice."
BATCH_STOPPING_REASONS: dict[str, str] = {
    "MISSING_API_KEY": "set NOVITA_API_KEY or the Secret block to your key, " + _RERUN,
    "INVALID_API_KEY": "check the key (NOVITA_API_KEY or the Secret block), " + _RERUN,
    "BILLING_AUTH_FAILED": "check the account's billing in Novita's dashboard, " + _RERUN,
    "NEED_REAL_NAME_VERIFY": "complete real-name verification on Novita, " + _RERUN,
    "FEATURE_NOT_ALLOWED": "this account may not use inpainting; check its plan, " + _RERUN,
    "API_NOT_ALLOWED": "this account may not use this API; check its plan, " + _RERUN,
    "ANONYMOUS_ACCESS_QUOTA_EXCEEDS": "use an API key, " + _RERUN,
    "BILLING_BALANCE_NOT_ENOUGH": "top up the Novita balance, " + _RERUN,
    "MODEL_NOT_FOUND": "use a name listed by `GET /v3/model` (see `inpaint-flows check`), "
    + _RERUN,
}

# Reasons only the local server uses, for statuses the contract has no token for. Same body shape.
LOCAL_ERROR_STATUS: dict[str, int] = {
    "METHOD_NOT_ALLOWED": 405,
    "SERVICE_UNAVAILABLE": 503,
}

TaskStatus = Literal[
    "TASK_STATUS_QUEUED",
    "TASK_STATUS_PROCESSING",
    "TASK_STATUS_SUCCEED",
    "TASK_STATUS_FAILED",
    # In Novita's JS SDK enum beside the four documented ones; a client treats it as "ask again".
    "TASK_STATUS_UNKNOWN",
]
# Every status a poll can report, TASK_STATUS_UNKNOWN included (a client must tolerate it),
# and the four the API reference documents.
REPORTED_TASK_STATUSES: tuple[str, ...] = get_args(TaskStatus)
TASK_STATUSES: tuple[str, ...] = tuple(
    s for s in REPORTED_TASK_STATUSES if s != TASK_STATUS_UNKNOWN
)
FINAL_TASK_STATUSES = frozenset(("TASK_STATUS_SUCCEED", "TASK_STATUS_FAILED"))
ERROR_BODY_KEYS = frozenset({"code", "reason", "message", "metadata"})


def error_status(reason: str) -> int:
    """The HTTP status that goes with `reason`."""
    if reason in ERROR_STATUS:
        return ERROR_STATUS[reason]
    return LOCAL_ERROR_STATUS[reason]


def error_body(
    reason: str,
    message: str,
    metadata: dict[str, object] | None = None,
    *,
    status: int | None = None,
) -> dict[str, object]:
    """The contract's error body for `reason` (`status` when it differs from the table's)."""
    return {
        "code": status if status is not None else error_status(reason),
        "reason": reason,
        "message": message,
        "metadata": metadata or {},
    }


# ---------------------------------------------------------------- request models


def _integral_float_to_int(value: object) -> object:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _legacy_fill(value: object) -> object:
    value = _integral_float_to_int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 3:
        return value
    return None  # never a reason to reject: anything else is ignored


Int = Annotated[int, BeforeValidator(_integral_float_to_int)]
LegacyFill = Annotated[Any, BeforeValidator(_legacy_fill)]
Sampler = Literal[SAMPLERS]  # type: ignore[valid-type]
ResponseImageType = Literal["png", "webp", "jpeg"]

_SAMPLER_LIST = ", ".join(SAMPLERS)

# ---------------------------------------------------------------- request fields, each once
# Type, range and the phrase for messages ("request.steps must be <description>; got 500").
# The client's `InpaintParams` and the server's `InpaintingRequest` both use these.

CheckpointName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        description="a non-empty checkpoint name (sd_name), e.g. " + DEFAULT_MODEL,
    ),
]
Base64Image = Annotated[
    str, Field(min_length=1, description="a non-empty base64 PNG, JPEG or WEBP")
]
Prompt = Annotated[
    str,
    Field(min_length=1, max_length=MAX_TEXT_CHARS, description="a string of 1 to 1024 characters"),
]
ImageNum = Annotated[Int, Field(ge=1, le=8, description="an integer from 1 to 8")]
Steps = Annotated[Int, Field(ge=1, le=100, description="an integer from 1 to 100")]
GuidanceScale = Annotated[float, Field(ge=1, le=30, description="a number from 1 to 30")]
SamplerName = Annotated[Sampler, Field(description=f"one of: {_SAMPLER_LIST}")]
Seed = Annotated[
    Int, Field(ge=-1, le=MAX_SEED, description="an integer from -1 (random) to 2^63-1")
]
MaskBlur = Annotated[Int, Field(ge=0, le=64, description="an integer from 0 to 64")]
ModelRef = Annotated[
    str, Field(min_length=1, max_length=MAX_TEXT_CHARS, description="a non-empty model name")
]
Strength = Annotated[float, Field(ge=0, le=1, description="a number from 0 to 1")]
ClipSkip = Annotated[Int, Field(ge=1, le=12, description="an integer from 1 to 12")]
FullRes = Annotated[Literal[0, 1], Field(description="0 (whole picture) or 1 (only masked area)")]
FullResPadding = Annotated[Int, Field(ge=0, le=256, description="an integer from 0 to 256")]
MaskInvert = Annotated[
    Literal[0, 1], Field(description="0 (inpaint masked) or 1 (inpaint not masked)")
]
NoiseMultiplier = Annotated[float, Field(ge=0, le=1.5, description="a number from 0 to 1.5")]
# proto3 "unset" values the server tolerates (the official SDK's dataclass defaults send them);
# a client never sends them.
_Unset0 = Literal[0]
_UnsetText = Literal[""]


def _flag(value: object) -> object:
    """0/1 flags also as true/false (the SDK's dataclass declares them bool)."""
    if isinstance(value, bool):
        return int(value)
    return _integral_float_to_int(value)


_TolerantFlag = BeforeValidator(_flag)


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class LoraSpec(_Model):
    model_name: Annotated[ModelRef, Field(description="a non-empty string (a LoRA name)")]
    strength: Strength | None = None


class EmbeddingSpec(_Model):
    model_name: Annotated[ModelRef, Field(description="a non-empty string (an embedding name)")]


class InpaintingRequest(_Model):
    """`request`: the inpainting parameters (contract table), as the server accepts them."""

    model_name: CheckpointName
    image_base64: Base64Image
    mask_image_base64: Base64Image
    prompt: Prompt
    image_num: ImageNum
    steps: Steps
    guidance_scale: GuidanceScale
    sampler_name: SamplerName
    negative_prompt: Annotated[
        Prompt | _UnsetText | None,
        Field(description="a string of 1 to 1024 characters (or empty/null for none)"),
    ] = None
    seed: Seed | None = None
    mask_blur: MaskBlur | None = None
    sd_vae: Annotated[ModelRef | _UnsetText | None, Field(description="a string (a VAE name)")] = (
        None
    )
    loras: Annotated[
        list[LoraSpec] | None,
        Field(
            max_length=MAX_LORAS, description="a list of at most 5 {model_name, strength} objects"
        ),
    ] = None
    embeddings: Annotated[
        list[EmbeddingSpec] | None,
        Field(max_length=MAX_EMBEDDINGS, description="a list of at most 5 {model_name} objects"),
    ] = None
    clip_skip: Annotated[
        ClipSkip | _Unset0 | None,
        Field(description="an integer from 1 to 12 (0 or null for default)"),
    ] = None
    strength: Strength | None = None
    inpainting_full_res: Annotated[FullRes | None, _TolerantFlag] = None
    inpainting_full_res_padding: FullResPadding | None = None
    inpainting_mask_invert: Annotated[MaskInvert | None, _TolerantFlag] = None
    initial_noise_multiplier: NoiseMultiplier | None = None
    inpainting_fill: LegacyFill = Field(
        default=None,
        description="legacy v2 field: 0 fill, 1 original, 2 latent noise, 3 latent nothing",
    )


class WebhookTestMode(_Model):
    enabled: bool | None = Field(default=None, description="true or false")
    return_task_status: TaskStatus | None = Field(
        default=None, description="one of: " + ", ".join(TASK_STATUSES)
    )


class Webhook(_Model):
    url: str = Field(
        min_length=1,
        max_length=2048,
        pattern=r"^https?://",
        description="an http:// or https:// URL",
    )
    test_mode: WebhookTestMode | None = Field(
        default=None, description="an object {enabled, return_task_status}"
    )


class AwsS3(_Model):
    region: str | None = Field(default=None, description="a string")
    bucket: str | None = Field(default=None, description="a string")
    path: str | None = Field(default=None, description="a string")
    save_to_path_directly: bool | None = Field(default=None, description="true or false")


class CustomStorage(_Model):
    aws_s3: AwsS3 | None = Field(
        default=None, description="an object {region, bucket, path, save_to_path_directly}"
    )


class EnterprisePlan(_Model):
    enabled: bool | None = Field(default=None, description="true or false")


class InpaintingExtra(_Model):
    """`extra`: delivery options beside the parameters."""

    response_image_type: ResponseImageType | None = Field(
        default=None, description="one of: png, webp, jpeg"
    )
    webhook: Webhook | None = Field(default=None, description="an object {url, test_mode}")
    custom_storage: CustomStorage | None = Field(
        default=None, description="an object {aws_s3: {...}}"
    )
    enterprise_plan: EnterprisePlan | None = Field(default=None, description="an object {enabled}")
    enable_nsfw_detection: bool | None = Field(default=None, description="true or false")
    nsfw_detection_level: Int | None = Field(default=None, ge=0, le=2, description="0, 1 or 2")


class InpaintingBody(_Model):
    """The whole `POST /v3/async/inpainting` body."""

    extra: InpaintingExtra | None = Field(
        default=None, description="an object with delivery options"
    )
    request: InpaintingRequest = Field(description="an object with the inpainting parameters")


class TaskCreated(BaseModel):
    task_id: str


class ErrorBody(BaseModel):
    code: int
    reason: str
    message: str
    metadata: dict[str, Any]


def _describe(model: type[BaseModel], prefix: str, into: dict[str, str]) -> None:
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        into[path] = info.description or _description_in(info.annotation) or "a valid value"
        for nested in _nested_models(info.annotation):
            nested_prefix = f"{path}[]" if _is_list(info.annotation) else path
            _describe(nested, nested_prefix, into)


def _description_in(annotation: Any) -> str | None:
    """The description of an annotated type inside `annotation` (e.g. `Seed | None`)."""
    for item in getattr(annotation, "__metadata__", ()):
        if getattr(item, "description", None):
            return str(item.description)
    for arg in getattr(annotation, "__args__", ()):
        found = _description_in(arg)
        if found:
            return found
    return None


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in getattr(annotation, "__args__", ()):
        found.extend(_nested_models(arg))
    return found


def _is_list(annotation: Any) -> bool:
    if getattr(annotation, "__origin__", None) is list:
        return True
    return any(_is_list(arg) for arg in getattr(annotation, "__args__", ()))


# "request.loras[].strength" -> "a number from 0 to 1": the phrase after "must be" in messages.
FIELD_DESCRIPTIONS: dict[str, str] = {}
_describe(InpaintingBody, "", FIELD_DESCRIPTIONS)
