"""The HTML gallery: one self-contained page a person opens to see what a batch did.

`index.html` shows, per input, the original, the mask and the result(s) side by side, with the
status, the reason and message, the task id and the latency. The page is one file with inline
CSS, no script and no external URL, and every link is relative, so the output folder can be
zipped, moved or served as it is. It is rendered from `templates/gallery.html.j2` (each row from
`gallery_row.html.j2`) with Jinja2's autoescape: every value is text, whatever a file name holds.

Thumbnails (longest side 256 px) are made from the files themselves and written to `_thumbs/`.
They are named by a hash of the source file's path, size and modification time, so writing the
gallery again (after a rerun) reuses the ones still valid and removes the stale ones. A file that
is missing or cannot be decoded gets a placeholder box carrying the error, never an exception:
the gallery is most useful exactly when inputs are broken.

A relative input path is taken from the current directory, as the pipeline reads it. A relative
output path is looked up under the output folder first (where results live), then there.

A run makes each row's thumbnails, and renders the row, as its job finishes
(`Thumbnailer.prepare`, called from `inpaint_flows.finishing` while other jobs wait on the API),
and hands the same `Thumbnailer` to `write_gallery`, which then only puts the page together:
after the last download nothing is decoded, and only rows that changed since (or whose
thumbnails went missing) are rendered. The page is the same either way, byte for byte, since a
thumbnail's name and size follow from its file alone.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import stat
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote, unquote

import jinja2
from markupsafe import Markup
from PIL import Image, ImageOps

from inpaint_flows.errors import ConfigError
from inpaint_flows.locations import info, is_remote, open_input
from inpaint_flows.models import JobOutcome, JobStatus
from inpaint_flows.output_folder import OutputFolder
from inpaint_flows.storage import StrPath, atomic_text_writer, atomic_write_bytes, is_temp_file_of
from inpaint_flows.summary import summarize

INDEX_NAME = "index.html"
SHARED_NAME = "index.shared.html"  # every link presigned: for a private bucket
THUMBS_DIR = "_thumbs"
THUMB_MAX_SIDE = 256

_THUMB_NAME = re.compile(r"^[0-9a-f]{24}\.(?:png|jpg)$")
_THUMB_TEMP = re.compile(r"^\.[0-9a-f]{24}\.(?:png|jpg)\.\w{8}\.tmp$")  # a killed write left it

STATUS_COLOURS: dict[JobStatus, str] = {
    JobStatus.SUCCEEDED: "#1a7f37",
    JobStatus.FAILED: "#cf222e",
    JobStatus.INVALID: "#bc4c00",
    JobStatus.SKIPPED_ALREADY_DONE: "#0969da",
    JobStatus.NOT_SUBMITTED: "#8250df",
    JobStatus.PENDING: "#6e7781",
}


# A thumbnail as it is stored: encoded bytes, file suffix, (width, height).
Thumbnail = tuple[bytes, str, tuple[int, int]]


@dataclass(frozen=True)
class _Thumb:
    src: str  # relative URL, already percent-encoded
    width: int
    height: int

    @property
    def name(self) -> str:
        """Its file's name in `_thumbs/` (hex and a suffix: the URL needs no decoding)."""
        return self.src.rpartition("/")[2]


@dataclass(frozen=True)
class _Missing:
    error: str


