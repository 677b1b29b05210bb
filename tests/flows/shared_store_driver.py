"""One batch run in its own process, started on a signal, for the shared-store tests.

`python -m tests.flows.shared_store_driver SOURCE OUT BASE_URL`: imports everything, prints
`ready`, waits for a line on stdin (so the test decides when each run starts), runs the batch
flow and prints one JSON line: whether the run completed, and each job's status in this run.
The ledger's messages (a job another run holds, waited for) go to stderr.
The job store is the default, or `$INPAINT_STATE_URL` (read by the run, as on a worker).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys


async def main(source: str, out: str, base_url: str) -> None:
    from inpaint_flows.models import InpaintParams
    from tests.flows.helpers import call_batch_flow

    ledger_log = logging.getLogger("inpaint_flows.ledger")
    ledger_log.setLevel(logging.INFO)
    ledger_log.addHandler(logging.StreamHandler(sys.stderr))
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    state = await call_batch_flow(
        source=source,
        out=out,
        defaults=InpaintParams(steps=1),
        base_url=base_url,
        images_per_minute=None,
        max_in_flight=2,
        check_names=False,
        return_state=True,
    )
    report = await state.result(raise_on_failure=False)
    statuses = {o.name: str(o.status) for o in getattr(report, "outcomes", [])}
    result = {"completed": state.is_completed(), "message": state.message, "statuses": statuses}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
