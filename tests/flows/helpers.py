"""Read the local server's own counters: what the API really saw, per job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from novita_local.server import LocalServer


@dataclass(frozen=True)
class JobCounts:
    stats: dict[str, Any]

    @property
    def submits_per_job(self) -> list[int]:
        """Accepted (paid) submissions per distinct request content, sorted."""
        by_hash = self.stats["submissions"]["by_content_hash"].values()
        return sorted(int(c["accepted"]) for c in by_hash)

    @property
    def total_submits(self) -> int:
        return int(self.stats["submissions"]["accepted"])

    @property
    def total_polls(self) -> int:
        return int(self.stats["polls"]["total"])

    @property
    def total_downloads(self) -> int:
        return int(self.stats["downloads"]["total"])

    def polls_for(self, task_id: str) -> int:
        return int(self.stats["polls"]["by_task"].get(task_id, 0))

    def downloads_for(self, task_id: str) -> int:
        return int(self.stats["downloads"]["by_task"].get(task_id, 0))


def job_counts(server: LocalServer) -> JobCounts:
    return JobCounts(httpx.get(f"{server.base_url}/_local/stats", timeout=10).json())


async def call_batch_flow(**kwargs: Any) -> Any:
    """`inpaint_batch` called with the batch's settings as keywords, as tests write them.

    Keywords that are flow parameters (`only`, `merge_report`, `return_state`) go to the flow;
    every other one is a `BatchSettings` field, validated by the model.
    """
    from flows.inpaint_batch import inpaint_batch
    from inpaint_flows.settings import BatchSettings

    flow_keys = ("only", "merge_report", "return_state")
    flow_args = {k: kwargs.pop(k) for k in flow_keys if k in kwargs}
    return await inpaint_batch(settings=BatchSettings(**kwargs), **flow_args)