def write_gallery(
    outcomes: Iterable[JobOutcome],
    out_dir: StrPath | OutputFolder,
    *,
    title: str = "Inpaint Flows gallery",
    api: str | None = None,
    thumbnails: Thumbnailer | None = None,
    signed: Callable[[str], str] | None = None,
) -> Path:
    """Write `index.html` (atomically) and its thumbnails into `out_dir`; return the page path.

    With `signed` (relative path → URL anyone can open, e.g. presigned), also write
    `index.shared.html`: the same page with every link through `signed`, for a private bucket.

    Parameters:
        outcomes: the report rows, shown in this order.
        out_dir: the batch's output folder (its working folder, for a bucket); thumbnails go
            to `_thumbs/` there.
        title: the page title and heading (escaped, any text is fine).
        api: which API produced this run's results, shown under the title.
        thumbnails: the run's `Thumbnailer` for `out_dir`, holding the thumbnails it already
            made as jobs finished (any it lacks are made now).
    """
    output = out_dir if isinstance(out_dir, OutputFolder) else OutputFolder(os.fspath(out_dir))
    root = output.work
    rows = list(outcomes)
    if thumbnails is not None and thumbnails.root != root:
        raise ValueError(f"thumbnails were made for {thumbnails.root}, not {root}")
    thumbs = thumbnails or Thumbnailer(output)
    thumbs.used.clear()  # only what this page shows is kept by `prune`
    links = _Links(output)
    summary = summarize(rows)
    facts = []
    if summary.latency_mean_s is not None:
        facts.append(
            f"latency mean {summary.latency_mean_s:.1f} s, "
            f"p95 {summary.latency_p95_s or 0.0:.1f} s, max {summary.latency_max_s or 0.0:.1f} s"
        )
    if summary.images_per_min is not None:
        facts.append(f"{summary.images_per_min:.2f} images/min")

    def page_rows() -> Iterator[_Row]:  # made as the page is written, not all kept
        return (_row(i, o, links, thumbs) for i, o in enumerate(rows, start=1))

    def page_html() -> Iterator[Markup]:
        # Rows rendered as their jobs finished (`Thumbnailer.prepare`) are used as they are.
        return (thumbs.row_html(i, o, links) for i, o in enumerate(rows, start=1))

    def render(rows: Iterable[Markup], name: str) -> Path:
        # Written as the template renders it: a page of thousands of rows is never one string.
        pieces = _template().generate(
            title=title,
            api=api,
            summary=summary,
            counts=[(status, n) for status, n in summary.counts.items() if n],
            count_of=summary.counts,
            reasons=summary.top_reasons,
            facts="; ".join(facts),
            colours=STATUS_COLOURS,
            rows=rows,
        )
        with atomic_text_writer(root / name) as page:
            started = False
            for piece in pieces:
                if not started:  # the page starts at its first tag
                    piece = piece.lstrip()
                    started = bool(piece)
                page.write(piece)
        return root / name

    path = render(page_html(), INDEX_NAME)
    if signed is not None:
        render((_html(_signed(r, signed)) for r in page_rows()), SHARED_NAME)
    thumbs.prune()
    return path


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("inpaint_flows", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _template() -> jinja2.Template:
    return _templates().get_template("gallery.html.j2")


_ROW_ZERO = '<tr id="row-0"'  # how a row rendered before its place on the page is known starts


def _html(row: _Row) -> Markup:
    """`row` as the page shows it (`templates/gallery_row.html.j2`)."""
    html = _templates().get_template("gallery_row.html.j2").render(row=row, colours=STATUS_COLOURS)
    return Markup(html)


def _numbered(html: str, index: int) -> Markup:
    """A row rendered as row 0 (`_html` of `_row(0, ...)`), as row `index`."""
    if not html.startswith(_ROW_ZERO):
        raise ValueError("not a gallery row rendered as row 0")
    return Markup(f'<tr id="row-{index}"{html[len(_ROW_ZERO) :]}')


# --------------------------------------------------------------------------- thumbnails


class Thumbnailer:
    """Makes (or reuses) the thumbnails under `_thumbs/` of the output folder's working folder
    and remembers which it used.

    It also remembers each thumbnail it made or found, by its key (source path, size, and
    modification time or ETag), so asking again for an unchanged file costs a `stat` (one
    listing, for a bucket), not a decode. Not thread-safe: one thread at a time (the run's
    finishing worker, then the report writer after it).
    """

    def __init__(self, root: StrPath | OutputFolder) -> None:
        self.output = root if isinstance(root, OutputFolder) else OutputFolder(os.fspath(root))
        self.root = self.output.work
        self.folder = self.root / THUMBS_DIR
        self.used: set[str] = set()
        self.made: set[str] = set()  # written by this run (what a bucket's copy lacks)
        self._known: dict[tuple[str, int, str], _Thumb] = {}
        self._real = _RealPaths()
        # Each prepared row, rendered as row 0, by input name: (the outcome's hash, its HTML,
        # the thumbnails it shows). ~1.2 KB per job, so that after the last download the page
        # is only put together (rendering 800 rows took ~0.2 s there).
        self._rows: dict[str, tuple[int, str, tuple[_Thumb, ...]]] = {}
        self._links: _Links | None = None

    def prepare(self, outcome: JobOutcome, made: Mapping[str, Thumbnail] | None = None) -> None:
        """Make the thumbnails `outcome`'s gallery row shows (original, mask, results), and
        the row itself, kept for `write_gallery` while `outcome` is the row's.

        `made`: results' thumbnails already made from their pixels (`thumbnail_of`, while the
        download was checked), by output path: written as they are, not decoded again.
        """
        self.thumb(outcome.image_path)
        if outcome.mask_path:
            self.thumb(outcome.mask_path)
        for path in outcome.outputs:
            self.thumb(path, output=True, made=(made or {}).get(path))
        if self._links is None:
            self._links = _Links(self.output)
        row = _row(0, outcome, self._links, self)
        shown = [row.original, row.mask, *(r.thumb for r in row.results)]
        if any(isinstance(t, _Missing) for t in shown):
            # A placeholder (a broken input, a preview that could not be written) is tried
            # again with the page, as before; such rows are few.
            self._rows.pop(outcome.name, None)
            return
        thumbs = tuple(t for t in shown if isinstance(t, _Thumb))
        self._rows[outcome.name] = (hash(outcome), _html(row), thumbs)

    def _reused(self, thumbs: tuple[_Thumb, ...]) -> bool:
        """Whether every one of `thumbs` is still in `_thumbs/`; if so they count as used (the
        page shows them, so the clean-up keeps them)."""
        if not all(os.path.isfile(os.path.join(self.folder, t.name)) for t in thumbs):
            return False
        self.used.update(t.name for t in thumbs)
        return True

    def row_html(self, index: int, outcome: JobOutcome, links: _Links) -> Markup:
        """`outcome`'s row as row `index` of the page: the one `prepare` rendered if `outcome`
        has not changed since and every thumbnail it shows is still there, else rendered now."""
        kept = self._rows.get(outcome.name)
        if kept is not None:
            fingerprint, html, thumbs = kept
            if fingerprint == hash(outcome) and self._reused(thumbs):
                return _numbered(html, index)
        return _html(_row(index, outcome, links, self))

    def thumb(
        self, path_text: str, *, output: bool = False, made: Thumbnail | None = None
    ) -> _Thumb | _Missing:
        if output and self.output.remote:
            source = self.output.location(path_text)
        else:
            source = _locate(path_text, self.root) if output else path_text
        try:
            seen = _identity(source, self._real)
        except (OSError, ConfigError) as exc:
            return _Missing(f"cannot read {path_text}: {_why(exc)}")
        if seen is None:
            return _Missing(f"cannot read {path_text}: not a file")
        # The same file, unchanged since its thumbnail was made or found: no decode, no hash.
        known = self._known.get(seen)
        if known is not None and self._reused((known,)):
            return known
        found = self._find_or_make(source, seen, made)
        if isinstance(found, _Thumb):
            self._known[seen] = found
        return found

    def _find_or_make(
        self, source: str, seen: tuple[str, int, str], made: Thumbnail | None
    ) -> _Thumb | _Missing:
        where, size, version = seen
        key = hashlib.sha256(f"{where}\0{size}\0{version}\0{THUMB_MAX_SIDE}".encode()).hexdigest()[
            :24
        ]
        for suffix in (".jpg", ".png"):
            cached = self.folder / f"{key}{suffix}"
            rel = f"{THUMBS_DIR}/{cached.name}"
            if cached.is_file() or (self.output.remote and self._pulled(rel)):
                try:
                    with Image.open(cached) as im:
                        dimensions = im.size
                except Exception:  # a damaged cached thumbnail is simply made again
                    break
                return self._use(cached.name, dimensions)
        try:
            data, suffix, dimensions = made or _make_thumbnail(source)
        except Exception as exc:  # any undecodable file becomes a placeholder, never a crash
            return _Missing(f"cannot preview: {exc}")
        name = f"{key}{suffix}"
        # Previews only, so not fsynced (2 fsyncs per file were most of a 1,000-row gallery's
        # time): a power cut can at worst leave a damaged preview (one that no longer opens is
        # made again); the user's files and the report are written durably.
        try:
            atomic_write_bytes(self.folder / name, data, durable=False)
        except OSError as exc:  # e.g. another run sharing the folder pruned it: a preview only
            return _Missing(f"cannot write its preview: {exc}")
        self.made.add(name)
        return self._use(name, dimensions)

    def _pulled(self, rel: str) -> bool:
        """A bucket's copy of a thumbnail an earlier run made, fetched if it is there."""
        return self.output.result_size(rel) is not None and self.output.pull(rel)

    def _use(self, name: str, size: tuple[int, int]) -> _Thumb:
        self.used.add(name)
        return _Thumb(src=f"{THUMBS_DIR}/{name}", width=size[0], height=size[1])

    def new_files(self) -> list[str]:
        """The thumbnails this run wrote that the page shows (relative to the output folder)."""
        return [f"{THUMBS_DIR}/{name}" for name in sorted(self.made & self.used)]

    def prune(self) -> None:
        """Remove thumbnails of files that are no longer shown (only ones this module made),
        and what a run killed while writing one left: its hidden temporary file."""
        if not self.folder.is_dir():
            return
        for entry in self.folder.iterdir():
            if _THUMB_NAME.match(entry.name) and entry.name not in self.used:
                entry.unlink(missing_ok=True)
            elif _THUMB_TEMP.match(entry.name):
                target = entry.name[1:].rsplit(".", 2)[0]
                if is_temp_file_of(entry.name, target):
                    entry.unlink(missing_ok=True)


class _RealPaths:
    """`os.path.realpath`, each folder resolved once (a page asks for thousands of files in a
    few folders; resolving one walks every part of its path). A symlinked file is followed."""

    def __init__(self) -> None:
        self._folders: dict[str, str] = {}

    def __call__(self, path: str | os.PathLike[str]) -> str:
        folder, name = os.path.split(os.path.abspath(path))
        real = self._folders.get(folder)
        if real is None:
            real = self._folders[folder] = os.path.realpath(folder)
        found = os.path.join(real, name)
        return os.path.realpath(found) if os.path.islink(found) else found


def _identity(source: str, real: _RealPaths) -> tuple[str, int, str] | None:
    """(where, size, version) of a file or object; None when it is not a file.

    A local file's version is its modification time; an object's, its ETag (or time).
    """
    if is_remote(source):
        meta = info(source)
        if meta is None:
            raise FileNotFoundError(2, "no such object")
        version = meta.get("ETag") or meta.get("LastModified") or meta.get("mtime") or ""
        return source, int(meta.get("size") or 0), str(version)
    st = os.stat(source)
    if not stat.S_ISREG(st.st_mode):
        return None
    return real(source), st.st_size, str(st.st_mtime_ns)


def _why(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def _locate(path_text: str, root: Path) -> str:
    """An output's file: absolute as is, else under the output folder, else the current dir.

    (String paths: a page asks for thousands, and `pathlib` cost more than the `stat`.)"""
    if os.path.isabs(path_text):
        return path_text
    under_root = os.path.join(root, path_text)
    return under_root if os.path.exists(under_root) else path_text


def _make_thumbnail(source: str) -> Thumbnail:
    """Encode a thumbnail: PNG for masks and transparent images, JPEG for the rest."""
    with warnings.catch_warnings():
        # A decompression-bomb-sized file is refused instead of decoded into memory.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with open_input(source) as fh, Image.open(fh) as opened:
            opened.draft(opened.mode, (THUMB_MAX_SIDE, THUMB_MAX_SIDE))  # fast JPEG downscale
            return thumbnail_of(opened)


def thumbnail_of(im: Image.Image) -> Thumbnail:
    """The thumbnail of the picture `im` (which it turns and shrinks in place: pass one that is
    not used afterwards), as the gallery stores it: (bytes, file suffix, size)."""
    # Turned in place: the copy `exif_transpose` returns otherwise (of every picture, turned or
    # not) cost half as much again as the decode.
    ImageOps.exif_transpose(im, in_place=True)
    # Bilinear (Pillow widens its support when it shrinks, so it is antialiased, as
    # `mask_preview` uses it): the resize is most of a thumbnail's cost, and bilinear takes
    # ~40 % less of it than bicubic (Lanczos costs more still), with no difference that shows
    # at preview size.
    im.thumbnail((THUMB_MAX_SIDE, THUMB_MAX_SIDE), Image.Resampling.BILINEAR)
    if im.mode in ("1", "L", "I", "I;16", "F"):
        im, fmt, suffix = im.convert("L"), "PNG", ".png"
    elif im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        im, fmt, suffix = im.convert("RGBA"), "PNG", ".png"
    else:
        im, fmt, suffix = im.convert("RGB"), "JPEG", ".jpg"
    buffer = io.BytesIO()
    # PNG without `optimize`: its extra passes tripled the encode for ~10 % fewer bytes.
    if fmt == "JPEG":
        im.save(buffer, fmt, quality=85)
    else:
        im.save(buffer, fmt)
    return buffer.getvalue(), suffix, im.size


# --------------------------------------------------------------------------- HTML


@dataclass(frozen=True)
class _Result:
    thumb: _Thumb | _Missing
    link: str | None


@dataclass(frozen=True)
class _Fact:
    text: str = ""
    code: str = ""  # shown as code (a task id)


@dataclass(frozen=True)
class _Row:
    index: int
    name: str
    status: JobStatus
    original: _Thumb | _Missing
    mask: _Thumb | _Missing | None
    mask_source: str | None  # drawn from annotations or a region: `inpaint-flows masks`
    results: tuple[_Result, ...]
    reason: str | None
    message: str | None
    facts: tuple[_Fact, ...]


def _row(index: int, outcome: JobOutcome, links: _Links, thumbs: Thumbnailer) -> _Row:
    facts = []
    if outcome.task_id:
        facts.append(_Fact(code=outcome.task_id))
    if outcome.latency_s is not None:
        facts.append(_Fact(f"{outcome.latency_s:.1f} s"))
    if outcome.width and outcome.height:
        facts.append(_Fact(f"{outcome.width}×{outcome.height}"))
    return _Row(
        index=index,
        name=outcome.name,
        status=JobStatus(outcome.status),
        original=thumbs.thumb(outcome.image_path),
        mask=thumbs.thumb(outcome.mask_path) if outcome.mask_path else None,
        mask_source=outcome.mask_source,
        results=tuple(
            _Result(thumbs.thumb(p, output=True), links.inside(p)) for p in outcome.outputs
        ),
        reason=outcome.reason,
        message=outcome.message,
        facts=tuple(facts),
    )


def _signed(row: _Row, sign: Callable[[str], str]) -> _Row:
    """`row` with every relative link replaced by `sign(relative path)`."""

    def thumb(t: _Thumb | _Missing | None) -> _Thumb | _Missing | None:
        return replace(t, src=sign(unquote(t.src))) if isinstance(t, _Thumb) else t

    return replace(
        row,
        original=thumb(row.original) or row.original,
        mask=thumb(row.mask),
        results=tuple(
            _Result(thumb(r.thumb) or r.thumb, sign(unquote(r.link)) if r.link else None)
            for r in row.results
        ),
    )


class _Links:
    """Relative URLs to files inside the output folder (None for anything outside it)."""

    def __init__(self, output: OutputFolder) -> None:
        self.output = output
        self.real_root = os.path.join(output.work.resolve(), "")  # once per page, with its "/"
        self._real = _RealPaths()

    def inside(self, path_text: str) -> str | None:
        if self.output.remote:  # results are named relative to the bucket's folder
            if self.output.result_size(path_text) is None:
                return None
            return quote(path_text, safe="/")
        target = self._real(_locate(path_text, self.output.work))
        if not target.startswith(self.real_root):
            return None  # a link leaving the folder would break when the folder moves
        relative = target[len(self.real_root) :].replace(os.sep, "/")
        return quote(relative, safe="/") if os.path.isfile(target) else None
