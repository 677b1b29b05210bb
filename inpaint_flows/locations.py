"""Where a batch's files are: a local path, or an object-storage URL (s3://, gs://, az://).

Local paths work as they always did. A URL is reached through fsspec and the filesystem its
scheme names: S3 through s3fs, Google Cloud Storage through gcsfs, Azure through adlfs, each an
optional extra (`pip install 'inpaint-flows[s3]'`, `[gcs]`, `[azure]`).

Credentials never travel in a setting: they come from the environment or the provider's usual
configuration (`AWS_ACCESS_KEY_ID`/`AWS_PROFILE`/instance roles, `GOOGLE_APPLICATION_CREDENTIALS`,
`AZURE_STORAGE_CONNECTION_STRING`, ...), or from a Prefect block named by `--storage-block`
(`aws-credentials/NAME`, from prefect-aws), loaded when the run starts. Nothing here logs them,
and every error names the bucket and path, never a key.

This module is the one place that opens a filesystem for a URL and turns its errors (no such
bucket, access denied, extra not installed) into messages that say what to do.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

from inpaint_flows.errors import ConfigError

# The schemes a user may give, and the extra that brings each one's filesystem.
EXTRAS = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
    "adl": "azure",
}
_LOCAL = {"", "file", "local"}
WRITE_CHECK_NAME = ".inpaint-write-check"


def scheme_of(location: str | os.PathLike[str]) -> str:
    """The URL scheme of `location` ("" for a local path, Windows drive letters included)."""
    text = os.fspath(location)
    head, sep, _ = text.partition("://")
    if not sep or len(head) < 2 or not head.replace("+", "").replace("-", "").isalnum():
        return ""
    return head.lower()


def is_remote(location: str | os.PathLike[str] | None) -> bool:
    """Whether `location` is an object-storage URL rather than a path on this machine."""
    return location is not None and scheme_of(location) not in _LOCAL


def join(base: str, rel: str) -> str:
    """`base/rel` for a URL or a local path (POSIX separators in `rel`)."""
    if is_remote(base):
        return f"{base.rstrip('/')}/{rel.lstrip('/')}"
    return os.path.join(base, *rel.split("/"))


def parent_of(location: str) -> str:
    """The folder holding `location` (a URL's prefix, or a path's parent)."""
    if is_remote(location):
        return location.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(location))


def name_of(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1] if is_remote(location) else ""


def bucket_of(url: str) -> str:
    """`s3://bucket/a/b` → `s3://bucket` (what an access error is about)."""
    scheme = scheme_of(url)
    rest = url.split("://", 1)[1]
    return f"{scheme}://{rest.split('/', 1)[0]}"


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for `url`; ConfigError if this machine cannot use it.

    Options come from fsspec's configuration for the scheme (see `use_storage_block`), else each
    library reads the environment and the provider's configuration, as its own CLI would.
    """
    scheme = scheme_of(url)
    try:
        import fsspec.core

        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        extra = EXTRAS.get(scheme)
        hint = (
            f"install it with: pip install 'inpaint-flows[{extra}]'"
            if extra
            else "supported: s3://, gs://, az:// (and local paths)"
        )
        raise ConfigError(
            f"{url}: {scheme}:// cannot be used here ({exc}); {hint}.",
            reason="STORAGE_NOT_INSTALLED",
        ) from None
    return fs, path


def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)
    with translated(url):
        data: bytes = fs.cat_file(path)
    return data


def is_file(url: str) -> bool:
    fs, path = filesystem(url)
    with translated(url):
        return bool(fs.isfile(path))


def info(url: str) -> dict[str, Any] | None:
    """The object's metadata (size, ETag, ...), or None when there is no such object."""
    fs, path = filesystem(url)
    try:
        with translated(url):
            found: dict[str, Any] = fs.info(path)
    except FileNotFoundError:
        return None
    return found if found.get("type", "file") == "file" else None


