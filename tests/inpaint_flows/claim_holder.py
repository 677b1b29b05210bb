"""Another run, in its own process: claims one job, records "submitting", then waits.

`python -m tests.inpaint_flows.claim_holder URL KEY LEASE_S WHERE RENEW_S`: WHERE is `here`
(this machine's process identity, so a dead holder is recognised at once) or `elsewhere` (as if
on another machine: only the lease decides). It prints `held` once the claim and the entry are
committed, then waits for a line on stdin (or its death); given one, it records "submitted" and
prints `recorded`, or the error's class name if it cannot.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

from inpaint_flows.errors import StoreError
from inpaint_flows.holders import Holder
from inpaint_flows.ledger import Ledger, LedgerEntry
from inpaint_flows.store_location import StoreLocation, parse_state_url


async def main(url: str, key: str, lease_s: float, where: str, renew_s: float) -> None:
    holder = Holder.this_process()
    if where == "elsewhere":
        holder = Holder(id=uuid.uuid4().hex, label="host elsewhere pid 1", process=None)
    location = StoreLocation(url=parse_state_url(url))
    async with (
        Ledger.open(location, holder=holder, lease_s=lease_s, renew_every_s=renew_s) as ledger,
        ledger.claim(key, "held.png"),
    ):
        entry = LedgerEntry(job_key=key, name="held.png", state="submitting", submits=1)
        await ledger.put(entry)
        print("held", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        try:
            await ledger.put(entry.evolve(state="submitted", task_id="from-the-holder"))
            print("recorded", flush=True)
        except StoreError as exc:
            print(type(exc).__name__, flush=True)


if __name__ == "__main__":
    url, key, lease, where, renew = sys.argv[1:6]
    asyncio.run(main(url, key, float(lease), where, float(renew)))
