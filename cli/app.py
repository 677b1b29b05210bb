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
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.options import RUN_ONLY, settings_from_options, with_settings_options
from cli.prefect_api import ANALYTICS_OFF, TemporaryApi, start_temporary_api
from inpaint_flows import canary, progress
from inpaint_flows.client import DEFAULT_BASE_URL
from inpaint_flows.interrupts import heed_sigint
from inpaint_flows.locations import is_remote, parent_of
from inpaint_flows.memory import keep_memory_flat
from inpaint_flows.secrets import ENV_VAR
from inpaint_flows.settings import LOCAL_BASE_URL, BatchSettings

if TYPE_CHECKING:
    from inpaint_flows.deployments import ServeOptions

app = typer.Typer(
    help="Batch image inpainting through Novita AI's async API, orchestrated with Prefect.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


@dataclass(frozen=True)
class StartedEarly:
    """What `cli.main` started before this module was imported, handed to the commands as the
    Click context's `obj`: the temporary Prefect server (None when none was needed)."""

    api: TemporaryApi | None = None


def _temporary_api(ctx: typer.Context) -> TemporaryApi | None:
    """The server `cli.main` launched for this command, or one launched now (`app()` called
    directly, as the tests do); it boots while the flow's modules load."""
    if isinstance(ctx.obj, StartedEarly) and ctx.obj.api is not None:
        return ctx.obj.api
    return start_temporary_api()


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


async def _read_line(prompt: str, timeout_s: float) -> str | None:
    """A line typed in the terminal, or None at end of input or after `timeout_s`.

    Read in a daemon thread: a person who never answers must not keep the process alive.
    """
    loop = asyncio.get_running_loop()
    typed: asyncio.Future[str | None] = loop.create_future()

    def read() -> None:
        try:
            line: str | None = input(prompt)
        except (EOFError, OSError):
            line = None
        loop.call_soon_threadsafe(answer, line)

    def answer(line: str | None) -> None:
        if not typed.done():  # not already given up on
            typed.set_result(line)

    threading.Thread(target=read, name="canary-answer", daemon=True).start()
    try:
        return await asyncio.wait_for(typed, timeout_s)
    except TimeoutError:
        return None


def _console_decider(bar: Progress) -> canary.Decider:
    """Ask about a canary in the terminal; without one (no TTY), apply the timeout rule at once.

    A run started from a script or CI has nobody to ask: waiting would only hang it, so the
    batch's `canary_timeout_action` decides now, and says so.
    """

    async def decide(review: canary.CanaryReview) -> canary.Verdict:
        console.print(f"{review.headline()}.\nCanary gallery: {review.gallery}", soft_wrap=True)
        if not sys.stdin.isatty():
            console.print(
                "No terminal to ask (stdin is not a TTY): the canary timeout rule applies now "
                f"({review.timeout_action}). Look at the gallery, then run again with "
                "--canary 0 to run the rest (the canary is not paid twice).",
                soft_wrap=True,
            )
            return canary.Verdict("timeout", by="the command line (no terminal to ask)")
        bar.stop()
        try:
            deadline = asyncio.get_running_loop().time() + review.timeout_s
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                line = await _read_line(canary.CONSOLE_QUESTION, left)
                if line is None:
                    break
                try:
                    return canary.verdict_from_answer(line, review.defaults, "the terminal")
                except ValueError as exc:
                    console.print(str(exc), soft_wrap=True)
            console.print(f"No answer: the canary timeout rule applies ({review.timeout_action}).")
            return canary.Verdict("timeout", by="the terminal (no answer)")
        finally:
            bar.start()

    return decide


def _run_flow(
    coro_factory: Callable[[], Awaitable[Any]],
    label: str,
    out: str,
    api: TemporaryApi | None = None,
) -> bool:
    """Run a flow coroutine with a progress bar; True when it ended Completed.

    `api`: the temporary Prefect server started for this command (`cli.prefect_api`), if any.
    Ctrl-C (or SIGTERM) ends with one line saying what is kept and how to resume. A canary is
    asked about here, in the terminal, instead of in the dashboard.
    """
    heed_sigint()
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
            # Rich redraws 10 times a second by default, building the whole bar each time
            # (~1 % of a batch's CPU, measured); a count and elapsed seconds need fewer.
            refresh_per_second=2,
        ) as bar:
            task_id = bar.add_task("jobs", total=None)

            def listener(done: int, total: int) -> None:
                bar.update(task_id, completed=done, total=total)

            with (
                api.serving() if api else contextlib.nullcontext(),
                progress.listening(listener),
                canary.deciding_with(_console_decider(bar)),
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
    image-sized buffers go back to the OS as they are freed and threads share two malloc arenas
    (memory stays flat in a batch)."""
    for key, value in ANALYTICS_OFF.items():
        os.environ.setdefault(key, value)
    keep_memory_flat()


@app.command()
@with_settings_options()
def run(
    ctx: typer.Context,
    source: str = typer.Argument(
        ...,
        help="Folder (images/+masks/, or name+name_mask) or manifest (.csv/.jsonl); a folder "
        "may be in a bucket (s3://, gs://, az://).",
    ),
    *,
    options: Mapping[str, Any],
) -> None:
    """Inpaint a folder or manifest; writes results, report.csv/.parquet and index.html to OUT."""
    settings = settings_from_options(source, options, **_local_or_given(options))
    api = _temporary_api(ctx)
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
    source: str = typer.Argument(..., help="The folder or manifest `run` would be given."),
    *,
    options: Mapping[str, Any],
) -> None:
    """Check a batch without paying: inputs, model names, the key, what is done, the bill."""
    from inpaint_flows.check import run_check

    settings = settings_from_options(source, options, **_local_or_given(options))
    result = asyncio.run(run_check(settings))
    console.print(result.text())
    raise typer.Exit(0 if result.ok else 1)


@app.command("masks")
@with_settings_options(frozenset({"mask"}), nested=("masks",))
def masks_cmd(
    source: str = typer.Argument(
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

    if is_remote(source):
        raise typer.BadParameter(
            f"{source}: the mask preview reads a local folder or manifest (copy it from the "
            "bucket first); `run` and `check` take a bucket."
        )
    settings = settings_from_options(source, options)
    try:
        preview = write_mask_preview(Path(source), out, mask=settings.mask, masks=settings.masks)
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
    ctx: typer.Context,
    report: str = typer.Argument(
        ..., help="The report.csv (or .parquet) of an earlier run; it may be in a bucket."
    ),
    api_key_secret: str | None = typer.Option(
        None, help="Name of a Prefect Secret block holding the key."
    ),
    poll_timeout: float | None = typer.Option(
        None, min=1, help="A longer poll budget for this rerun [default: the batch's own]."
    ),
) -> None:
    """Rerun the failed, invalid and not-submitted rows of a report and merge them into it.

    Every setting of the batch is the one saved beside the report (batch.json)."""
    if not is_remote(report) and not Path(report).is_file():
        raise typer.BadParameter(f"{report} does not exist: pass the report.csv of an earlier run.")
    api = _temporary_api(ctx)
    from flows.inpaint_batch import rerun_failed

    ok = _run_flow(
        lambda: rerun_failed(
            report=str(report),
            api_key_secret=api_key_secret,
            poll_timeout_s=poll_timeout,
            return_state=True,
        ),
        "rerunning failed",
        parent_of(report) if is_remote(report) else str(Path(report).parent),
        api,
    )
    raise typer.Exit(0 if ok else 1)


# The overrides `serve` and `prefect-yaml` share (`inpaint_flows.deployments.ServeOptions`).
_SOURCE = typer.Option(None, help="Folder or manifest for the nightly batch (default: nightly's).")
_OUT = typer.Option(None, help="Output folder (default: nightly's).")
_CRON = typer.Option(None, help='Cron schedule, e.g. "0 2 * * *".')
_TIMEZONE = typer.Option(None, help="IANA timezone of the cron, e.g. UTC.")
_KEY_SECRET = typer.Option(
    None, help="Secret block name for the key ('' = read NOVITA_API_KEY instead)."
)
_CANARY = typer.Option(
    None,
    min=0,
    help="Each night, try this many jobs and wait for approval in the dashboard first.",
)


def _overrides(
    source: str | None,
    out: str | None,
    cron: str | None,
    timezone: str | None,
    secret: str | None,
    canary: int | None = None,
    state_url: str | None = None,
    storage_block: str | None = None,
) -> ServeOptions:
    from inpaint_flows.deployments import ServeOptions

    return ServeOptions(
        source=source or None,
        out=out or None,
        cron=cron,
        timezone=timezone,
        api_key_secret=secret,
        canary=canary,
        state_url=state_url,
        storage_block=storage_block,
    )


@app.command()
def serve(
    source: str | None = _SOURCE,
    out: str | None = _OUT,
    cron: str | None = _CRON,
    timezone: str | None = _TIMEZONE,
    api_key_secret: str | None = _KEY_SECRET,
    canary: int | None = _CANARY,
) -> None:
    """Serve the project's deployments from this process (no work pool needed).

    Paths given here are taken from the current directory.
    """
    from inpaint_flows.deploy import serve as serve_deployments

    serve_deployments(_overrides(source, out, cron, timezone, api_key_secret, canary))


@app.command("prefect-yaml")
def prefect_yaml(
    source: str | None = _SOURCE,
    out: str | None = _OUT,
    cron: str | None = _CRON,
    timezone: str | None = _TIMEZONE,
    api_key_secret: str | None = _KEY_SECRET,
    canary: int | None = _CANARY,
    state_url: str | None = typer.Option(
        None, help="Job store shared by every run: postgresql://USER@HOST/DB (no password)."
    ),
    storage_block: str | None = typer.Option(
        None, help="The bucket's credentials block for every run: aws-credentials/NAME."
    ),
    image: str | None = typer.Option(
        None,
        help="Render for a docker or Kubernetes work pool running this image "
        "(deployments/containers/Dockerfile) instead of a process pool.",
    ),
    pool: str = typer.Option("inpaint-containers", help="The container work pool's name."),
) -> None:
    """Print deployments/prefect.yaml for `prefect deploy`, rendered from the deployments'
    one definition (inpaint_flows/deployments.py), with these overrides.

    Paths given here stay relative: a worker runs every flow from the repository root (with
    --image: from the project folder inside the image).
    """
    from inpaint_flows.deployments import (
        ContainerTarget,
        deployments,
        render_prefect_yaml,
        with_options,
    )

    options = _overrides(
        source, out, cron, timezone, api_key_secret, canary, state_url, storage_block
    )
    container = ContainerTarget(image=image, pool=pool) if image else None
    typer.echo(render_prefect_yaml(with_options(deployments(), options), container), nl=False)


@app.command()
def paint(
    folder: str = typer.Argument(
        ..., help="Folder of images: images/ (+ masks/), or images side by side."
    ),
    port: int = typer.Option(0, help="Port on 127.0.0.1 (default: a free one)."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Only print the URL."),
) -> None:
    """Paint masks in the browser: a local page (127.0.0.1 only) that saves masks/<name>.png."""
    from inpaint_flows.errors import ConfigError, InputError
    from inpaint_flows.painter import serve as serve_painter

    def announce(url: str) -> None:
        console.print(f"Mask painter for {folder} at {url} (Ctrl-C stops it)", soft_wrap=True)

    if is_remote(folder):
        raise typer.BadParameter(
            f"{folder}: the painter saves masks beside local images; copy the folder from the "
            "bucket first.",
            param_hint="FOLDER",
        )
    try:
        serve_painter(Path(folder), port=port, open_browser=not no_browser, announce=announce)
    except InputError as exc:
        raise typer.BadParameter(str(exc), param_hint="FOLDER") from exc
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--port'") from exc


@app.command("crash-detection")
def crash_detection(
    within: float | None = typer.Option(
        None, help="Seconds without a heartbeat before a run is marked Crashed (default: 90)."
    ),
) -> None:
    """Create (or replace) the automation that marks a run Crashed when its heartbeats stop
    (its worker or machine died), on the Prefect server of PREFECT_API_URL."""
    from inpaint_flows.deploy import create_crash_detection

    try:
        automation = asyncio.run(create_crash_detection(within))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--within'") from None
    console.print(f"Crash detection automation {automation}: runs without heartbeats are marked.")


limits = typer.Typer(
    help="The account's images-per-minute limit, shared by every run against this Prefect "
    "server (PREFECT_API_URL).",
    no_args_is_help=True,
)
app.add_typer(limits, name="limits")
_LIMIT_NAME = typer.Option(
    None, "--name", help="The limit's name (default: one per API host, from --base-url)."
)
_LIMIT_BASE_URL = typer.Option(DEFAULT_BASE_URL, help="The API whose account this is.")


@limits.command("set")
def limits_set(
    ipm: int = typer.Option(..., "--ipm", min=1, help="The account's images per minute."),
    name: str | None = _LIMIT_NAME,
    base_url: str = _LIMIT_BASE_URL,
) -> None:
    """Record the account's limit: every run then paces to limit / runs sharing it."""
    from inpaint_flows.account import limit_name, set_limit
    from inpaint_flows.errors import ConfigError

    limit = limit_name(base_url, name)
    try:
        asyncio.run(set_limit(limit, ipm))
    except ConfigError as exc:
        console.print(str(exc))
        raise typer.Exit(2) from None
    console.print(f"Account limit {limit}: {ipm} images/min, shared by every run using it.")


@limits.command("show")
def limits_show(name: str | None = _LIMIT_NAME, base_url: str = _LIMIT_BASE_URL) -> None:
    """Print the account's limit and how many runs share it now."""
    from inpaint_flows.account import limit_name, prefect_server_configured, read_limit

    limit = limit_name(base_url, name)
    recorded = asyncio.run(read_limit(limit)) if prefect_server_configured() else None
    if recorded is None:
        console.print(f"No account limit {limit}: runs pace to their own --ipm.")
        raise typer.Exit(1)
    ipm, runs = recorded
    console.print(f"Account limit {limit}: {ipm} images/min; {runs} run(s) sharing it now.")


@limits.command("delete")
def limits_delete(name: str | None = _LIMIT_NAME, base_url: str = _LIMIT_BASE_URL) -> None:
    """Forget the account's limit: runs pace to their own --ipm again."""
    from inpaint_flows.account import delete_limit, limit_name

    limit = limit_name(base_url, name)
    found = asyncio.run(delete_limit(limit))
    console.print(f"Deleted account limit {limit}." if found else f"No account limit {limit}.")


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
