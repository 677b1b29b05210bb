"""Every setting of a batch, defined once.

`BatchSettings` is the one definition of what a batch can be asked to do. Everything else is
derived from it:

- the flow's parameter (`flows.inpaint_batch.inpaint_batch(settings=...)`), which Prefect renders
  as a form in the dashboard;
- `batch.json`, saved whole beside the report and read back whole by rerun-failed, so a rerun
  keeps every setting of the original batch (timeouts, name, chunk size, request defaults);
- the command line's options (`cli.options`), generated from the fields: names, help, ranges;
- the deployments' parameters (`inpaint_flows.deployments`), validated against this model by a
  test.

A new setting is one field here (with `Cli(...)` metadata when its option should have another
name than the field's). No field holds a secret: the key is named by its Secret block, or read
from the environment when the run starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from sqlalchemy.engine import make_url

from inpaint_flows.locations import is_remote
from inpaint_flows.masks import MaskSettings
from inpaint_flows.models import InpaintParams
from inpaint_flows.store_location import STATE_URL_ENV, parse_state_url

# `base_url` value that asks for the bundled local server (OpenCV inpainting, no key needed).
LOCAL_BASE_URL = "local"


@dataclass(frozen=True)
class Cli:
    """Command-line option names for a field, when they differ from `--field-name`."""

    names: tuple[str, ...]
    # Shown instead of the default in `--help` (e.g. "10 with a key, none locally").
    default_help: str | None = None

    def __init__(self, *names: str, default_help: str | None = None) -> None:
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "default_help", default_help)


def _password_hidden(value: object) -> object:
    """A state URL's password replaced by `***` before anything (an error) can show it."""
    if not isinstance(value, str) or not value.strip():
        return None if isinstance(value, str) else value
    try:
        url = make_url(value.strip())
    except Exception:
        return value
    return url.render_as_string(hide_password=True) if url.password is not None else value


def _no_password_in_url(value: str | None) -> str | None:
    """A state URL is a setting, saved in batch.json and shown in the UI: never a password."""
    if value is None:
        return None
    url = parse_state_url(value)
    if url.password is not None:
        raise ValueError(
            "holds a password; a setting is saved in batch.json and shown in the Prefect UI. "
            "Leave it out (postgresql://USER@HOST/DB) and give it in PGPASSWORD or ~/.pgpass, "
            f"or give the whole URL in ${STATE_URL_ENV} instead"
        )
    return value


