"""The `inpaint-flows` command: run a batch, rerun its failures, preview masks, serve deployments,
local API."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from inpaint_flows import progress
from inpaint_flows.masks import MaskSettings
from inpaint_flows.models import InpaintParams

app = typer.Typer(
    help="Batch image inpainting through Novita AI's async API, orchestrated with Prefect.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)

_D = InpaintParams()


def _params(**fields: Any) -> InpaintParams:
    """Batch defaults from CLI options; options left unset keep the model's defaults."""
    overrides = {k: v for k, v in fields.items() if v is not None}
    for key in ("loras", "embeddings"):
        if key in overrides:
            overrides[key] = json.loads(overrides[key])
    try:
        return _D.with_overrides(overrides)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _mask_settings(
    annotations: Path | None,
    labels: str | None,
    region: str | None,
    grow: int,
    shrink: int,
    feather: int,
) -> MaskSettings:
    try:
        return MaskSettings(
            annotations=str(annotations) if annotations else None,
            labels=labels,  # type: ignore[arg-type]  # split on commas by the model
            region=region,
            grow=grow,
            shrink=shrink,
            feather=feather,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


# The mask options of `run` and `masks`, declared once.
_ANNOTATIONS = typer.Option(
    None,
    "--annotations",
    help="COCO .json, YOLO labels folder, LabelMe .json file(s) or Pascal VOC .xml file(s).",
)
_LABELS = typer.Option(None, "--labels", help="Only these classes, e.g. person,car.")
_REGION = typer.Option(
    None,
    "--mask-region",
    help="A region masked on every image: bottom-right:20%x10%, bottom:12%, center:30%x20%,"
    " or x,y,w,h (px or %); join several with +.",
)
_GROW = typer.Option(0, "--mask-grow", min=0, help="Grow every mask by PX pixels.")
_SHRINK = typer.Option(0, "--mask-shrink", min=0, help="Shrink every mask by PX pixels.")
_FEATHER = typer.Option(0, "--mask-feather", min=0, help="Soft mask edge PX pixels wide.")


def _announce(base_url: str | None, api_key_secret: str | None) -> None:
    if base_url:
        console.print(f"Using the API at {base_url}.")
    elif os.environ.get("NOVITA_API_KEY") or api_key_secret:
        console.print("Using Novita's API (https://api.novita.ai) with your key.")
    else:
        console.print(
            "No NOVITA_API_KEY set: running against the bundled local Novita-compatible server "
            "(OpenCV inpainting, no diffusion model; prompts have no effect)."
        )


def _run_flow(coro_factory: Any, total_hint: str) -> bool:
    """Run a flow coroutine with a progress bar; True when it ended Completed."""
    with Progress(
        TextColumn(total_hint),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task_id = bar.add_task("jobs", total=None)

        def listener(done: int, total: int) -> None:
            bar.update(task_id, completed=done, total=total)

        with progress.listening(listener):
            state = asyncio.run(coro_factory())
    console.print(state.message or state.name)
    return bool(state.is_completed())


@app.callback()
def _quiet_prefect() -> None:
    """Runs before any command: this machine may be offline, so no telemetry attempts."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@app.command()
def run(
    source: Path = typer.Argument(
        ..., help="Folder (images/+masks/, or name+name_mask) or manifest (.csv/.jsonl)."
    ),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="Output folder."),
    mask: Path | None = typer.Option(None, help="One mask for every image."),
    annotations: Path | None = _ANNOTATIONS,
    labels: str | None = _LABELS,
    mask_region: str | None = _REGION,
    mask_grow: int = _GROW,
    mask_shrink: int = _SHRINK,
    mask_feather: int = _FEATHER,
    base_url: str | None = typer.Option(
        None, help="API base URL (default: Novita with a key, else the local server)."
    ),
    api_key_secret: str | None = typer.Option(
        None, help="Name of a Prefect Secret block holding the key."
    ),
    ipm: float | None = typer.Option(
        None, "--ipm", help="Images per minute to pace to (default 10 with a key, none locally)."
    ),
    max_in_flight: int = typer.Option(8, help="Jobs in flight at most."),
    chunk_size: int | None = typer.Option(
        None, help="Jobs per Prefect stage task (default: automatic)."
    ),
    state_dir: Path | None = typer.Option(
        None, help="Job ledger folder (default OUT/.inpaint-state)."
    ),
    poll_timeout: float = typer.Option(900.0, help="Seconds one job may wait for its remote task."),
    batch_name: str | None = typer.Option(
        None, help="Name shown in Prefect (default: the source folder's name)."
    ),
    model_name: str | None = typer.Option(
        None, "--model", help=f"Checkpoint [default: {_D.model_name}]"
    ),
    prompt: str | None = typer.Option(None, help=f"[default: {_D.prompt}]"),
    negative_prompt: str | None = typer.Option(None, help=f"[default: {_D.negative_prompt}]"),
    image_num: int | None = typer.Option(None, help=f"1..8 [default: {_D.image_num}]"),
    steps: int | None = typer.Option(None, help=f"1..100 [default: {_D.steps}]"),
    guidance_scale: float | None = typer.Option(None, help=f"1..30 [default: {_D.guidance_scale}]"),
    sampler_name: str | None = typer.Option(
        None, "--sampler", help=f"[default: {_D.sampler_name}]"
    ),
    seed: int | None = typer.Option(None, help="-1 = random [default: -1]"),
    mask_blur: int | None = typer.Option(None, help=f"0..64 [default: {_D.mask_blur}]"),
    sd_vae: str | None = typer.Option(None, help="VAE name"),
    loras: str | None = typer.Option(
        None, help='JSON, e.g. [{"model_name": "x", "strength": 0.5}]'
    ),
    embeddings: str | None = typer.Option(None, help='JSON, e.g. [{"model_name": "x"}]'),
    clip_skip: int | None = typer.Option(None, help=f"1..12 [default: {_D.clip_skip}]"),
    strength: float | None = typer.Option(None, help=f"0..1 [default: {_D.strength}]"),
    inpainting_full_res: int | None = typer.Option(
        None, "--full-res", help=f"0/1 [default: {_D.inpainting_full_res}]"
    ),
    inpainting_full_res_padding: int | None = typer.Option(
        None, "--full-res-padding", help=f"0..256 [default: {_D.inpainting_full_res_padding}]"
    ),
    inpainting_mask_invert: int | None = typer.Option(
        None, "--invert-mask", help="0/1 [default: 0]"
    ),
    initial_noise_multiplier: float | None = typer.Option(
        None, help=f"0..1.5 [default: {_D.initial_noise_multiplier}]"
    ),
    response_image_type: str | None = typer.Option(None, help="png, webp or jpeg [default: png]"),
) -> None:
    """Inpaint a folder or manifest; writes results, report.csv/.parquet and index.html to OUT."""
    from flows.inpaint_batch import inpaint_batch

    defaults = _params(
        model_name=model_name,
        prompt=prompt,
        negative_prompt=negative_prompt,
        image_num=image_num,
        steps=steps,
        guidance_scale=guidance_scale,
        sampler_name=sampler_name,
        seed=seed,
        mask_blur=mask_blur,
        sd_vae=sd_vae,
        loras=loras,
        embeddings=embeddings,
        clip_skip=clip_skip,
        strength=strength,
        inpainting_full_res=inpainting_full_res,
        inpainting_full_res_padding=inpainting_full_res_padding,
        inpainting_mask_invert=inpainting_mask_invert,
        initial_noise_multiplier=initial_noise_multiplier,
        response_image_type=response_image_type,
    )
    masks = _mask_settings(annotations, labels, mask_region, mask_grow, mask_shrink, mask_feather)
    _announce(base_url, api_key_secret)
    remote = bool(base_url or os.environ.get("NOVITA_API_KEY") or api_key_secret)
    pacing = ipm if ipm is not None else (10.0 if remote and not base_url else None)
    ok = _run_flow(
        lambda: inpaint_batch(
            source=str(source),
            out=str(out),
            defaults=defaults,
            mask=str(mask) if mask else None,
            masks=masks,
            base_url=base_url,
            api_key_secret=api_key_secret,
            max_in_flight=max_in_flight,
            images_per_minute=pacing,
            chunk_size=chunk_size,
            state_dir=str(state_dir) if state_dir else None,
            poll_timeout_s=poll_timeout,
            batch_name=batch_name,
            return_state=True,
        ),
        "inpainting",
    )
    raise typer.Exit(0 if ok else 1)


@app.command("masks")
def masks_cmd(
    source: Path = typer.Argument(
        ..., help="Folder (images/+masks/, or name+name_mask) or manifest (.csv/.jsonl)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for masks/ and masks.html."),
    mask: Path | None = typer.Option(None, help="One mask for every image."),
    annotations: Path | None = _ANNOTATIONS,
    labels: str | None = _LABELS,
    mask_region: str | None = _REGION,
    mask_grow: int = _GROW,
    mask_shrink: int = _SHRINK,
    mask_feather: int = _FEATHER,
) -> None:
    """Write every image's final mask to OUT/masks/ and a contact sheet OUT/masks.html.

    No API call: see the masks a run would send before paying for it. Exits 1 when an image
    has no usable mask (listed on the sheet).
    """
    from inpaint_flows.errors import InputError
    from inpaint_flows.mask_preview import write_mask_preview

    settings = _mask_settings(
        annotations, labels, mask_region, mask_grow, mask_shrink, mask_feather
    )
    try:
        preview = write_mask_preview(source, out, mask=mask, masks=settings)
    except InputError as exc:
        console.print(f"[red]{exc.reason}[/red]: {exc}")
        raise typer.Exit(2) from exc
    written = sum(1 for item in preview.items if item.mask_file)
    console.print(
        f"{written} of {len(preview.items)} mask(s) written to {out / 'masks'};"
        f" contact sheet: {preview.page}"
    )
    for item in preview.items:
        if item.problem:
            console.print(f"  [red]{item.reason}[/red] {item.problem}", soft_wrap=True)
    raise typer.Exit(1 if preview.problems else 0)


@app.command("rerun-failed")
def rerun_failed_cmd(
    report: Path = typer.Argument(..., help="The report.csv (or .parquet) of an earlier run."),
    api_key_secret: str | None = typer.Option(
        None, help="Name of a Prefect Secret block holding the key."
    ),
) -> None:
    """Rerun the failed and invalid rows of a report and merge the outcome into it."""
    from flows.inpaint_batch import rerun_failed

    if not report.is_file():
        raise typer.BadParameter(f"{report} does not exist: pass the report.csv of an earlier run.")
    _announce(None, api_key_secret)
    ok = _run_flow(
        lambda: rerun_failed(report=str(report), api_key_secret=api_key_secret, return_state=True),
        "rerunning failed",
    )
    raise typer.Exit(0 if ok else 1)


@app.command()
def serve(
    source: Path | None = typer.Option(
        None, help="Folder or manifest for the nightly batch [default: prefect.yaml's]."
    ),
    out: Path | None = typer.Option(None, help="Output folder [default: prefect.yaml's]."),
    cron: str | None = typer.Option(None, help='Cron schedule, e.g. "0 2 * * *".'),
    timezone: str | None = typer.Option(None, help="IANA timezone of the cron, e.g. UTC."),
    api_key_secret: str | None = typer.Option(
        None, help="Secret block name for the key ('' = NOVITA_API_KEY or the local server)."
    ),
) -> None:
    """Serve deployments/prefect.yaml's deployments from this process (no work pool needed)."""
    from inpaint_flows.deploy import ServeOptions
    from inpaint_flows.deploy import serve as serve_deployments

    serve_deployments(
        ServeOptions(
            source=str(source) if source else None,
            out=str(out) if out else None,
            cron=cron,
            timezone=timezone,
            api_key_secret=api_key_secret,
        )
    )


def _mount_local_api() -> None:
    from novita_local.cli import local_api

    app.command("local-api", help="Start the local Novita-compatible server.")(local_api)


_mount_local_api()
