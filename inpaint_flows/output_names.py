"""Output names: a safe, unique relative path (without extension) for each input.

Subfolders are kept; each component is sanitised (no `..`, no absolute paths, no characters
Windows refuses, no hidden names; Unicode and spaces kept, NFC) and stems are unique even on
case-insensitive file systems: colliding stems get the extension (`a_png`, `a_jpg`), then a short
hash of the input (and, for manifests, of its mask and parameters).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from pathlib import PurePosixPath

_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"}
    | {f"com{i}" for i in range(1, 10)}
    | {f"lpt{i}" for i in range(1, 10)}
)
_UNSAFE_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
_MAX_COMPONENT_BYTES = 120


def output_stem_for(rel_path: str) -> str:
    """A safe relative output path (no extension) for an input at `rel_path`.

    Subfolders are kept; each component is made safe on Linux, macOS and Windows; the result is
    never absolute, never contains `..` and never starts with a dot. Not unique on its own: see
    `assign_output_stems`.
    """
    text = rel_path.replace("\\", "/")
    parts = [p for p in PurePosixPath(text).parts if p not in ("/", "")]
    if not parts:
        return "_"
    last = parts[-1]
    stem = last.rsplit(".", 1)[0] if "." in last.lstrip(".") else last
    parts[-1] = stem
    return "/".join(_safe_component(p) for p in parts)


def assign_output_stems(
    rel_paths: Sequence[str], discriminators: Sequence[str] | None = None
) -> list[str]:
    """Unique output stems for inputs at `rel_paths`, in the same order.

    Stems that would collide (compared case-insensitively, after Unicode NFC) first get the
    input's extension (`a.png`, `a.jpg` -> `a_png`, `a_jpg`), then an 8-hex hash of the path and
    its discriminator (for manifest rows: the mask and parameters), then a counter for inputs
    that are identical in every respect.
    """
    discs = list(discriminators) if discriminators is not None else [""] * len(rel_paths)
    if len(discs) != len(rel_paths):
        raise ValueError("rel_paths and discriminators must have the same length")
    stems = [output_stem_for(p) for p in rel_paths]

    crowded = Counter(_fold(s) for s in stems)
    for i, path in enumerate(rel_paths):
        if crowded[_fold(stems[i])] > 1:
            ext = _safe_component(PurePosixPath(path.replace("\\", "/")).suffix.lstrip(".").lower())
            if ext != "_":
                stems[i] = f"{stems[i]}_{ext}"

    crowded = Counter(_fold(s) for s in stems)
    for i, path in enumerate(rel_paths):
        if crowded[_fold(stems[i])] > 1:
            digest = hashlib.sha256(f"{path}\0{discs[i]}".encode()).hexdigest()[:8]
            stems[i] = f"{stems[i]}-{digest}"

    seen: set[str] = set()
    for i, stem in enumerate(stems):
        candidate, n = stem, 1
        while _fold(candidate) in seen:
            n += 1
            candidate = f"{stem}-{n}"
        stems[i] = candidate
        seen.add(_fold(candidate))
    return stems


def _fold(stem: str) -> str:
    return unicodedata.normalize("NFC", stem).casefold()


def _safe_component(part: str) -> str:
    text = unicodedata.normalize("NFC", part)
    if text == "..":
        return "__"
    text = _UNSAFE_CHARS.sub("_", text).strip()
    if text.endswith((".", " ")):  # Windows drops trailing dots and spaces
        text = text.rstrip(". ") + "_"
    if text.startswith("."):
        text = "_" + text[1:]
    if not text:
        return "_"
    if text.split(".", 1)[0].casefold() in _WINDOWS_RESERVED:
        text = "_" + text
    encoded = text.encode()
    if len(encoded) > _MAX_COMPONENT_BYTES:
        digest = hashlib.sha256(encoded).hexdigest()[:8]
        text = encoded[: _MAX_COMPONENT_BYTES - 9].decode(errors="ignore") + "-" + digest
    return text
