"""`local-api`: run the Novita-compatible server in the foreground.

    inpaint-flows local-api --port 8765 --ipm 10 --latency 1-3 --fail-rate 0.1 --seed 7
    inpaint-flows local-api --profile helpful        # eta, timings and Retry-After, any model

The project CLI mounts `local_api` as its `local-api` command; `app` runs it on its own
(`python -m novita_local.cli`). The API key can come from `--api-key` or the environment variable
NOVITA_LOCAL_API_KEY; it is never printed or logged.
"""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from novita_local.app import create_app
from novita_local.config import AuthStatus, Profile, ServerConfig, parse_latency
from novita_local.server import uvicorn_config

app = typer.Typer(add_completion=False, help="Run a local Novita-compatible inpainting API.")

Rate = Annotated[float, typer.Option(min=0.0, max=1.0)]


def local_api(
    profile: Annotated[
        Profile,
        typer.Option(
            help="novita: answer as Novita's docs show (eta/progress 0, no timings, no "
            "Retry-After, model names checked, sides <= 2048 px). helpful: richer answers."
        ),
    ] = "novita",
    port: Annotated[int, typer.Option(help="TCP port (0 = any free port).")] = 8765,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="NOVITA_LOCAL_API_KEY",
            show_default=False,
            help="Require `Authorization: Bearer <key>`; default: accept any key.",
        ),
    ] = None,
    auth_status: Annotated[
        AuthStatus,
        typer.Option(help="Status of a refused key: 403 (wrong key; missing: 400) or 401 (both)."),
    ] = 403,
    ipm: Annotated[
        int | None, typer.Option(min=1, help="Images per minute (Novita: 10). Default: no limit.")
    ] = None,
    ipm_window: Annotated[
        float,
        typer.Option(
            min=1.0, help="Seconds the ipm limit is counted over (shorter: ipm x window / 60)."
        ),
    ] = 60.0,
    latency: Annotated[
        str, typer.Option(help="Simulated seconds per task: 2.5, or a range 1-3.")
    ] = "0",
    workers: Annotated[int, typer.Option(min=1, help="Tasks processed at once.")] = 2,
    fail_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of tasks that end FAILED.")
    ] = 0.0,
    corrupt_image_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of tasks whose files are truncated.")
    ] = 0.0,
    submit_429_rate: Rate = 0.0,
    submit_500_rate: Rate = 0.0,
    submit_503_rate: Rate = 0.0,
    drop_submit_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of submits answered by a closed socket.")
    ] = 0.0,
    drop_after_create: Annotated[
        bool, typer.Option(help="Drop submits after creating their task (not before).")
    ] = False,
    result_500_rate: Rate = 0.0,
    result_429_rate: Rate = 0.0,
    drop_poll_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of polls answered by a closed socket.")
    ] = 0.0,
    max_side: Annotated[
        int | None,
        typer.Option(
            min=0,
            show_default=False,
            help="Largest width/height in pixels (0 = no limit). Default: 2048 under novita, "
            "none under helpful.",
        ),
    ] = None,
    balance: Annotated[
        int | None,
        typer.Option(
            min=0,
            show_default=False,
            help="Images the account can pay for; then 400 BILLING_BALANCE_NOT_ENOUGH. "
            "Default: unlimited.",
        ),
    ] = None,
    moderation_rate: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Share of input images refused 400 ILLEGAL_IMAGE_CONTENT."
        ),
    ] = 0.0,
    unknown_status_rate: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Share of polls of a running task answered TASK_STATUS_UNKNOWN."
        ),
    ] = 0.0,
    seed: Annotated[
        int | None, typer.Option(help="Seed for faults, random seeds and latencies.")
    ] = None,
    image_url_ttl: Annotated[
        int, typer.Option(min=0, help="Seconds a result URL stays valid.")
    ] = 3600,
    max_body_mb: Annotated[
        float, typer.Option(min=0.001, help="Largest request body, in MiB.")
    ] = 96.0,
    request_timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds allowed per request, upload included.")
    ] = 60.0,
    access_log: Annotated[bool, typer.Option(help="Log one line per request.")] = True,
) -> None:
    """Serve Novita's async inpainting API locally, with real (OpenCV) inpainting."""
    try:
        config = ServerConfig(
            profile=profile,
            host=host,
            port=port,
            api_key=api_key or None,
            auth_status=auth_status,
            ipm=ipm,
            ipm_window_s=ipm_window,
            latency=parse_latency(latency),
            workers=workers,
            task_fail_rate=fail_rate,
            corrupt_image_rate=corrupt_image_rate,
            submit_429_rate=submit_429_rate,
            submit_500_rate=submit_500_rate,
            submit_503_rate=submit_503_rate,
            drop_submit_rate=drop_submit_rate,
            drop_after_create=drop_after_create,
            result_500_rate=result_500_rate,
            result_429_rate=result_429_rate,
            drop_poll_rate=drop_poll_rate,
            seed=seed,
            image_url_ttl=image_url_ttl,
            max_side=max_side,
            balance=balance,
            moderation_rate=moderation_rate,
            unknown_status_rate=unknown_status_rate,
            max_body_bytes=int(max_body_mb * 1024 * 1024),
            request_timeout=request_timeout,
            access_log=access_log,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    serve(config)


def serve(config: ServerConfig) -> None:
    """Run until Ctrl-C, printing where to point a client (never the key)."""
    web_app = create_app(config)
    console = Console(stderr=True)
    shown_host = f"[{config.host}]" if ":" in config.host else config.host
    auth = "required (Bearer key set)" if config.api_key else "any key accepted"
    console.print(
        f"Novita-compatible local API on http://{shown_host}:{config.port}  "
        f"(profile: {config.profile}; auth: {auth}; fault seed: {web_app.state.local.faults.seed})"
    )
    server = uvicorn.Server(
        uvicorn_config(web_app, config, log_config=uvicorn.config.LOGGING_CONFIG, log_level="info")
    )
    server.run()


app.command("local-api")(local_api)


if __name__ == "__main__":
    app()
