"""The mask painter: a page in the browser to paint masks for a folder's images, and its server.

`inpaint-flows paint FOLDER` serves one page on the loopback interface. It lists the images the
pipeline would find in FOLDER, with or without a mask, and saves a painted mask where `run FOLDER`
will look for it. The page (`static/painter.html`, `.js`, `.css`) loads nothing from elsewhere,
so it works offline.

Decisions:

- Images and masks are what `discover_jobs` finds, in the layouts it knows:
  `FOLDER/images/` + `FOLDER/masks/` saves `masks/<relative path, extension .png>`; any other
  folder is the pair layout and saves `<name>_mask.png` beside the image. Not `FOLDER/masks/`
  there: in that layout `run FOLDER` would take the files in `masks/` for images without masks.
- The page is sent the image as the pipeline sees it (EXIF orientation applied, RGB), and a mask
  is saved only when it has exactly that size, so a painted mask always fits the image it was
  painted on. An existing mask is sent oriented like the pipeline reads it.
- Saving never loses a mask: if any mask for the image exists, the request must say
  `overwrite=true` (the page asks the user first) or it gets 409. The old files (the `.png` that
  is replaced and any mask with another extension, which would otherwise shadow or make the new
  one ambiguous) are kept in `.history/` beside them (`masks/.history/<name>.<UTC time>.png`),
  a hidden folder that discovery skips. The new mask is written atomically.
- A mask with nothing to repaint (all black) is refused: the pipeline would refuse it too.
- Two images that share one mask name (`a.jpg` and `a.png` both read `masks/a.png`) cannot be
  saved from here: a mask painted for one would silently apply to the other.
- Names come from the page as paths relative to the image folder; they are joined with
  `storage.safe_join` (no `..`, no absolute paths, no symlinks out of FOLDER) and must be one of
  the discovered images; every file written is joined the same way.
- Loopback only: the painter writes files and has no login, so it refuses to listen on any other
  address. Requests must name the host as a loopback address or `localhost` (so a web page
  on another domain that resolves to 127.0.0.1 cannot use it), and a POST from another origin
  is refused.
"""

from __future__ import annotations

import contextlib
import errno
import io
import ipaddress
import os
import socket
import threading
import webbrowser
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool

from inpaint_flows.errors import ConfigError, InputError, MaskError
from inpaint_flows.input_checks import is_empty_mask
from inpaint_flows.jobs import IMAGE_EXTENSIONS, MASK_SUFFIX, discover_jobs
from inpaint_flows.models import InpaintParams
from inpaint_flows.pictures import load_image, load_mask, orientation_of
from inpaint_flows.pixels import mask_luminance
from inpaint_flows.storage import atomic_write_bytes, safe_join

__all__ = [
    "HISTORY_DIR",
    "MaskFolder",
    "PaintEntry",
    "SavedMask",
    "bind_loopback",
    "create_app",
    "serve",
    "url_of",
]

HISTORY_DIR = ".history"
MAX_UPLOAD_BYTES = 64 * 2**20  # a binary mask PNG of 10k x 10k pixels is far smaller
_STATIC = {
    "painter.js": "text/javascript; charset=utf-8",
    "painter.css": "text/css; charset=utf-8",
}
# The page needs nothing from anywhere else; the browser enforces it.
_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self';"
    " connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
# How an error's reason becomes an HTTP status; anything else about the input is 422.
_STATUS_BY_REASON = {
    "IMAGE_NOT_FOUND": 404,
    "NO_MASK": 404,
    "UNSAFE_PATH": 400,
    "MASK_EXISTS": 409,
    "SHARED_MASK": 409,
    "AMBIGUOUS_MASK": 409,
    "UPLOAD_TOO_LARGE": 413,
}


@dataclass(frozen=True)
class PaintEntry:
    """One image of the folder and where its mask is (or would be) on disk.

    Paths are relative to the folder, POSIX style, as the page shows them.
    """

    name: str  # the image's path relative to the image folder (the pipeline's job name)
    image: str
    masks: tuple[str, ...]  # existing masks discovery matches to this image
    target: str  # where Save writes
    shared_with: tuple[str, ...]  # other images whose mask would be the same file


@dataclass(frozen=True)
class SavedMask:
    """What a save did: the mask written and the old files kept, relative to the folder."""

    mask: str
    history: tuple[str, ...]


