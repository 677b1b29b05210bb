"""Serve the project's deployments from this process: schedules run, no work pool needed.

The deployments are defined once, in `inpaint_flows/deployments.py` (prefect.yaml is rendered
from the same definitions).

    python deployments/serve.py                  # the definitions' folder, cron and timezone
    inpaint-flows serve --source DIR --cron "30 1 * * *" --timezone UTC   # the same, with overrides

Keep it running (a terminal, tmux, a systemd unit); Ctrl-C stops it and pauses its deployments
(no scheduled run is created while nothing serves them). `kill -INT PID` does the same, also for
a serve started in the background of a script (which would otherwise inherit SIGINT ignored).
It talks to the Prefect server of the current profile (`PREFECT_API_URL`). Use either this or
`prefect deploy` + a worker for a given server, not both: they register the same deployment
names.
"""

from __future__ import annotations

from inpaint_flows.deploy import serve
from inpaint_flows.deployments import ServeOptions

if __name__ == "__main__":
    serve(ServeOptions())
