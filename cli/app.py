"""The `inpaint-flows` command: run or check a batch, rerun its failures, serve, paint masks,
local API.

The batch options of `run` and `check` are generated from `BatchSettings` (`cli.options`), so
they cannot drift from what the flow accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, cast

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.options import RUN_ONLY, settings_from_options, with_settings_options
from cli.prefect_api import TemporaryApi, start_temporary_api
from inpaint_flows import progress
from inpaint_flows.client import DEFAULT_BASE_URL
from inpaint_flows.memory import release_large_buffers
from inpaint_flows.secrets import ENV_VAR
from inpaint_flows.settings import LOCAL_BASE_URL, BatchSettings

app = typer.Typer(
    help="Batch image inpainting through Novita AI's async API, orchestrated with Prefect.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


def _local_or_given(options: Mapping[str, Any]) -> dict[str, Any]:
    """Local mode when there is no key and no base URL: said out loud, never silent.

    Locally nothing is paced unless asked (`--ipm`): the bundled server has no limit.
    """
    fixed: dict[str, Any] = {}
    has_key = bool(os.environ.get(ENV_VAR, "").strip() or options.get("api_key_secret"))
    base_url = options.get("base_url")
    if not base_url and not has_key:
        fixed["base_url"] = LOCAL_BASE_URL
        console.print(
            f"No {ENV_VAR} set: running against the bundled local Novita-compatible server "
            "(OpenCV inpainting, no diffusion model; prompts have no effect). "
            "Set the key to use Novita."
        )
        base_url = LOCAL_BASE_URL
    elif base_url and base_url != LOCAL_BASE_URL:
        console.print(f"Using the API at {base_url}.")
    elif base_url == LOCAL_BASE_URL:
        console.print("Using the bundled local server (--base-url local).")
    else:
        console.print(f"Using Novita's API ({DEFAULT_BASE_URL}) with your key.")
    if base_url == LOCAL_BASE_URL and options.get("images_per_minute") is None:
        fixed["images_per_minute"] = None
    return fixed


def _run_flow(
    coro_factory: Callable[[], Awaitable[Any]],
    label: str,
    out: str,
    api: TemporaryApi | None = None,
) -> bool:
    """Run a flow coroutine with a progress bar; True when it ended Completed.

    `api`: the temporary Prefect server started for this command (`cli.prefect_api`), if any.
    Ctrl-C (or SIGTERM) ends with one line saying what is kept and how to resume.
    """
    previous = signal.getsignal(signal.SIGTERM)

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        with Progress(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar:
            task_id = bar.add_task("jobs", total=None)

            def listener(done: int, total: int) -> None:
                bar.update(task_id, completed=done, total=total)

            with (
                api.serving() if api else contextlib.nullcontext(),
                progress.listening(listener),
            ):
                state: Any = asyncio.run(cast(Coroutine[Any, Any, Any], coro_factory()))
    except KeyboardInterrupt:
        console.print(
            f"Interrupted. Every paid step so far is recorded in {out}/.inpaint-state; run the "
            "same command again to resume: finished jobs are skipped and tasks already "
            "submitted are polled, not paid for again."
        )
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    console.print(state.message or state.name)
    return bool(state.is_completed())


@app.callback()
def _quiet_prefect() -> None:
    """Runs before any command: this machine may be offline, so no telemetry attempts; and
    image-sized buffers go back to the OS as they are freed (memory stays flat in a batch)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    release_large_buffers()


@app.command()
@with_settings_options()
def run(
    source: Path = typer.Argument(
        ..., help="Folder (images/+masks/, or name+name_mask) or manifest (.csv/.jsonl)."
    ),
    *,
    options: Mapping[str, Any],
) -> None:
    """Inpaint a folder or manifest; writes results, report.csv/.parquet and index.html to OUT."""
    settings = settings_from_options(str(source), options, **_local_or_given(options))
    api = start_temporary_api()  # boots while the flow's modules load
    from flows.inpaint_batch import inpaint_batch

    ok = _run_flow(
        lambda: inpaint_batch(settings=settings, return_state=True),
        "inpainting",
        settings.out,
        api,
    )
    raise typer.Exit(0 if ok else 1)