class MaskFolder:
    """A folder of images whose masks are painted: listing, reading and saving, no HTTP.

    Raises `InputError` when `root` is not a folder.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        path = Path(root)
        if not path.is_dir():
            what = "is a file" if path.exists() else "does not exist"
            raise InputError(
                f"{path} {what}: give the folder whose images need masks (one holding images/,"
                " or images side by side).",
                reason="SOURCE_NOT_FOUND" if not path.exists() else "INVALID_SOURCE",
            )
        self.root = path.absolute()
        self._save_lock = threading.Lock()

    @property
    def split_layout(self) -> bool:
        """True for `images/` + `masks/`, False for images with `name_mask` files beside them."""
        return (self.root / "images").is_dir()

    @property
    def image_root(self) -> Path:
        return self.root / "images" if self.split_layout else self.root

    def entries(self) -> list[PaintEntry]:
        """Every image discovery finds, in its order, with its masks and its save target."""
        jobs = discover_jobs(self.root, InpaintParams())
        targets = {job.name: self._target_rel(job.name) for job in jobs}
        by_target: dict[str, list[str]] = defaultdict(list)
        for name, target in targets.items():
            by_target[target.casefold()].append(name)
        listings: dict[Path, list[str]] = {}
        entries = []
        for job in jobs:
            target = targets[job.name]
            entries.append(
                PaintEntry(
                    name=job.name,
                    image=self._rel(Path(job.image_path)),
                    masks=tuple(self._rel(p) for p in self._masks_of(job.name, listings)),
                    target=target,
                    shared_with=tuple(n for n in by_target[target.casefold()] if n != job.name),
                )
            )
        return entries

    def entry(self, name: str) -> PaintEntry:
        """The entry of image `name`; `InputError` when it is not one of the folder's images."""
        try:
            safe_join(self.image_root, name)
        except ValueError as exc:
            raise InputError(f"Image name {name!r} refused: {exc}.", reason="UNSAFE_PATH") from exc
        for entry in self.entries():
            if entry.name == name:
                return entry
        raise InputError(
            f"{name!r} is not an image of {self.image_root} (PNG, JPEG, WEBP, BMP, TIFF or GIF)."
            " Reload the page to see the folder as it is now.",
            reason="IMAGE_NOT_FOUND",
        )

    def image_payload(self, name: str) -> tuple[bytes, str]:
        """The image as the pipeline sees it (oriented, RGB), encoded for the browser.

        JPEG sources become JPEG (quality 92: only for display), the others PNG.
        """
        path = self._file(self.entry(name).image)
        image = load_image(path)
        buffer = io.BytesIO()
        if _is_jpeg(path):
            image.save(buffer, format="JPEG", quality=92)
            return buffer.getvalue(), "image/jpeg"
        image.save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue(), "image/png"

    def mask_payload(self, name: str) -> bytes:
        """The existing mask of `name` as an "L" PNG, oriented and sized like its image.

        Raises `MaskError`: `NO_MASK`, `AMBIGUOUS_MASK` (several files), `MASK_SIZE_MISMATCH`,
        or what `load_mask` reports for an unreadable file.
        """
        entry = self.entry(name)
        if not entry.masks:
            raise MaskError(
                f"{name} has no mask yet; it will be saved as {entry.target}.", reason="NO_MASK"
            )
        if len(entry.masks) > 1:
            raise MaskError(
                f"{name} has several masks ({', '.join(entry.masks)}), so the pipeline would use"
                f" none. Paint one and save: it becomes {entry.target} and the others move to"
                f" {HISTORY_DIR}/.",
                reason="AMBIGUOUS_MASK",
            )
        image_path = self._file(entry.image)
        size = load_image(image_path).size
        mask = load_mask(
            self._file(entry.masks[0]), size, image_orientation=orientation_of(image_path)
        )
        if mask.size != size:
            raise MaskError(
                f"Mask {entry.masks[0]} is {mask.size[0]}x{mask.size[1]} but {name} is"
                f" {size[0]}x{size[1]} after its EXIF orientation; the pipeline would refuse it."
                " Paint a new one: saving replaces it (the old file is kept).",
                reason="MASK_SIZE_MISMATCH",
            )
        buffer = io.BytesIO()
        mask.save(buffer, format="PNG")
        return buffer.getvalue()

    def save_mask(self, name: str, data: bytes, *, overwrite: bool = False) -> SavedMask:
        """Write the PNG `data` as the mask of `name`, keeping every older mask of it.

        Raises `MaskError`: `SHARED_MASK`, `INVALID_IMAGE_FORMAT` (not a PNG),
        `MASK_SIZE_MISMATCH`, `EMPTY_MASK`, `MASK_EXISTS` (a mask exists and `overwrite` is
        False); `InputError` for an unknown or unsafe name.
        """
        entry = self.entry(name)
        if entry.shared_with:
            others = ", ".join(entry.shared_with)
            raise MaskError(
                f"{name} and {others} would both read the mask {entry.target}, so a mask painted"
                " for one would be used for the other. Rename one of the images first.",
                reason="SHARED_MASK",
            )
        size = load_image(self._file(entry.image)).size
        png = _checked_mask_png(name, data, size)
        with self._save_lock:
            existing = self.entry(name).masks  # again, under the lock: the folder may change
            if existing and not overwrite:
                raise MaskError(
                    f"{name} already has a mask ({', '.join(existing)}). Send overwrite=true to"
                    f" replace it; the old file is kept in {HISTORY_DIR}/.",
                    reason="MASK_EXISTS",
                )
            return self._replace(entry.target, existing, png)

    # -----------------------------------------------------------------------------------------

    def _replace(self, target_rel: str, existing: tuple[str, ...], png: bytes) -> SavedMask:
        """Keep copies of the old masks, write the new one, then retire the old ones.

        In this order a crash at any point leaves the old mask or the new one in place, and
        every old file already has its copy in the history folder.
        """
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        kept = []
        for rel in existing:
            old = self._file(rel)
            copy = self._history_path(rel, stamp)
            atomic_write_bytes(copy, old.read_bytes())
            kept.append(copy.relative_to(self.root).as_posix())
        target = self._file(target_rel)
        atomic_write_bytes(target, png)
        for rel in existing:
            old = self._file(rel)
            # On a case-insensitive disk `masks/A.PNG` is the file just written.
            if old.exists() and not os.path.samefile(old, target):
                old.unlink()
        return SavedMask(mask=target_rel, history=tuple(kept))

    def _history_path(self, rel: str, stamp: str) -> Path:
        posix = PurePosixPath(rel)
        base = PurePosixPath("masks") if self.split_layout else PurePosixPath()
        inside = posix.relative_to(base) if self.split_layout else posix
        folder = base / HISTORY_DIR / inside.parent
        candidate = folder / f"{inside.stem}.{stamp}{inside.suffix}"
        n = 1
        while self._file(candidate.as_posix()).exists():
            n += 1
            candidate = folder / f"{inside.stem}.{stamp}-{n}{inside.suffix}"
        return self._file(candidate.as_posix())

    def _target_rel(self, name: str) -> str:
        posix = PurePosixPath(name)
        if self.split_layout:
            return (PurePosixPath("masks") / posix.with_suffix(".png")).as_posix()
        return posix.with_name(f"{posix.stem}{MASK_SUFFIX}.png").as_posix()

    def _masks_of(self, name: str, listings: dict[Path, list[str]]) -> list[Path]:
        """The files discovery matches to image `name` (same folder and stem, any extension)."""
        posix = PurePosixPath(name)
        if self.split_layout:
            folder, stem = self.root / "masks" / posix.parent, posix.stem
        else:
            folder, stem = self.root / posix.parent, posix.stem + MASK_SUFFIX
        if folder not in listings:
            try:
                listings[folder] = sorted(os.listdir(folder))
            except OSError:
                listings[folder] = []
        found = []
        for filename in listings[folder]:
            candidate = Path(filename)
            if (
                not filename.startswith(".")
                and candidate.suffix.lower() in IMAGE_EXTENSIONS
                and candidate.stem.casefold() == stem.casefold()
                and (folder / filename).is_file()
            ):
                found.append(folder / filename)
        return found

    def _file(self, rel: str) -> Path:
        try:
            return safe_join(self.root, rel)
        except ValueError as exc:
            raise InputError(f"{rel!r} refused: {exc}.", reason="UNSAFE_PATH") from exc

    def _rel(self, path: Path) -> str:
        return path.absolute().relative_to(self.root).as_posix()


