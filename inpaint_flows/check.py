"""Check a batch before paying: names against `GET /v3/model` (free), inputs, what is done.

`check_names` is the flow's first step too: a model, VAE, LoRA or embedding name the API does
not list makes every row that uses it `invalid` (`MODEL_NOT_FOUND`) before anything is sent, and
the listing call itself proves the key (a refused key stops the batch there, through the
client's halt). `inpaint-flows check` adds the per-input checks and the bill: how many requests
will be paid and how long they take at the pacing limit.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from inpaint_flows.account import limit_name, prefect_server_configured, read_limit
from inpaint_flows.batch import open_run
from inpaint_flows.client import NovitaClient
from inpaint_flows.contract import MODEL_NOT_FOUND
from inpaint_flows.endpoint import resolve_endpoint
from inpaint_flows.errors import NovitaAPIError, TransportError
from inpaint_flows.jobs import discover_jobs
from inpaint_flows.locations import use_storage_block
from inpaint_flows.models import InpaintParams, Job
from inpaint_flows.output_folder import OutputFolder
from inpaint_flows.pipeline import prepare_many
from inpaint_flows.settings import BatchSettings

# name kind -> the `filter.types` value that lists it
_KINDS = {"checkpoint": "checkpoint", "VAE": "vae", "LoRA": "lora", "embedding": "textualinversion"}


def names_used(params: InpaintParams) -> list[tuple[str, str]]:
    """(kind, name) of every model a request names."""
    used = [("checkpoint", params.model_name)]
    if params.sd_vae:
        used.append(("VAE", params.sd_vae))
    used += [("LoRA", lora.model_name) for lora in params.loras or ()]
    used += [("embedding", e.model_name) for e in params.embeddings or ()]
    return used


@dataclass(frozen=True)
class NameCheck:
    """What the API said about the names a batch uses."""

    unknown: dict[tuple[str, str], str]  # (kind, name) -> message
    skipped: str | None = None  # why the names could not be checked (then none is refused)

    def problem(self, params: InpaintParams) -> str | None:
        found = [self.unknown[k] for k in names_used(params) if k in self.unknown]
        return " ".join(found) if found else None


async def check_names(client: NovitaClient, params: Iterable[InpaintParams]) -> NameCheck:
    """Ask `GET /v3/model` about every distinct name; unknown names get a message.

    A listing the API does not offer (404, e.g. a proxy without it) skips the check rather than
    refusing every row; an error about the account (401/403) has stopped the batch through the
    client's halt, so the check ends there and every job is reported `not-submitted`.
    """
    wanted: dict[str, set[str]] = defaultdict(set)
    for p in params:
        for kind, name in names_used(p):
            wanted[kind].add(name)
    unknown: dict[tuple[str, str], str] = {}
    for kind, names in wanted.items():
        for name in sorted(names):
            try:
                listed = await client.list_models(types=_KINDS[kind], query=name)
            except NovitaAPIError as exc:
                if exc.status_code == 404:
                    return NameCheck({}, skipped=f"the API does not list models ({exc.reason})")
                if client.halt.stopped:  # e.g. the key was refused: the batch stops here
                    return NameCheck({}, skipped=f"the batch stopped ({exc.reason})")
                raise
            except TransportError as exc:  # every retry of a free call failed: nobody answers
                client.halt.unreachable(f"(listing models: {exc.message})")
                return NameCheck({}, skipped=f"the API could not be reached ({exc.reason})")
            if not any(name in _names_of(m) for m in listed):
                unknown[(kind, name)] = (
                    f"The {kind} {name!r} is not listed by the API (GET /v3/model), so every "
                    f"request naming it would be refused: use a listed name (`inpaint-flows "
                    "check` shows them) or turn the check off with --no-check-names."
                )
    return NameCheck(unknown)


def _names_of(model: dict[str, object]) -> set[str]:
    return {str(model[k]) for k in ("sd_name", "sd_name_in_api", "name") if model.get(k)}


def with_name_problems(jobs: Sequence[Job], names: NameCheck) -> list[Job]:
    """`jobs` with a `MODEL_NOT_FOUND` problem on each whose request names an unknown model."""
    out = []
    for job in jobs:
        problem = None if job.problem else names.problem(job.params)
        out.append(
            job.evolve(problem=f"{job.name}: {problem}", problem_reason=MODEL_NOT_FOUND)
            if problem
            else job
        )
    return out


@dataclass(frozen=True)
class CheckReport:
    """What `inpaint-flows check` found: nothing was paid to find it."""

    api: str
    jobs: int
    invalid: dict[str, int]  # reason -> inputs
    examples: tuple[str, ...]  # a few problem messages, for the person reading
    unknown_names: tuple[str, ...]
    names_skipped: str | None
    key_problem: str | None
    already_done: int
    in_ledger: int  # submitted earlier, not finished: polled, not paid again
    to_pay_requests: int
    to_pay_images: int
    images_per_minute: float | None
    pace: str = ""  # how the run would be paced, when not by its own limit (account's limit)

    @property
    def ok(self) -> bool:
        return not (self.invalid or self.unknown_names or self.key_problem)

    def text(self) -> str:
        lines = [f"API: {self.api}", f"Inputs: {self.jobs}"]
        if self.key_problem:
            lines.append(f"Key: REFUSED. {self.key_problem}")
        else:
            lines.append("Key: accepted (GET /v3/model answered).")
        if self.names_skipped:
            lines.append(f"Model names: not checked ({self.names_skipped}).")
        elif self.unknown_names:
            lines += ["Model names: UNKNOWN"] + [f"  - {m}" for m in self.unknown_names]
        else:
            lines.append("Model names: all listed by the API.")
        if self.invalid:
            lines.append(f"Invalid inputs: {sum(self.invalid.values())} (not sent)")
            lines += [f"  - {reason}: {n}" for reason, n in sorted(self.invalid.items())]
            lines += [f"    {m}" for m in self.examples]
        lines.append(f"Already done: {self.already_done} (skipped, nothing paid)")
        if self.in_ledger:
            lines.append(f"Submitted earlier, still to fetch: {self.in_ledger} (polled, not paid)")
        lines.append(f"To pay: {self.to_pay_requests} request(s), {self.to_pay_images} image(s)")
        if self.images_per_minute and self.to_pay_images:
            minutes = self.to_pay_images / self.images_per_minute
            lines.append(
                f"Time at {self.images_per_minute:g} images/min: about {_duration(minutes * 60)}"
                " (plus the last tasks' own duration)."
            )
        if self.pace:
            lines.append(f"Pacing: {self.pace}.")
        lines.append("Nothing was submitted or paid by this check.")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


async def run_check(settings: BatchSettings) -> CheckReport:
    """Check `settings`' batch: inputs, names and key against the API, the ledger, the bill."""
    await use_storage_block(settings.storage_block)
    output = OutputFolder(settings.out)
    try:
        return await _check(settings, output)
    finally:
        output.cleanup()


