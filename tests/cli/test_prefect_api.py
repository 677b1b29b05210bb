"""A run with no Prefect API configured: the CLI's own temporary server, started early.

What a user notices: `inpaint-flows run` works with nothing configured, starts sooner and uses
less memory, leaves no server process behind, and prints no dashboard link that leads nowhere.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from cli.main import runs_a_flow
from cli.prefect_api import (
    STARTUP_TIMEOUT_ENV,
    TemporaryApi,
    server_defaults,
    start_temporary_api,
    startup_timeout,
)
from novita_local.config import ServerConfig
from novita_local.server import LocalServer
from tests.benchmarks.bench_support import report_rows, tiny_batch
from tests.deployments.prefect_server import INPAINT_FLOWS, clean_env


@pytest.fixture
def idle_child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_a_configured_api_is_used_and_the_early_server_is_stopped_unused(
    idle_child: subprocess.Popen[bytes],
) -> None:
    api = TemporaryApi(port=1, process=idle_child)
    with (
        temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}),
        api.serving() as url,
    ):
        assert url is None
        assert PREFECT_API_URL.value() == "http://127.0.0.1:9/api"
    assert idle_child.poll() is not None  # stopped, never waited for


def test_no_server_is_started_when_the_environment_names_an_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert start_temporary_api() is None


@pytest.mark.parametrize(
    ("args", "launched"),
    [
        (["run", "photos", "--out", "out"], True),
        (["rerun-failed", "out/report.csv"], True),
        (["run", "--help"], False),
        (["check", "photos"], False),
        (["local-api"], False),
        ([], False),
    ],
)
def test_the_server_is_launched_first_only_for_commands_that_run_a_flow(
    args: list[str], launched: bool
) -> None:
    assert runs_a_flow(args) is launched


def test_the_commands_launched_early_are_commands_of_the_cli() -> None:
    import typer.main

    from cli.app import app
    from cli.main import FLOW_COMMANDS

    names = set(typer.main.get_group(app).commands)
    assert names >= FLOW_COMMANDS, "cli.main names a command the CLI does not have"


def test_nothing_heavy_is_imported_before_the_server_is_launched() -> None:
    """`cli.main` launches the server before the CLI's modules load: what it imports first
    delays the launch (httpx alone was ~0.13 s)."""
    code = "import sys, cli.main; print(sorted({'httpx', 'prefect', 'typer'} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_server_skips_what_a_one_command_server_does_not_need() -> None:
    defaults = server_defaults({})
    assert defaults["PREFECT_SERVER_REGISTER_BLOCKS_ON_START"] == "false"
    assert defaults["PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED"] == "false"
    assert defaults["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    # A user who asks for block registration (under either name) gets Prefect's memo too.
    for name in ("PREFECT_SERVER_REGISTER_BLOCKS_ON_START", "PREFECT_API_BLOCKS_REGISTER_ON_START"):
        asked = server_defaults({name: "true"})
        assert not any("BLOCK" in key for key in asked)
        assert asked["PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED"] == "false"


def test_a_busy_machine_gets_longer_than_prefects_20_s_unless_the_user_says() -> None:
    assert startup_timeout(20, {}) == 120
    assert startup_timeout(300, {}) == 300
    assert startup_timeout(20, {STARTUP_TIMEOUT_ENV: "20"}) == 20


def test_a_server_that_exits_early_is_an_error_that_says_what_to_do() -> None:
    failing = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    failing.wait()
    with pytest.raises(RuntimeError, match="set PREFECT_API_URL"):
        TemporaryApi(port=1, process=failing).wait_ready(5)


SERVER = "prefect.server.api.server"


def users_shell(home: Path) -> dict[str, str]:
    """A user's environment: no Prefect setting at all (no API URL, analytics not turned off)."""
    env = clean_env(PREFECT_HOME=str(home))
    del env["PREFECT_SERVER_ANALYTICS_ENABLED"]
    return env


def test_run_with_nothing_configured_finishes_and_leaves_no_server(tmp_path: Path) -> None:
    source = tiny_batch(tmp_path / "in", 3)
    out = tmp_path / "out"
    with LocalServer(ServerConfig(latency=0.1, workers=4)) as server:
        proc = subprocess.Popen(
            [
                *(INPAINT_FLOWS, "run", str(source), "--out", str(out)),
                *("--base-url", server.base_url, "--ipm", "100000", "--no-check-names"),
            ],
            env=users_shell(tmp_path / "prefect-home"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        watched = psutil.Process(proc.pid)
        children: dict[int, str] = {}
        most_at_once = 0  # temporary servers alive at one moment
        while proc.poll() is None:
            try:
                listed = watched.children(recursive=True)
            except psutil.Error:
                break
            for child in listed:
                # Read again each time: sampled between its fork and its exec, a child still
                # shows this command's own command line. It may have exited meanwhile.
                with contextlib.suppress(psutil.Error):
                    children[child.pid] = " ".join(child.cmdline())
            alive = [c for c in listed if c.pid in children and SERVER in children[c.pid]]
            most_at_once = max(most_at_once, len(alive))
            time.sleep(0.05)  # sampling the process tree, not waiting a fixed time
        _, stderr = proc.communicate(timeout=300)

    assert proc.returncode == 0, stderr[-3000:]
    assert [r["status"] for r in report_rows(out)] == ["succeeded"] * 3
    assert "Traceback" not in stderr
    assert "View at http" not in stderr  # no link to a UI this server does not serve
    assert "Starting temporary server" not in stderr  # Prefect did not start a second one
    assert "telemetry" not in stderr  # the server was launched with analytics off (offline)
    # The one launched first, handed to the command (relaunched on another port only if its
    # port was taken meanwhile: then the first had exited).
    assert most_at_once == 1, children
    assert not any(psutil.pid_exists(pid) for pid in children), "a server was left running"
