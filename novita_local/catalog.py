"""The models `GET /v3/model` lists, and the name check the `novita` profile applies on submit.

The catalogue holds real Novita names, each standing in locally for something OpenCV can do,
plus the two local algorithms under their own names. Where each name comes from:

- `realisticVisionV40_v40VAE-inpainting_81543.safetensors` (checkpoint, runs Telea): Novita's
  inpainting page and its `GET /v3/model` example (id 114600, "V4.0-inpainting (VAE)").
- `meinahentai_v4-inpainting_86046.safetensors` (checkpoint, runs Navier-Stokes): public code
  calling Novita's inpainting API names it (its family, MeinaHentai_V5, is in Novita's own SDK
  README); that Novita still lists it is unconfirmed.
- LoRAs `add_detail_44319`, `more_details_59655`: Novita's img2img example (their `sd_name` with
  `.safetensors` is inferred from the `GET /v3/model` example's LoRA).
- Embeddings `easynegative_8955`, `BadDream_53202`, `badhandv4_16755`: Novita's SDK examples.
- VAE `vae-ft-mse-840000-ema-pruned.safetensors`: our assumption (the standard SD 1.5 VAE; no
  Novita source names a VAE).
- `local-telea-inpainting`, `local-ns-inpainting` (checkpoints): local only.

LoRAs, embeddings and the VAE change no pixel locally; they exist so requests naming them pass
the check as they would on Novita. Ids other than 114600 are local.

Under `novita` a submit naming anything else is refused 404 MODEL_NOT_FOUND (our assumption, see
`contract.MODEL_NOT_FOUND`), every unknown name listed in one message. A name matches an entry's
`sd_name` or its `sd_name_in_api` (Novita's docs use `sd_name` for checkpoints and
`sd_name_in_api` for LoRAs; its SDK passes embeddings either way). Under `helpful` any name runs,
as Telea unless it is a catalogue checkpoint.

Pagination: cursors are `c_<offset>`, the form the official SDK builds itself (it even prefixes
`c_` to a cursor it was given, so repeated `c_` prefixes are tolerated). `next_cursor` is "" on
the last page. `filter.is_inpainting=false` means "no filter" (the SDK sends it by default).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from inpaint_flows.contract import DEFAULT_MODEL, MODEL_NOT_FOUND, InpaintingRequest
from novita_local.errors import ApiError
from novita_local.inpaint import LOCAL_MODEL_NS, LOCAL_MODEL_TELEA, Algorithm

DEFAULT_REAL_MODEL = DEFAULT_MODEL  # the seed's example checkpoint, defined by the contract
SECOND_REAL_MODEL = "meinahentai_v4-inpainting_86046.safetensors"
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

ModelType = Literal["checkpoint", "lora", "vae", "textualinversion"]

_DISPLAY = {
    "checkpoint": "Checkpoint",
    "lora": "LoRA",
    "vae": "VAE",
    "textualinversion": "Textual Inversion",
}
_LISTING_QUERY = {
    "checkpoint": "GET /v3/model?filter.types=checkpoint&filter.is_inpainting=true",
    "lora": "GET /v3/model?filter.types=lora",
    "vae": "GET /v3/model?filter.types=vae",
    "textualinversion": "GET /v3/model?filter.types=textualinversion",
}


@dataclass(frozen=True)
class CatalogEntry:
    id: int
    sd_name: str
    name: str
    type: ModelType
    description: str
    source: str = "civitai"
    runs: Algorithm | None = None  # checkpoints: the local algorithm standing in for it
    api_name: str | None = None  # `sd_name_in_api` when it differs from `sd_name`

    @property
    def sd_name_in_api(self) -> str:
        return self.api_name or self.sd_name

    @property
    def is_inpainting(self) -> bool:
        return self.type == "checkpoint"  # every checkpoint listed here is an inpainting one

    def as_json(self) -> dict[str, Any]:
        local_name = {"telea": LOCAL_MODEL_TELEA, "ns": LOCAL_MODEL_NS}.get(self.runs or "")
        return {
            "id": self.id,
            "name": self.name,
            "sd_name": self.sd_name,
            "sd_name_in_api": self.sd_name_in_api,
            "type": {"name": self.type, "display_name": _DISPLAY[self.type]},
            "status": 1,
            "base_model": "SD 1.5",
            "base_model_type": "Inpainting" if self.is_inpainting else "Standard",
            "is_sdxl": False,
            "is_nsfw": False,
            "is_inpainting": self.is_inpainting,
            "source": self.source,
            "visibility": "public",
            "categories": ["inpainting"] if self.is_inpainting else [],
            "tags": [],
            "description": self.description,
            "hash_sha256": "",
            "download_url": "",
            "download_url_ttl": 0,
            "cover_url": "",
            # Local addition: which local algorithm a real checkpoint name runs.
            "alias_of": local_name if local_name != self.sd_name else None,
        }


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        1,
        LOCAL_MODEL_TELEA,
        "Local inpainting (OpenCV Telea)",
        "checkpoint",
        "Fast-marching inpainting (Telea 2004); the local server's default algorithm.",
        source="local",
        runs="telea",
    ),
    CatalogEntry(
        2,
        LOCAL_MODEL_NS,
        "Local inpainting (OpenCV Navier-Stokes)",
        "checkpoint",
        "Navier-Stokes based inpainting (Bertalmio 2001).",
        source="local",
        runs="ns",
    ),
    CatalogEntry(
        114600,
        DEFAULT_REAL_MODEL,
        "V4.0-inpainting (VAE)",
        "checkpoint",
        f"Realistic Vision V4.0 inpainting; runs {LOCAL_MODEL_TELEA} locally.",
        runs="telea",
    ),
    CatalogEntry(
        3,
        SECOND_REAL_MODEL,
        "v4-inpainting",
        "checkpoint",
        f"MeinaHentai V4 inpainting; runs {LOCAL_MODEL_NS} locally.",
        runs="ns",
    ),
    CatalogEntry(4, "add_detail_44319.safetensors", "Detail Tweaker", "lora",
                 "Adds or removes detail.", api_name="add_detail_44319"),
    CatalogEntry(5, "more_details_59655.safetensors", "More Details", "lora",
                 "Adds detail.", api_name="more_details_59655"),
    CatalogEntry(6, "easynegative_8955.safetensors", "EasyNegative", "textualinversion",
                 "Negative embedding.", api_name="easynegative_8955"),
    CatalogEntry(7, "BadDream_53202", "BadDream", "textualinversion", "Negative embedding."),
    CatalogEntry(8, "badhandv4_16755", "badhandv4", "textualinversion", "Negative embedding."),
    CatalogEntry(9, "vae-ft-mse-840000-ema-pruned.safetensors", "SD 1.5 VAE (ft-MSE)", "vae",
                 "The standard Stable Diffusion 1.5 VAE."),
)  # fmt: skip


def find(name: str, model_type: ModelType) -> CatalogEntry | None:
    """The catalogue entry of this type named `name` (its sd_name or sd_name_in_api)."""
    for entry in CATALOG:
        if entry.type == model_type and name in (entry.sd_name, entry.sd_name_in_api):
            return entry
    return None


def algorithm_for(model_name: str) -> Algorithm:
    """The OpenCV algorithm that stands in for checkpoint `model_name`.

    A catalogue checkpoint runs its own algorithm; any other name (accepted only under the
    `helpful` profile) runs Telea, so requests written for the real API run unchanged there.
    """
    entry = find(model_name, "checkpoint")
    return entry.runs if entry is not None and entry.runs is not None else "telea"


def check_names(request: InpaintingRequest) -> None:
    """Refuse (404 MODEL_NOT_FOUND) a request naming a model the catalogue does not hold."""
    problems = [
        f"{where} {name!r} is not a known {_DISPLAY[kind]} (see {_LISTING_QUERY[kind]})"
        for where, name, kind in _named_models(request)
        if find(name, kind) is None
    ]
    if problems:
        raise ApiError(MODEL_NOT_FOUND, "; ".join(problems))


def _named_models(request: InpaintingRequest) -> Iterator[tuple[str, str, ModelType]]:
    yield "request.model_name", request.model_name, "checkpoint"
    if request.sd_vae:  # "" is the SDK's zero value for "none"
        yield "request.sd_vae", request.sd_vae, "vae"
    for index, lora in enumerate(request.loras or ()):
        yield f"request.loras[{index}].model_name", lora.model_name, "lora"
    for index, embedding in enumerate(request.embeddings or ()):
        yield f"request.embeddings[{index}].model_name", embedding.model_name, "textualinversion"


_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _flag(name: str, value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ApiError("INVALID_REQUEST_BODY", f"{name} must be true or false; got {value!r}")


def _limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_PAGE_SIZE
    try:
        limit = int(value)
    except ValueError:
        limit = -1
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ApiError(
            "INVALID_REQUEST_BODY",
            f"pagination.limit must be an integer from 1 to {MAX_PAGE_SIZE}; got {value!r}",
        )
    return limit


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    text = cursor
    while text.startswith("c_"):
        text = text[2:]
    if text == "":
        return 0
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise ApiError(
            "INVALID_REQUEST_BODY",
            f"pagination.cursor must be a next_cursor this server returned; got {cursor!r}",
        )
    return int(text)


def list_models(params: dict[str, str]) -> dict[str, Any]:
    """The `GET /v3/model` body for the given query parameters."""
    visibility = params.get("filter.visibility") or None
    source = params.get("filter.source") or None
    types_text = params.get("filter.types") or params.get("filter.type") or ""
    types = {t.strip().lower() for t in types_text.split(",") if t.strip()}
    is_sdxl = _flag("filter.is_sdxl", params.get("filter.is_sdxl"))
    is_inpainting = _flag("filter.is_inpainting", params.get("filter.is_inpainting"))
    query = (params.get("filter.query") or "").strip().lower()
    limit = _limit(params.get("pagination.limit"))
    offset = _offset(params.get("pagination.cursor"))

    matches = []
    for entry in CATALOG:
        data = entry.as_json()
        if visibility is not None and data["visibility"] != visibility:
            continue
        if source is not None and data["source"] != source:
            continue
        if types and data["type"]["name"] not in types:
            continue
        if is_sdxl is not None and data["is_sdxl"] != is_sdxl:
            continue
        if is_inpainting and not data["is_inpainting"]:
            continue
        if query and query not in entry.sd_name.lower() and query not in entry.name.lower():
            continue
        matches.append(data)
    page = matches[offset : offset + limit]
    more = offset + limit < len(matches)
    return {"models": page, "pagination": {"next_cursor": f"c_{offset + limit}" if more else ""}}
