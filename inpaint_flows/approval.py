"""The canary's approval in the Prefect dashboard: a resume form, and a pause with a deadline.

The run pauses (`pause_flow_run` with `wait_for_input`): the dashboard shows the run as Paused
with a Resume button that opens `CanaryDecision` as a form, prefilled with the batch's request
defaults, under the canary's summary. Resuming through the API does the same:
`PrefectClient.resume_flow_run(id, run_input={"action": "approve", "defaults": {...}})`.

Why pause and not suspend: a suspended run's process exits and, at its deadline, nothing is left
to write the report (Prefect fails the run only when someone later tries to resume it). A pause
keeps the process and enforces the timeout rule itself.

The deadline is ours, not Prefect's: Prefect's pause timeout ends a run Failed with its own
message and refuses any later state, so the report could not be written. The pause is asked
with a later Prefect deadline (`PAUSE_GRACE_S`); at ours the run leaves the pause itself
(proposing Running), unless someone answered in the meantime.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Literal
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.flow_runs import apause_flow_run
from prefect.input import RunInput
from prefect.input.actions import aread_flow_run_input
from prefect.input.run_input import keyset_from_base_key
from prefect.states import Running, State
from prefect.utilities.engine import propose_state
from pydantic import Field, create_model

from inpaint_flows.canary import (
    PAUSE_GRACE_S,
    PAUSE_KEY,
    CanaryReview,
    Verdict,
    action_help,
    review_markdown,
)
from inpaint_flows.models import InpaintParams

# The keyset Prefect derives for a pause named "Paused" with our key
# (`prefect.input.run_input.keyset_from_paused_state`).
KEYSET = keyset_from_base_key(f"paused-{PAUSE_KEY}")


ActionChoice = Literal["approve", "cancel"]


class CanaryDecision(RunInput):
    """Approve the rest of the batch, maybe with other request defaults, or cancel it."""

    action: ActionChoice = Field(
        description="approve: run the rest of the batch. cancel: send nothing more (the rest "
        "is reported not-submitted)."
    )
    defaults: InpaintParams = Field(
        default_factory=InpaintParams,
        description="Request defaults for the rest. Change a field to redo the canary jobs "
        "whose request it changes (unchanged jobs are not paid again).",
    )


def decision_form(review: CanaryReview) -> type[CanaryDecision]:
    """The form for this canary: its summary above, the batch's defaults prefilled.

    The summary is also the `action` field's help: Prefect 3.9's dashboard renders the form's
    description in a box of zero height (the markdown is in the page, but nobody sees it), while
    field help shows.
    """
    prefilled = CanaryDecision.with_initial_data(
        description=review_markdown(review), defaults=review.defaults
    )
    form = create_model(
        "CanaryDecision",
        __base__=prefilled,
        action=(ActionChoice, Field(description=action_help(review))),
    )
    form._description = prefilled._description
    return form


def poll_interval_s(timeout_s: float) -> int:
    """How often the paused run asks whether it was resumed: every 10 s, sooner for short
    deadlines (Prefect takes whole seconds)."""
    return max(1, min(10, math.floor(timeout_s / 30)))


async def ask_dashboard(review: CanaryReview) -> Verdict:
    """Pause the current flow run until the form is answered, the run is cancelled from the
    dashboard, or `review.timeout_s` passes."""
    form = decision_form(review)
    interval = poll_interval_s(review.timeout_s)
    pause = asyncio.ensure_future(
        asyncio.wait_for(
            apause_flow_run(
                form,
                timeout=math.ceil(review.timeout_s + PAUSE_GRACE_S),
                poll_interval=interval,
                key=PAUSE_KEY,
            ),
            review.timeout_s,
        )
    )
    cancel_pressed = asyncio.ensure_future(_cancel_pressed(_run_id(), interval))
    try:
        await asyncio.wait({pause, cancel_pressed}, return_when=asyncio.FIRST_COMPLETED)
        if cancel_pressed.done() and cancel_pressed.exception() is None:
            return CANCELLED
        # Prefect's pause ends on an answer (Resume) or our deadline; a watcher that failed
        # (the API did not answer a read) leaves Cancel to be seen at the deadline.
        try:
            return _verdict(await pause)
        except TimeoutError:
            return await _leave_pause(form)
    finally:
        for waiting in (pause, cancel_pressed):
            waiting.cancel()
        await asyncio.gather(pause, cancel_pressed, return_exceptions=True)


# The dashboard's Cancel button on the paused run (where nothing killed its process, e.g. a
# local run): the run counts as cancelled and still writes its report.
CANCELLED = Verdict("cancel", by="the dashboard (its Cancel button)")


def _verdict(answer: CanaryDecision | None) -> Verdict:
    if answer is None:
        return Verdict("timeout", by="the dashboard (no answer)")
    return Verdict(answer.action, answer.defaults, by="the dashboard")


def _run_id() -> UUID:
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    return context.flow_run.id


def _is_cancelled(state: State | None) -> bool:
    return state is not None and (state.is_cancelling() or state.is_cancelled())


async def _cancel_pressed(run_id: UUID, interval_s: float) -> None:
    """Returns once the paused run is Cancelling or Cancelled. Prefect's pause only ends on
    Resume, so without this the run would sit until the canary's deadline."""
    async with get_client() as client:
        while not _is_cancelled((await client.read_flow_run(run_id)).state):
            await asyncio.sleep(interval_s)


async def _leave_pause(form: type[CanaryDecision]) -> Verdict:
    """Our deadline passed: resume the run ourselves; an answer given just now still counts,
    and so does a Cancel the watcher missed."""
    run_id = _run_id()
    async with get_client() as client:
        current = await client.read_flow_run(run_id)
        if _is_cancelled(current.state):
            return CANCELLED
        if current.state is None or not current.state.is_running():
            await propose_state(
                client,
                Running(message="Canary not answered in time: the timeout rule applies"),
                flow_run_id=run_id,
            )
    value: Any = await aread_flow_run_input(key=KEYSET["response"], flow_run_id=run_id)
    return _verdict(form(**value) if value else None)
