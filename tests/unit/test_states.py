"""The job state machine only moves forward."""

import pytest

from services.archiver.states import FINAL, JobStatus, next_state
from shared.events import EventType as E

S = JobStatus


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([E.ACCEPTED, E.STARTED, E.PROGRESS, E.RENDERED, E.ARCHIVED], S.COMPLETED),
        ([E.ACCEPTED, E.STARTED, E.RETRYING, E.STARTED], S.RENDERING),
        ([E.ACCEPTED, E.STARTED, E.RETRYING, E.FAILED], S.FAILED),
        ([E.REJECTED], S.REJECTED),
        ([E.ACCEPTED, E.CANCEL_REQUESTED, E.CANCELLED], S.CANCELLED),
    ],
)
def test_happy_and_unhappy_paths_reach_their_state(events: list[E], expected: S) -> None:
    state = S.SUBMITTED
    for event in events:
        state = next_state(state, event)
    assert state is expected


def test_late_started_after_rendered_does_not_move_the_job_back() -> None:
    assert next_state(S.RENDERED, E.STARTED) is S.RENDERED
    assert next_state(S.RENDERED, E.PROGRESS) is S.RENDERED
    assert next_state(S.RENDERED, E.RETRYING) is S.RENDERED


def test_archived_before_rendered_completes_and_late_rendered_is_ignored() -> None:
    state = next_state(S.RENDERING, E.ARCHIVED)
    assert state is S.COMPLETED
    assert next_state(state, E.RENDERED) is S.COMPLETED


@pytest.mark.parametrize("final", sorted(FINAL))
@pytest.mark.parametrize("event", [e for e in E if e is not E.REDRIVEN])
def test_nothing_but_a_redrive_leaves_a_final_state(final: S, event: E) -> None:
    assert next_state(final, event) is final


def test_only_a_failed_job_can_be_redriven() -> None:
    assert next_state(S.FAILED, E.REDRIVEN) is S.RETRYING
    assert next_state(S.COMPLETED, E.REDRIVEN) is S.COMPLETED
    assert next_state(S.CANCELLED, E.REDRIVEN) is S.CANCELLED


def test_rejection_cannot_undo_an_acceptance() -> None:
    assert next_state(S.ACCEPTED, E.REJECTED) is S.ACCEPTED


def test_cancel_request_alone_changes_nothing() -> None:
    assert next_state(S.RENDERING, E.CANCEL_REQUESTED) is S.RENDERING
