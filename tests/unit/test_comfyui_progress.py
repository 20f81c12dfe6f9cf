"""Overall progress from websocket messages, replayed from real transcripts."""

from __future__ import annotations

import json
from typing import Any

from services.renderer.comfyui.models import parse_ws_text
from services.renderer.comfyui.progress import (
    ProgressTracker,
    ProgressUpdate,
    nodes_to_execute,
)
from tests.unit.test_comfyui_captures import CAPTURES


def _replay(tracker: ProgressTracker, messages: list[dict[str, Any]]) -> list[ProgressUpdate]:
    updates = []
    for message in messages:
        data = message.get("data", {})
        if isinstance(data, dict) and data.get("prompt_id") not in (None, tracker.prompt_id):
            continue
        update = tracker.feed(parse_ws_text(json.dumps(message)))
        if update is not None:
            updates.append(update)
    return updates


def _workflow(history_key: str) -> dict[str, Any]:
    (entry,) = CAPTURES[history_key].values()
    workflow: dict[str, Any] = entry["prompt"][2]
    return workflow


def _percents(updates: list[ProgressUpdate]) -> list[float]:
    return [u.percent_overall for u in updates]


def test_workflow_without_sampler_progress_still_moves_from_0_to_100() -> None:
    # Capture 01: EmptyImage -> ImageBlur -> ImageScale -> SaveImage; no "progress".
    prompt_id = "7714e8d9-bfc6-440d-abd5-ba1befefc59d"
    tracker = ProgressTracker(prompt_id, nodes_to_execute(_workflow("01_history_body")))
    updates = _replay(tracker, CAPTURES["01_ws"])
    percents = _percents(updates)
    assert percents == sorted(percents), "progress must be monotonic"
    assert {25.0, 50.0, 75.0} <= set(percents)
    assert max(percents) < 100.0, "100 % only once the server says it is done"
    assert tracker.complete() == ProgressUpdate(prompt_id, None, None, None, 100.0)


def test_sampler_steps_move_the_bar_inside_a_node() -> None:
    # Capture 09: EmptyImage, then SaveImageWebsocket reporting 0..3 of 3 steps.
    prompt_id = "caa2887e-1319-4de1-b6dc-127d278e86f3"
    tracker = ProgressTracker(prompt_id, {"1", "2"})
    updates = _replay(tracker, CAPTURES["09_ws_no_flags"])
    steps = [(u.node, u.value, u.max, u.percent_overall) for u in updates if u.max == 3]
    assert ("2", 1, 3, 66.67) in steps
    assert ("2", 2, 3, 83.33) in steps


def test_fully_cached_run_reports_0_until_done() -> None:
    # Capture 02: every node served from cache; nothing left to run.
    prompt_id = "52ffdb5a-e955-432a-88ce-d843f947b33f"
    tracker = ProgressTracker(prompt_id, nodes_to_execute(_workflow("02_history_body")))
    updates = _replay(tracker, CAPTURES["02_ws"])
    assert all(u.percent_overall == 0.0 for u in updates)
    assert tracker.complete().percent_overall == 100.0


def test_repeated_progress_state_frames_do_not_repeat_updates() -> None:
    prompt_id = "7714e8d9-bfc6-440d-abd5-ba1befefc59d"
    tracker = ProgressTracker(prompt_id, nodes_to_execute(_workflow("01_history_body")))
    updates = _replay(tracker, CAPTURES["01_ws"])
    keys = [(u.node, u.value, u.max, u.percent_overall) for u in updates]
    assert len(keys) == len(set(keys))


def test_unknown_graph_moves_but_never_claims_completion() -> None:
    # Re-attached prompt: the tracker does not know how many nodes there are.
    tracker = ProgressTracker("7714e8d9-bfc6-440d-abd5-ba1befefc59d")
    percents = _percents(_replay(tracker, CAPTURES["01_ws"]))
    assert percents == sorted(percents)
    assert 0.0 < max(percents) < 100.0


def test_interrupted_run_stops_below_100() -> None:
    # Capture 07: interrupted when node 11 started, after 2 of 6 nodes.
    prompt_id = "1cfbf1f1-d462-4e88-924f-527d5e76278c"
    tracker = ProgressTracker(prompt_id, nodes_to_execute(_workflow("07_history_body")))
    percents = _percents(_replay(tracker, CAPTURES["07_ws"]))
    assert max(percents) == 33.33


def test_nodes_to_execute_uses_output_classes_when_known() -> None:
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
        "9": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    }
    # Without object_info, the dangling node 9 looks like an output.
    assert nodes_to_execute(workflow) == {"1", "2", "3", "9"}
    assert nodes_to_execute(workflow, output_classes={"SaveImage"}) == {"1", "2", "3"}