async def _check(settings: BatchSettings, output: OutputFolder) -> CheckReport:
    await asyncio.to_thread(output.check)  # a bucket that is missing or refuses us
    jobs = await asyncio.to_thread(
        discover_jobs, settings.source, settings.defaults, settings.mask, masks=settings.masks
    )
    await asyncio.to_thread(output.pull_store)  # what the last run paid for, for a bucket
    async with (
        resolve_endpoint(settings.base_url, settings.api_key_secret) as endpoint,
        open_run(settings, endpoint, output=output) as run,
    ):
        key_problem = None
        names = NameCheck({}, skipped="turned off (--no-check-names)")
        if settings.check_names:
            names = await check_names(run.client, {job.params for job in jobs})
            if run.halt.stop is not None:
                key_problem = run.halt.stop.message
        jobs = with_name_problems(jobs, names)
        records = await asyncio.to_thread(prepare_many, jobs)
        recorded = await run.ledger.get_many(s.prepared.job_key for s in records if s.prepared)
    invalid: dict[str, int] = defaultdict(int)
    examples: list[str] = []
    done = in_ledger = requests = images = 0
    for record in records:
        if record.final:
            invalid[record.reason or "INVALID_INPUT"] += 1
            if len(examples) < 5 and record.message:
                examples.append(record.message)
            continue
        assert record.prepared is not None
        entry = recorded.get(record.prepared.job_key)
        if entry is not None and run.ledger.outputs_intact(
            entry, run.output, entry.outputs_for(record.job.output_stem)
        ):
            done += 1
        elif entry is not None and entry.state == "submitted":
            in_ledger += 1
        else:
            requests += 1
            images += record.job.params.image_num
    ipm, pace = await _pace_of(endpoint.base_url, settings)
    return CheckReport(
        api=endpoint.label,
        jobs=len(jobs),
        invalid=dict(invalid),
        examples=tuple(examples),
        unknown_names=tuple(names.unknown.values()),
        names_skipped=names.skipped,
        key_problem=key_problem,
        already_done=done,
        in_ledger=in_ledger,
        to_pay_requests=requests,
        to_pay_images=images,
        images_per_minute=ipm,
        pace=pace,
    )


async def _pace_of(base_url: str, settings: BatchSettings) -> tuple[float | None, str]:
    """The pace a run would get now: its share of the account's limit when one is recorded
    (this run joining the runs sharing it), else its own `images_per_minute`."""
    if not prefect_server_configured():
        return settings.images_per_minute, ""
    name = limit_name(base_url, settings.account_limit)
    recorded = await read_limit(name)
    if recorded is None:
        return settings.images_per_minute, ""
    limit, runs = recorded
    share = limit / (runs + 1)
    return share, (
        f"the account's limit {name} ({limit} images/min) shared with {runs} running run(s)"
    )