@app.command()
@with_settings_options(frozenset(BatchSettings.model_fields) - RUN_ONLY)
def check(
    source: Path = typer.Argument(..., help="The folder or manifest `run` would be given."),
    *,
    options: Mapping[str, Any],
) -> None:
    """Check a batch without paying: inputs, model names, the key, what is done, the bill."""
    from inpaint_flows.check import run_check

    settings = settings_from_options(str(source), options, **_local_or_given(options))
    result = asyncio.run(run_check(settings))
    console.print(result.text())
    raise typer.Exit(0 if result.ok else 1)


@app.command("masks")
@with_settings_options(frozenset({"mask"}), nested=("masks",))
def masks_cmd(
    source: Path = typer.Argument(
        ..., help="Folder (images/+masks/, or name+name_mask) or manifest (.csv/.jsonl)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for masks/ and masks.html."),
    *,
    options: Mapping[str, Any],
) -> None:
    """Write every image's final mask to OUT/masks/ and a contact sheet OUT/masks.html.

    No API call: see the masks a run would send before paying for it. Exits 1 when an image
    has no usable mask (listed on the sheet).
    """
    from inpaint_flows.errors import InputError
    from inpaint_flows.mask_preview import write_mask_preview

    settings = settings_from_options(str(source), options)
    try:
        preview = write_mask_preview(source, out, mask=settings.mask, masks=settings.masks)
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
    poll_timeout: float | None = typer.Option(
        None, min=1, help="A longer poll budget for this rerun [default: the batch's own]."
    ),
) -> None:
    """Rerun the failed, invalid and not-submitted rows of a report and merge them into it.

    Every setting of the batch is the one saved beside the report (batch.json)."""
    if not report.is_file():
        raise typer.BadParameter(f"{report} does not exist: pass the report.csv of an earlier run.")
    api = start_temporary_api()  # boots while the flow's modules load
    from flows.inpaint_batch import rerun_failed

    ok = _run_flow(
        lambda: rerun_failed(
            report=str(report),
            api_key_secret=api_key_secret,
            poll_timeout_s=poll_timeout,
            return_state=True,
        ),
        "rerunning failed",
        str(report.parent),
        api,
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
        None, help="Secret block name for the key ('' = read NOVITA_API_KEY instead)."
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


@app.command()
def paint(
    folder: Path = typer.Argument(
        ..., help="Folder of images: images/ (+ masks/), or images side by side."
    ),
    port: int = typer.Option(0, help="Port on 127.0.0.1 [default: a free one]."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Only print the URL."),
) -> None:
    """Paint masks in the browser: a local page (127.0.0.1 only) that saves masks/<name>.png."""
    from inpaint_flows.errors import ConfigError, InputError
    from inpaint_flows.painter import serve as serve_painter

    def announce(url: str) -> None:
        console.print(f"Mask painter for {folder} at {url} (Ctrl-C stops it)", soft_wrap=True)

    try:
        serve_painter(folder, port=port, open_browser=not no_browser, announce=announce)
    except InputError as exc:
        raise typer.BadParameter(str(exc), param_hint="FOLDER") from exc
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--port'") from exc


def _mount_local_api() -> None:
    """`local-api`, whose server is imported only when it runs.

    The server's packages (FastAPI, uvicorn, OpenCV) weigh ~40 MB in a process: `run` and the
    other commands never load them. The command hands its arguments to the server's own CLI
    (`novita_local.cli`), so its options and `--help` are that CLI's.
    """

    @app.command(
        "local-api",
        help="Start the local Novita-compatible server (inpaint-flows local-api --help).",
        add_help_option=False,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def local_api(ctx: typer.Context) -> None:
        try:
            from novita_local.cli import app as local_app
        except ImportError as exc:
            console.print(
                f"The local server needs packages that are not installed ({exc.name}): "
                "pip install 'inpaint-flows[local]'."
            )
            raise typer.Exit(2) from None
        local_app(args=list(ctx.args), prog_name="inpaint-flows local-api")


_mount_local_api()