class BatchSettings(BaseModel):
    """What a batch is asked to do: inputs, outputs, request defaults, limits, timeouts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(
        description="Folder (images/ + masks/, or name + name_mask pairs) or manifest "
        "(.csv/.jsonl)."
    )
    out: Annotated[str, Cli("--out", "-o")] = Field(
        default="out",
        description="Output folder: results, report.csv, report.parquet, index.html, batch.json.",
    )
    defaults: InpaintParams = Field(
        default_factory=InpaintParams,
        description="Request fields for every job; manifest columns override them per row.",
    )
    mask: str | None = Field(default=None, description="One mask for every image.")
    masks: MaskSettings = Field(
        default_factory=MaskSettings,
        description="Masks drawn from annotations or a fixed region, and grow/shrink/feather "
        "applied to every mask (files included); the defaults change nothing.",
    )
    base_url: str | None = Field(
        default=None,
        description="API base URL; 'local' for the bundled server. Empty: Novita "
        "(https://api.novita.ai), which needs a key.",
    )
    api_key_secret: str | None = Field(
        default=None,
        description="NAME of a Prefect Secret block holding the key (else $NOVITA_API_KEY).",
    )
    images_per_minute: Annotated[
        float | None, Cli("--ipm", default_help="10 with a key, none locally")
    ] = Field(
        default=10.0,
        gt=0,
        description="Images per minute to pace submits to: the account's limit (None: no pacing).",
    )
    account_limit: str | None = Field(
        default=None,
        description="Name of the account's images-per-minute limit on the Prefect server "
        "(`inpaint-flows limits set`), shared by every run using it; when one is recorded it "
        "replaces --ipm. Default: one per API host.",
    )
    max_in_flight: int = Field(
        default=8, ge=1, le=1000, description="Jobs submitted and not yet downloaded, at most."
    )
    shards: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Split the batch into this many child runs of the `shard` deployment, "
        "run by the work pool's workers, then one report (a run started by a deployment on a "
        "work pool; 1: run here).",
    )
    chunk_size: int | None = Field(
        default=None,
        ge=1,
        description="Jobs per Prefect task run, for the dashboard only (default: automatic).",
    )
    state_dir: str | None = Field(
        default=None, description="Job ledger folder (default OUT/.inpaint-state)."
    )
    state_url: Annotated[
        str | None, AfterValidator(_no_password_in_url), BeforeValidator(_password_hidden)
    ] = Field(
        default=None,
        description="Job store database shared by runs on several machines: "
        "postgresql://USER@HOST[:PORT]/DB (password in PGPASSWORD or ~/.pgpass, or the whole "
        "URL in $INPAINT_STATE_URL instead). Default: $INPAINT_STATE_URL, else an SQLite file "
        "in the state folder.",
    )
    poll_timeout_s: Annotated[float, Cli("--poll-timeout")] = Field(
        default=900.0, gt=0, description="Seconds one job may wait for its remote task."
    )
    request_timeout_s: Annotated[float, Cli("--request-timeout")] = Field(
        default=60.0, gt=0, description="Seconds one HTTP request may take (connect, each read)."
    )
    batch_name: str | None = Field(
        default=None,
        description="Name shown in Prefect run names and artifact keys (default: the source "
        "folder's name).",
    )
    check_names: bool = Field(
        default=True,
        description="Check model, VAE, LoRA and embedding names against GET /v3/model (free) "
        "before paying for anything.",
    )
    canary: int = Field(
        default=0,
        ge=0,
        description="Jobs to try first (spread over the batch); then wait for approval in the "
        "dashboard (or the terminal) before paying for the rest. 0: no canary.",
    )
    canary_timeout_s: Annotated[float, Cli("--canary-timeout")] = Field(
        default=3600.0, gt=0, description="Seconds to wait for the canary's approval."
    )
    storage_block: str | None = Field(
        default=None,
        description="Prefect block with the bucket's credentials, as aws-credentials/NAME "
        "(prefect-aws). Default: the environment and the provider's usual configuration.",
    )
    gallery_link: Literal["presigned", "bucket"] = Field(
        default="presigned",
        description="For an output folder in a bucket, what the dashboard's gallery link opens: "
        "'presigned' (a page whose every link is signed, for anyone with the link until it "
        "expires) or 'bucket' (the page's own URL, for buckets served to their readers).",
    )
    gallery_link_expiry_s: Annotated[int, Cli("--gallery-link-expiry")] = Field(
        default=7 * 24 * 3600,
        ge=60,
        le=7 * 24 * 3600,
        description="Seconds a presigned gallery link stays valid (S3 allows at most 7 days).",
    )
    canary_timeout_action: Annotated[Literal["stop", "approve"], Cli("--canary-timeout-action")] = (
        Field(
            default="stop",
            description="When nobody answers in time: 'stop' (the rest is reported not-submitted, "
            "nothing more is paid; run again to be asked again) or 'approve' (run the rest).",
        )
    )

    @model_validator(mode="after")
    def _supported_together(self) -> BatchSettings:
        if self.canary and is_remote(self.out):
            raise ValueError(
                "a canary with the output folder in a bucket is not supported yet: run it "
                "without --canary, or with a local --out"
            )
        return self

    @property
    def name(self) -> str:
        """The batch's name: `batch_name`, else the source folder's name."""
        if self.batch_name:
            return self.batch_name
        if is_remote(self.source):
            return self.source.rstrip("/").rsplit("/", 1)[-1] or "batch"
        return Path(self.source).resolve().name or "batch"

    @property
    def wants_local_server(self) -> bool:
        return (self.base_url or "").strip().lower() == LOCAL_BASE_URL

    def replace(self, **changes: object) -> BatchSettings:
        """A copy with `changes`, validated like a new model (unknown fields are an error)."""
        return BatchSettings.model_validate({**self.model_dump(), **changes})