def _is_jpeg(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            return img.format in ("JPEG", "MPO")
    except (OSError, UnidentifiedImageError):
        return False


def _checked_mask_png(name: str, data: bytes, size: tuple[int, int]) -> bytes:
    """The uploaded mask as an "L" PNG, after checking it is a PNG of exactly `size`."""
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as upload:
            if upload.size != size:  # checked before decoding: no bomb gets past this
                raise MaskError(
                    f"The mask sent for {name} is {upload.size[0]}x{upload.size[1]} but the image"
                    f" is {size[0]}x{size[1]} (after EXIF orientation). Reload the page and"
                    " paint again.",
                    reason="MASK_SIZE_MISMATCH",
                )
            upload.load()
            mask = mask_luminance(upload)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MaskError(
            f"The mask sent for {name} is not a readable PNG ({exc}).",
            reason="INVALID_IMAGE_FORMAT",
        ) from exc
    if is_empty_mask(mask):
        raise MaskError(
            f"The mask for {name} is empty (all black): nothing would be repainted, and the"
            " pipeline refuses empty masks. Paint the area to repaint first.",
            reason="EMPTY_MASK",
        )
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# HTTP


def create_app(folder: MaskFolder) -> FastAPI:
    """The painter's web app: the page, its two static files and a small JSON/PNG API."""
    app = FastAPI(title="Inpaint Flows mask painter", docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def local_only(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        host = urlsplit("//" + request.headers.get("host", "")).hostname or ""
        if not _is_loopback(host):
            return _error(400, "UNKNOWN_HOST", f"Host {host!r} refused: open the painter's URL.")
        origin = request.headers.get("origin")
        cross_origin = origin is not None and urlsplit(origin).netloc != request.headers.get("host")
        if request.method == "POST" and cross_origin:
            return _error(403, "CROSS_ORIGIN", f"POST from {origin} refused.")
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> Response:
        return _error(_STATUS_BY_REASON.get(exc.reason, 422), exc.reason, str(exc))

    @app.get("/")
    def page() -> Response:
        return Response(_static("painter.html"), media_type="text/html; charset=utf-8")

    @app.get("/static/{filename}")
    def static(filename: str) -> Response:
        if filename not in _STATIC:
            return _error(404, "NOT_FOUND", f"No file {filename!r}.")
        return Response(_static(filename), media_type=_STATIC[filename])

    @app.get("/api/images")
    def images() -> dict[str, object]:
        return {
            "folder": str(folder.root),
            "layout": "images/ + masks/" if folder.split_layout else "name + name_mask",
            "history": HISTORY_DIR,
            "images": [asdict(entry) for entry in folder.entries()],
        }

    @app.get("/api/image")
    def image(name: str) -> Response:
        body, media_type = folder.image_payload(name)
        return Response(body, media_type=media_type)

    @app.get("/api/mask")
    def mask(name: str) -> Response:
        return Response(folder.mask_payload(name), media_type="image/png")

    @app.post("/api/mask")
    async def save(request: Request, name: str, overwrite: bool = False) -> Response:
        chunks, size = [], 0
        async for chunk in request.stream():  # counted as it comes: no length header needed
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise MaskError(
                    f"The mask sent for {name} is over {MAX_UPLOAD_BYTES} bytes; a mask PNG is"
                    " far smaller. Send a PNG of the image's size.",
                    reason="UPLOAD_TOO_LARGE",
                )
            chunks.append(chunk)
        data = b"".join(chunks)
        saved = await run_in_threadpool(folder.save_mask, name, data, overwrite=overwrite)
        return JSONResponse({"mask": saved.mask, "history": list(saved.history)})

    return app


def _error(status: int, reason: str, message: str) -> Response:
    return JSONResponse({"reason": reason, "message": message}, status_code=status)


def _static(filename: str) -> bytes:
    return (resources.files("inpaint_flows") / "static" / filename).read_bytes()


def bind_loopback(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket on a loopback address; `port=0` picks a free port.

    Raises `ConfigError` for any address that is not loopback (`0.0.0.0` and a LAN address
    included) and for a port that is in use.
    """
    address = "127.0.0.1" if host == "localhost" else host
    if not _is_loopback(address):
        raise ConfigError(
            f"Host {host!r} refused: the painter writes files in your folder and has no login,"
            " so it listens on 127.0.0.1 (or ::1) only. To paint from another machine, forward"
            " the port (ssh -L 8765:127.0.0.1:8765 ...).",
            reason="NOT_LOOPBACK",
        )
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"Port {port} on {address} is in use. Pass another --port, or --port 0 for a"
                " free one.",
                reason="PORT_IN_USE",
            ) from exc
        raise
    return sock


def _is_loopback(host: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1); names are not resolved."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_of(sock: socket.socket) -> str:
    """The page's URL for a socket made by `bind_loopback`."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(
    folder: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    open_browser: bool = True,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the painter for `folder` until interrupted; `announce` is given the page's URL."""
    import uvicorn

    app = create_app(MaskFolder(folder))
    sock = bind_loopback(host, port)
    url = url_of(sock)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    announce(url)
    if open_browser:
        with contextlib.suppress(webbrowser.Error):
            webbrowser.open(url)  # the socket already listens: the first request waits for it
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
