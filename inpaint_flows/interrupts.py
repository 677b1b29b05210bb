"""Signals a command must heed, whoever started it."""

from __future__ import annotations

import signal
import threading


def heed_sigint() -> None:
    """Make SIGINT (Ctrl-C, `kill -INT`) interrupt this command even if it inherited it ignored.

    A command started in the background of a non-interactive shell (`inpaint-flows serve &` in
    a script, a CI job started that way, and everything it starts) inherits SIGINT as ignored.
    Python then installs no KeyboardInterrupt handler, nor does asyncio, so the signal was
    dropped: `serve` kept running (and when killed instead, its deployments stayed active with
    nothing to run them); `run` went on paying for the whole batch. Servers such as uvicorn take
    SIGINT back the same way. A handler someone installed on purpose is left alone.
    """
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    ):
        signal.signal(signal.SIGINT, signal.default_int_handler)
