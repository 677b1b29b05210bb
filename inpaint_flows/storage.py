"""Writing files so readers never see half of one, and joining untrusted relative paths.

A crash, a full disk or a SIGKILL in the middle of a write must leave either the old file or the
new one, never a truncated mix: the report is what a rerun reads back, and a half-written output
image or gallery looks like success to a person. So every write here goes to a temporary file in
the target's own directory (same filesystem, so the rename is atomic), is flushed and fsynced,
is renamed over the target with `os.replace`, and then the directory is fsynced so the rename
itself survives a power cut. On failure the temporary file is removed and the old target stays.

`safe_join` is for names that come from users (input file names, manifest rows): it builds a
path inside a root folder and refuses anything that would land outside it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

StrPath = str | os.PathLike[str]

# Keeps the temporary name within the usual 255-byte limit even for a long target name.
_TMP_PREFIX_MAX = 64


@contextlib.contextmanager
def atomic_writer(path: StrPath, *, durable: bool = True) -> Iterator[BinaryIO]:
    """Open a binary file that replaces `path` only when the block ends without an error.

    The parent folder is created if needed. The new file gets the old file's permissions, or
    the usual ones for a new file (0666 minus the umask), not the 0600 of a temporary file.
    `durable=False` skips both fsyncs (~2 ms each on a disk): for files that are only a cache,
    which a reader checks and remakes if a power cut damaged them. Readers still never see half
    of one.
    """
    target = Path(path)
    prefix = f".{target.name[:_TMP_PREFIX_MAX]}."
    try:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=".tmp")
    except FileNotFoundError:  # the folder is made on the first write into it, not checked at each
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.chmod(tmp, _mode_for(target))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        _fsync_dir(target.parent)


def is_temp_file_of(name: str, target_name: str) -> bool:
    """Whether the file `name` is a temporary file `atomic_writer` made for `target_name`.

    A write killed before its rename (SIGKILL, power cut) leaves that hidden file beside the
    target, never a partial target; whoever writes the target next may delete it.
    """
    prefix = f".{target_name[:_TMP_PREFIX_MAX]}."
    if not (name.startswith(prefix) and name.endswith(".tmp")):
        return False
    middle = name[len(prefix) : -len(".tmp")]
    return len(middle) == 8 and all(c.isascii() and (c.isalnum() or c == "_") for c in middle)


def atomic_write_bytes(path: StrPath, data: bytes, *, durable: bool = True) -> Path:
    """Write `data` to `path` atomically (all or nothing) and return the path."""
    with atomic_writer(path, durable=durable) as fh:
        fh.write(data)
    return Path(path)


@contextlib.contextmanager
def atomic_text_writer(path: StrPath, *, encoding: str = "utf-8") -> Iterator[TextIO]:
    """`atomic_writer` for text written piece by piece (newlines untouched): a long report or
    page is never one string in memory."""
    with atomic_writer(path) as fh:
        text = io.TextIOWrapper(fh, encoding=encoding, newline="")
        try:
            yield text
        finally:
            text.flush()
            text.detach()  # the binary file is `atomic_writer`'s to close


def atomic_write_text(path: StrPath, text: str, *, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically, encoded as given, newlines untouched."""
    return atomic_write_bytes(path, text.encode(encoding))


def safe_join(root: StrPath, relative: StrPath) -> Path:
    """`root / relative`, refusing any `relative` that would point outside `root`.

    `relative` is normalised lexically (`a/./b/../c` becomes `a/c`), so the result never holds
    `..`. Refused with ValueError: an empty path, a path naming `root` itself, an absolute path
    (or one with a drive or root on Windows), a `..` that climbs above `root` at any step, a NUL
    byte, and a path that leaves `root` through a symbolic link that already exists.
    """
    text = os.fspath(relative)
    if not text:
        raise ValueError(f"empty relative path: expected a file name inside {os.fspath(root)!r}")
    if "\x00" in text:
        raise ValueError(f"path {text!r} contains a NUL byte; rename the file")
    rel = Path(text)
    if rel.is_absolute() or rel.anchor:
        raise ValueError(
            f"path {text!r} is absolute; expected a path relative to {os.fspath(root)!r}"
        )
    parts: list[str] = []
    for part in rel.parts:
        if part == "..":
            if not parts:
                raise ValueError(
                    f"path {text!r} climbs out of {os.fspath(root)!r} with '..'; "
                    "use a path inside that folder"
                )
            parts.pop()
        elif part != ".":
            parts.append(part)
    if not parts:
        raise ValueError(f"path {text!r} names the folder {os.fspath(root)!r} itself, not a file")
    joined = Path(root).joinpath(*parts)
    if not joined.resolve().is_relative_to(Path(root).resolve()):
        raise ValueError(
            f"path {text!r} leaves {os.fspath(root)!r} through a symbolic link; "
            "remove the link or choose another folder"
        )
    return joined


def _mode_for(target: Path) -> int:
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


@functools.cache
def _umask() -> int:
    # os.umask can only be read by setting it, which races with other threads creating files;
    # Linux publishes it in /proc instead. Elsewhere assume the common default. Read once per
    # process (reading /proc at each new file was ~1/6 of a thumbnail write's cost): nothing
    # here changes the umask, and a process changing its own umask mid-run is not supported.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _fsync_dir(directory: Path) -> None:
    # Makes the rename durable. Not possible on Windows (no O_DIRECTORY); there the rename is
    # still atomic, only its durability after a power cut is not promised.
    flags = getattr(os, "O_DIRECTORY", None)
    if flags is None:
        return
    try:
        fd = os.open(directory, os.O_RDONLY | flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