def sizes_under(url: str) -> dict[str, int]:
    """{relative POSIX path: size} of every object under the prefix `url` (one listing)."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    with translated(url):
        found = fs.find(root, detail=True)
    out = {}
    for path, meta in found.items():
        rel = path[len(root) :].lstrip("/")
        if rel and meta.get("type", "file") == "file":
            out[rel] = int(meta.get("size") or 0)
    return out


def files_under(url: str) -> list[tuple[str, str]]:
    """(relative POSIX path, URL) of every object under the prefix `url`, sorted."""
    base = url.rstrip("/")
    return [(rel, f"{base}/{rel}") for rel in sorted(sizes_under(url))]


def write_bytes(url: str, data: bytes) -> None:
    """Upload `data` whole: the object appears under its name complete, or not at all."""
    fs, path = filesystem(url)
    with translated(url):
        fs.pipe_file(path, data)


def upload(local: str | os.PathLike[str], url: str) -> None:
    """Upload a local file whole (one object, visible only once complete)."""
    fs, path = filesystem(url)
    with translated(url):
        fs.put_file(os.fspath(local), path)


def download(url: str, local: str | os.PathLike[str]) -> bool:
    """Copy the object to the local file `local`; False when there is no such object."""
    fs, path = filesystem(url)
    try:
        with translated(url):
            fs.get_file(path, os.fspath(local))
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            os.unlink(local)
        return False
    return True


def sign(url: str, expires_s: int) -> str | None:
    """A URL anyone can open for `expires_s` seconds, or None if the store cannot sign one."""
    fs, path = filesystem(url)
    try:
        with translated(url):
            return str(fs.sign(path, expiration=expires_s))
    except NotImplementedError:
        return None


def public_url(url: str) -> str:
    """The plain https URL of an object (opens for readers the bucket lets in), else `url`."""
    scheme = scheme_of(url)
    rest = url.split("://", 1)[1]
    if scheme in ("s3", "s3a"):
        fs, _ = filesystem(url)
        endpoint = (
            (getattr(fs, "client_kwargs", None) or {}).get("endpoint_url")
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        if endpoint:
            return f"{endpoint.rstrip('/')}/{rest}"
        bucket, _, key = rest.partition("/")
        return f"https://{bucket}.s3.amazonaws.com/{key}"
    if scheme in ("gs", "gcs"):
        return f"https://storage.googleapis.com/{rest}"
    return url


def check_writable(url: str) -> None:
    """Write and delete a small object under `url`: the bucket exists and lets us write.

    Raises ConfigError naming the bucket; made before anything is paid for.
    """
    fs, path = filesystem(url)
    probe = f"{path.rstrip('/')}/{WRITE_CHECK_NAME}"
    with translated(url):
        fs.pipe_file(probe, b"inpaint-flows checks it can write here; safe to delete\n")
        fs.rm_file(probe)


@contextlib.contextmanager
def translated(url: str) -> Iterator[None]:
    """Storage errors as ConfigError naming the bucket and saying what to do."""
    try:
        yield
    except FileNotFoundError as exc:
        if _no_bucket(exc):
            raise ConfigError(
                f"{bucket_of(url)} does not exist (for {url}). Create the bucket, or correct "
                "the URL.",
                reason="BUCKET_NOT_FOUND",
            ) from None
        raise
    except PermissionError:
        raise ConfigError(
            f"Access to {url} was denied. Give the run credentials that may read and write "
            f"{bucket_of(url)} (environment, provider configuration, or --storage-block).",
            reason="STORAGE_ACCESS_DENIED",
        ) from None


def _no_bucket(exc: FileNotFoundError) -> bool:
    text = str(exc).lower()
    return "bucket" in text and ("not exist" in text or "nosuchbucket" in text)


def open_input(location: str | os.PathLike[str]) -> BinaryIO:
    """A readable binary file for an input: the local file, or the object read whole (one
    request; inputs are at most tens of MB and read one job at a time)."""
    if not is_remote(location):
        return open(location, "rb")
    return io.BytesIO(read_bytes(os.fspath(location)))


async def use_storage_block(slug: str | None) -> None:
    """Credentials for S3 from the Prefect block `slug` (`aws-credentials/NAME`, prefect-aws).

    They become fsspec's options for s3:// in this process (as environment variables would),
    so every read and write of the run uses them; nothing of them is logged or saved.
    """
    if not slug:
        return
    kind, _, name = slug.partition("/")
    if kind != "aws-credentials" or not name:
        raise ConfigError(
            f"--storage-block {slug!r}: give aws-credentials/NAME (a prefect-aws AwsCredentials "
            "block). For gs:// and az://, give credentials in the environment instead.",
            reason="INVALID_STORAGE_BLOCK",
        )
    try:
        from prefect_aws import AwsCredentials
    except ImportError:
        raise ConfigError(
            f"--storage-block {slug}: prefect-aws is not installed here; install it with: "
            "pip install 'inpaint-flows[s3]'",
            reason="STORAGE_NOT_INSTALLED",
        ) from None
    try:
        creds: Any = await AwsCredentials.aload(name)
    except ValueError:
        raise ConfigError(
            f"--storage-block {slug}: no such block on the Prefect server. Create it in the "
            "dashboard (Blocks → AWS Credentials) or with prefect-aws.",
            reason="STORAGE_BLOCK_NOT_FOUND",
        ) from None
    import fsspec.config

    secret = creds.aws_secret_access_key
    client_kwargs = {
        "region_name": creds.region_name,
        "endpoint_url": creds.aws_client_parameters.endpoint_url,
    }
    options: dict[str, Any] = {
        "key": creds.aws_access_key_id,
        "secret": secret.get_secret_value() if secret is not None else None,
        "token": creds.aws_session_token,
        "profile": creds.profile_name,
        "client_kwargs": {k: v for k, v in client_kwargs.items() if v},
    }
    fsspec.config.conf["s3"] = {k: v for k, v in options.items() if v}
