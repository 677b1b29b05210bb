"""The `inpaint-flows` process: what runs before the command's own modules are imported.

A command that runs a flow with no Prefect API configured needs Prefect's temporary server,
and that server's boot (~4-5 s of CPU: it imports the whole Prefect server) is the longest step
before the first submit. So this module, which imports nothing heavy, launches it first, and
the server boots while the command's modules load (`typer`, `rich`, the settings, then the
flow); the command is handed the launched server (`cli.app.StartedEarly`), not a global.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Sequence

from cli.prefect_api import start_temporary_api

# The commands that run a flow; `--help` runs none.
FLOW_COMMANDS = frozenset({"run", "rerun-failed"})


def runs_a_flow(args: Sequence[str]) -> bool:
    """True when `inpaint-flows ARGS` will run a flow (so it needs a Prefect API)."""
    return bool(args) and args[0] in FLOW_COMMANDS and not {"--help", "-h"} & set(args)


def main() -> None:
    """The `inpaint-flows` command as its own process: the early server, `app()`, a prompt exit.

    After a batch, the interpreter's own tear-down (freeing every object of the ~2,000 modules
    Prefect, pandas and SQLAlchemy bring) took 1.6-2.4 s on the 2-core machine, after every file
    was written and every exit handler had run: a wait for nothing, at the end of every run.
    So once the command is done, this does what the interpreter's exit does first, in its
    order: join the non-daemon threads and run their exit hooks (Prefect drains its log and
    event services there), run the exit handlers (the temporary server's stop, logging's
    flush), flush stdout and stderr; then the process ends with `os._exit`, skipping only the
    tear-down. Every file a command writes is closed (and, where promised, fsynced) before it
    returns. An exit with a message takes the normal exit. `app()` itself, as the tests call
    it, is unchanged.
    """
    api = start_temporary_api() if runs_a_flow(sys.argv[1:]) else None
    from cli.app import StartedEarly, app

    try:
        app(obj=StartedEarly(api))
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    if not isinstance(code, int):
        raise SystemExit(code)
    threading._shutdown()  # type: ignore[attr-defined]  # what the interpreter calls at exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
