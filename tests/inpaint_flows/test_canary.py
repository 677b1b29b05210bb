"""The canary's plain rules: which jobs go first, which are redone, what a silence means."""

from __future__ import annotations

import pytest

from inpaint_flows.approval import CanaryDecision, decision_form, poll_interval_s
from inpaint_flows.canary import (
    REASON_CANCELLED,
    REASON_TIMEOUT,
    CanaryReview,
    Verdict,
    changed_jobs,
    held_back,
    held_back_message,
    pick_canary,
    review_markdown,
    verdict_from_answer,
)
from inpaint_flows.models import InpaintParams, Job, JobStatus

DEFAULTS = InpaintParams(steps=1)


def job(name: str, problem: str | None = None, **params: object) -> Job:
    return Job(
        name=name,
        image_path=f"/in/{name}",
        mask_path=f"/in/masks/{name}",
        params=DEFAULTS.evolve(**params),
        output_stem=name.rsplit(".", 1)[0],
        problem=problem,
    )


def names(jobs: list[Job]) -> list[str]:
    return [j.name for j in jobs]


@pytest.mark.parametrize(
    ("total", "k", "expected"),
    [
        pytest.param(6, 3, [1, 3, 5], id="every-other"),
        pytest.param(10, 2, [2, 7], id="quarters"),
        pytest.param(100, 1, [50], id="the-middle-not-the-first"),
        pytest.param(7, 3, [1, 3, 5], id="uneven"),
    ],
)
def test_the_canary_is_spread_over_the_batch(total: int, k: int, expected: list[int]) -> None:
    jobs = [job(f"{i:03}.png") for i in range(total)]
    canary, rest = pick_canary(jobs, k)
    assert names(canary) == [f"{i:03}.png" for i in expected]
    assert names(rest) == [j.name for j in jobs if j.name not in names(canary)]
    assert pick_canary(jobs, k) == (canary, rest)  # the same canary every run


def test_inputs_known_to_be_unusable_are_never_the_canary() -> None:
    jobs = [job("a.png", problem="no mask"), job("b.png"), job("c.png"), job("d.png")]
    canary, rest = pick_canary(jobs, 1)
    assert names(canary) == ["c.png"]
    assert "a.png" in names(rest)


@pytest.mark.parametrize("k", [pytest.param(0, id="off"), pytest.param(3, id="whole-batch")])
def test_no_canary_when_off_or_as_large_as_the_batch(k: int) -> None:
    jobs = [job("a.png"), job("b.png"), job("c.png", problem="no mask")]
    assert pick_canary(jobs, k) == ([], jobs)


def test_only_canary_jobs_whose_request_changed_are_redone() -> None:
    canary = [job("a.png"), job("b.png", strength=0.5), job("c.png")]
    found_again = [
        job("a.png", strength=0.6),
        job("b.png", strength=0.5),  # its row sets strength itself
        job("c.png", strength=0.6),
        job("d.png", strength=0.6),  # not in the canary: runs with the rest anyway
    ]
    assert names(changed_jobs(canary, found_again)) == ["a.png", "c.png"]


def review(**changes: object) -> CanaryReview:
    fields: dict[str, object] = {
        "batch_name": "night",
        "outcomes": (),
        "waiting": 7,
        "gallery": "/out/canary/index.html",
        "defaults": DEFAULTS,
        "timeout_s": 600.0,
        "timeout_action": "stop",
    }
    fields.update(changes)
    return CanaryReview(**fields)  # type: ignore[arg-type]


def test_held_back_rows_are_not_submitted_and_say_why() -> None:
    cancelled = held_back_message(Verdict("cancel", by="the terminal"), review())
    silent = held_back_message(Verdict("timeout"), review())
    assert cancelled[0] == REASON_CANCELLED and "cancelled in the terminal" in cancelled[1]
    assert silent[0] == REASON_TIMEOUT and "not approved within 600 s" in silent[1]
    (row,) = held_back([job("d.png")], *silent, api="local")
    assert row.status == JobStatus.NOT_SUBMITTED
    assert row.reason == REASON_TIMEOUT
    assert row.message is not None and row.message.startswith("d.png: not sent")
    assert row.submits == 0 and row.task_id is None


def test_a_silence_follows_the_timeout_rule_and_an_answer_stays() -> None:
    assert Verdict("timeout").settled("stop").action == "timeout"
    assert Verdict("timeout").settled("approve").action == "approve"
    assert Verdict("cancel").settled("approve").action == "cancel"


def test_new_defaults_only_when_approved_with_other_values() -> None:
    other = DEFAULTS.evolve(strength=0.4)
    assert Verdict("approve", other).new_defaults(DEFAULTS) == other
    assert Verdict("approve", DEFAULTS).new_defaults(DEFAULTS) is None
    assert Verdict("cancel", other).new_defaults(DEFAULTS) is None


def test_the_review_tells_what_happens_without_an_answer() -> None:
    assert "the rest is **not sent**" in review_markdown(review())
    assert "the rest **runs**" in review_markdown(review(timeout_action="approve"))
    assert "/out/canary/index.html" in review_markdown(review())


def test_the_form_is_prefilled_with_the_batch_defaults_and_needs_a_choice() -> None:
    form = decision_form(review(defaults=DEFAULTS.evolve(prompt="a wooden table")))
    schema = form.model_json_schema()
    assert schema["required"] == ["action"]
    assert form(action="approve").defaults.prompt == "a wooden table"
    assert issubclass(form, CanaryDecision)


@pytest.mark.parametrize(
    ("timeout_s", "interval"),
    [pytest.param(3600, 10, id="hour"), pytest.param(60, 2, id="minute"), (2, 1)],
)
def test_the_pause_looks_for_an_answer_often_enough(timeout_s: float, interval: int) -> None:
    assert poll_interval_s(timeout_s) == interval


@pytest.mark.parametrize(
    ("typed", "action"),
    [
        pytest.param("a", "approve", id="a"),
        pytest.param(" Approve\n", "approve", id="word"),
        pytest.param("c", "cancel", id="c"),
        pytest.param("no", "cancel", id="no"),
    ],
)
def test_a_typed_answer_approves_or_cancels(typed: str, action: str) -> None:
    verdict = verdict_from_answer(typed, DEFAULTS, "the terminal")
    assert verdict.action == action and verdict.by == "the terminal"
    assert verdict.new_defaults(DEFAULTS) is None


def test_typed_request_fields_approve_with_new_defaults() -> None:
    verdict = verdict_from_answer('{"strength": 0.6}', DEFAULTS, "the terminal")
    assert verdict.new_defaults(DEFAULTS) == DEFAULTS.evolve(strength=0.6)


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        pytest.param("maybe", "Answer a", id="unknown-word"),
        pytest.param('{"strength": 7}', "not valid", id="out-of-range"),
        pytest.param('{"strenght": 0.5}', "not valid", id="misspelt-field"),
        pytest.param("{not json", "not valid", id="bad-json"),
    ],
)
def test_an_unreadable_answer_is_asked_again_with_why(typed: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        verdict_from_answer(typed, DEFAULTS, "the terminal")
