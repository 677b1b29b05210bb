"""The models `GET /v3/model` lists: the two local algorithms and aliases for real checkpoints.

Any non-empty model name is accepted on submit (real Novita names map to Telea, so requests
written for the real API run unchanged); the listing shows the local models plus the project's
default real checkpoint as an alias entry (`alias_of`), in the shape of Novita's model objects.

Pagination: cursors are `c_<offset>`, the form the official SDK builds itself (it even prefixes
`c_` to a cursor it was given, so repeated `c_` prefixes are tolerated). `next_cursor` is "" on
the last page. `filter.is_inpainting=false` means "no filter" (the SDK sends it by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from novita_local.errors import ApiError
from novita_local.inpaint import LOCAL_MODEL_NS, LOCAL_MODEL_TELEA

DEFAULT_REAL_MODEL = "realisticVisionV40_v40VAE-inpainting_81543.safetensors"
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class CatalogEntry:
    id: int
    sd_name: str
    name: str
    description: str
    alias_of: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "sd_name": self.sd_name,
            "sd_name_in_api": self.sd_name,
            "type": {"name": "checkpoint", "display_name": "Checkpoint"},
            "status": 1,
            "base_model": "SD 1.5",
            "base_model_type": "Inpainting",
            "is_sdxl": False,
            "is_nsfw": False,
            "is_inpainting": True,
            "source": "local",
            "visibility": "public",
            "categories": ["inpainting"],
            "description": self.description,
            "hash_sha256": "",
            "download_url": "",
            "download_url_ttl": 0,
            "cover_url": "",
            "alias_of": self.alias_of,
        }


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        1,
        LOCAL_MODEL_TELEA,
        "Local inpainting (OpenCV Telea)",
        "Fast-marching inpainting (Telea 2004); the local server's default algorithm.",
    ),
    CatalogEntry(
        2,
        LOCAL_MODEL_NS,
        "Local inpainting (OpenCV Navier-Stokes)",
        "Navier-Stokes based inpainting (Bertalmio 2001).",
    ),
    CatalogEntry(
        3,
        DEFAULT_REAL_MODEL,
        "Realistic Vision V4.0 inpainting (local alias)",
        f"Runs {LOCAL_MODEL_TELEA} locally; any other model name does too.",
        alias_of=LOCAL_MODEL_TELEA,
    ),
)

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
