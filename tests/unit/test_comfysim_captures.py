"""Capture fidelity: replay every real ComfyUI capture (01-14) against comfysim.

Each test sends the captured requests to a fresh simulator and compares status
codes, content types, JSON shapes (key sets, list lengths, value types) and the
websocket transcripts (event order, types, node ids, states, queue counts) with
what the real ComfyUI 0.3.64 answered. Run-specific values (ids, timestamps,
counters) are normalised. Scenarios that needed a human on the real server
(restart) are reproduced through the simulator's control API.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from comfysim import Simulator, run_simulator
from tests.unit.comfysim_capture_tools import (
    CAPTURE_DIR,
    OBJECT_INFO_FILE,
    SHARED_CAPTURE_DIR,
    WsRecorder,
    assert_same_shape,
    assert_ws_like_capture,
    content_type,
    json_messages,
    load_capture,
    normalize,
    replay,
    strip_keys,
)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with run_simulator(root=tmp_path, render_seconds=0.01) as simulator:
        yield simulator


def _with_client(body: dict[str, Any], client_id: str | None) -> dict[str, Any]:
    body = copy.deepcopy(body)
    if client_id is None:
        body.pop("client_id", None)
    else:
        body["client_id"] = client_id
    return body


async def _post(
    http: aiohttp.ClientSession, url: str, body: Any, path: str = "/prompt"
) -> tuple[int, str, Any]:
    return await replay(http, url, {"method": "POST", "path": path, "json_body": body})


async def _get(http: aiohttp.ClientSession, url: str, path: str) -> tuple[int, str, Any]:
    return await replay(http, url, {"method": "GET", "path": path})


def _assert_reply_like(captured: dict[str, Any], status: int, ctype: str, body: Any) -> None:
    assert status == captured["status"]
    assert ctype == captured["content_type"]
    if "body" in captured:
        assert_same_shape(captured["body"], body)


def _assert_history_like(
    captured: dict[str, Any], captured_id: str, body: dict[str, Any], prompt_id: str
) -> None:
    assert list(body) == [prompt_id]
    assert_same_shape(
        normalize(captured["body"], {captured_id: "<PID>"}), normalize(body, {prompt_id: "<PID>"})
    )
    exp_entry = captured["body"][captured_id]
    entry = body[prompt_id]
    assert [m[0] for m in entry["status"]["messages"]] == [
        m[0] for m in exp_entry["status"]["messages"]
    ]
    assert entry["status"]["status_str"] == exp_entry["status"]["status_str"]
    assert entry["status"]["completed"] == exp_entry["status"]["completed"]
    assert normalize(entry["outputs"]) == normalize(exp_entry["outputs"])
    assert entry["meta"] == exp_entry["meta"]
    assert entry["prompt"][2] == exp_entry["prompt"][2]


def test_bundled_captures_match_the_shared_originals() -> None:
    if not SHARED_CAPTURE_DIR.is_dir():
        pytest.skip("shared captures folder not present")
    for bundled in CAPTURE_DIR.glob("*.json"):
        original = SHARED_CAPTURE_DIR / bundled.name
        assert json.loads(bundled.read_text()) == json.loads(original.read_text())
    original_13 = SHARED_CAPTURE_DIR / "13-object-info-full.json"
    assert json.loads(OBJECT_INFO_FILE.read_text()) == json.loads(original_13.read_text())["body"]


async def test_simulator_runs_a_model_free_graph_like_capture_01(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    cap = load_capture("01")
    async with WsRecorder(http, sim.ws_url, cap["client_id"]) as ws:
        status, ctype, body = await _post(http, sim.url, cap["post_prompt"]["request"]["json_body"])
        _assert_reply_like(cap["post_prompt"], status, ctype, body)
        await ws.wait_done(body["prompt_id"])
        assert_ws_like_capture(cap["ws_messages"], ws.messages)

    hist = cap["history_entry"]
    status, ctype, history = await _get(http, sim.url, f"/history/{body['prompt_id']}")
    assert (status, ctype) == (hist["status"], hist["content_type"])
    captured_id = cap["post_prompt"]["body"]["prompt_id"]
    _assert_history_like(hist, captured_id, history, body["prompt_id"])
    assert history[body["prompt_id"]]["prompt"][3] == {
        "extra_pnginfo": {"pipeline_job": "job-123"},
        "client_id": cap["client_id"],
    }

    images = history[body["prompt_id"]]["outputs"]["4"]["images"]
    for image, captured_view in zip(images, cap["view_responses"], strict=True):
        path = f"/view?filename={image['filename']}&subfolder=&type=output"
        async with http.get(sim.url + path) as resp:
            data = await resp.read()
            assert resp.status == captured_view["status"]
            assert content_type(resp) == captured_view["content_type"]
            assert data[:8].hex() == captured_view["body_magic_hex"]
            assert resp.headers["Content-Disposition"] == f'filename="{image["filename"]}"'


async def test_simulator_serves_identical_resubmission_from_cache_like_capture_02(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    first = load_capture("01")["post_prompt"]["request"]["json_body"]
    cap = load_capture("02")
    _, _, body1 = await _post(http, sim.url, _with_client(first, None))
    for _ in range(200):
        _, _, h1 = await _get(http, sim.url, f"/history/{body1['prompt_id']}")
        if h1:
            break
        await asyncio.sleep(0.02)
    files_before = sorted(p.name for p in sim.dirs.output_dir.iterdir())

    async with WsRecorder(http, sim.ws_url, cap["client_id"]) as ws:
        status, ctype, body = await _post(http, sim.url, cap["post_prompt"]["request"]["json_body"])
        _assert_reply_like(cap["post_prompt"], status, ctype, body)
        await ws.wait_done(body["prompt_id"])
        assert_ws_like_capture(cap["ws_messages"], ws.messages)

    _, _, history = await _get(http, sim.url, f"/history/{body['prompt_id']}")
    captured_id = cap["post_prompt"]["body"]["prompt_id"]
    _assert_history_like(cap["history_entry"], captured_id, history, body["prompt_id"])
    # history outputs point at the first run's files; no new file was written
    assert history[body["prompt_id"]]["outputs"] == h1[body1["prompt_id"]]["outputs"]
    assert sorted(p.name for p in sim.dirs.output_dir.iterdir()) == files_before


async def test_simulator_accepts_client_prompt_id_on_api_prefix_like_capture_03(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    cap = load_capture("03")
    request = cap["post_prompt"]["request"]
    assert request["path"] == "/api/prompt"
    async with WsRecorder(http, sim.ws_url.replace("/ws", "/api/ws"), cap["client_id"]) as ws:
        status, ctype, body = await replay(http, sim.url, request)
        _assert_reply_like(cap["post_prompt"], status, ctype, body)
        assert body["prompt_id"] == "job-42-7606c6b9"
        await ws.wait_done("job-42-7606c6b9")
        assert_ws_like_capture(cap["ws_messages"], ws.messages)
        for message in json_messages(ws.messages):
            if message["type"] != "status":
                assert message["data"]["prompt_id"] == "job-42-7606c6b9"

    status, ctype, history = await replay(http, sim.url, cap["history_entry"]["request"])
    assert (status, ctype) == (200, cap["history_entry"]["content_type"])
    _assert_history_like(cap["history_entry"], "job-42-7606c6b9", history, "job-42-7606c6b9")


@pytest.mark.parametrize("case", [c["case"] for c in load_capture("04")["cases"]])
async def test_simulator_answers_validation_errors_like_capture_04(
    case: str, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    cap = next(c for c in load_capture("04")["cases"] if c["case"] == case)
    # capture 04 was recorded with example.png (and corrupt_capture.png) in input/
    (sim.dirs.input_dir / "example.png").write_bytes(_tiny_png())
    recorder: WsRecorder | None = None
    request = cap["request"]
    if "json_body" in request and "client_id" in request["json_body"]:
        recorder = WsRecorder(http, sim.ws_url, request["json_body"]["client_id"])
        await recorder.connect()
    try:
        status, ctype, body = await replay(http, sim.url, request)
        assert status == cap["status"]
        assert ctype == cap["content_type"]
        if "body_text" in cap:
            assert body == cap["body_text"]
            return
        if status == 400:
            # validation replies are compared by value (tracebacks excepted)
            assert strip_keys(body, {"traceback"}) == strip_keys(cap["body"], {"traceback"})
            assert_same_shape(cap["body"], body)
            return
        assert body["node_errors"] == cap["body"]["node_errors"]
        assert_same_shape(cap["body"], body)
        assert recorder is not None
        await recorder.wait_done(body["prompt_id"])
        assert_ws_like_capture(cap["ws_messages"], recorder.messages)
        _, _, history = await _get(http, sim.url, f"/history/{body['prompt_id']}")
        _assert_history_like(
            cap["history_entry"], cap["body"]["prompt_id"], history, body["prompt_id"]
        )
        assert history[body["prompt_id"]]["prompt"][4] == ["4"]
    finally:
        if recorder is not None:
            await recorder.close()


def _tiny_png() -> bytes:
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format="PNG")
    return buf.getvalue()


async def test_simulator_answers_read_endpoints_like_capture_05(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    cap = load_capture("05")
    (sim.dirs.input_dir / "corrupt_capture.png").write_bytes(b"this is not a png at all!")
    (sim.dirs.input_dir / "example.png").write_bytes(_tiny_png())
    # give /history?max_items=1 something to show (the partially valid prompt of 04)
    partial = load_capture("04")["cases"][-1]["request"]["json_body"]
    _, _, accepted = await _post(http, sim.url, partial)
    for _ in range(200):
        _, _, done = await _get(http, sim.url, f"/history/{accepted['prompt_id']}")
        if done:
            break
        await asyncio.sleep(0.02)

    exact = {
        "GET /prompt",
        "GET /queue (idle)",
        "GET /features",
        "GET /history/{unknown id}",
        "GET /object_info/EmptyImage",
        "GET /object_info/LoadImage",
        "GET /object_info/SaveImage",
        "GET /object_info/ImageScale",
        "GET /object_info/SaveImageWebsocket",
        "GET /object_info/NoSuchNode",
        "GET /models",
        "GET /models/checkpoints",
    }
    for name, captured in cap.items():
        if name in ("_meta", "description") or "request" not in captured:
            continue
        status, ctype, body = await replay(http, sim.url, captured["request"])
        body = normalize(body, {accepted["prompt_id"]: "e7f27e05-dd66-43ac-b5b7-39fde37ed4fd"})
        assert status == captured["status"], name
        assert ctype == captured["content_type"], name
        if "body" in captured:
            assert_same_shape(captured["body"], body, f"${name}", {"traceback", "argv"})
            if name in exact:
                assert body == captured["body"], name
        else:
            assert len(body) == captured["body_bytes"], name

    summary = cap["GET /object_info (summary only)"]
    async with http.get(sim.url + "/object_info") as resp:
        assert resp.status == summary["status"]
        assert content_type(resp) == summary["content_type"]
        info = await resp.json()
    assert len(info) == summary["node_class_count"]
    assert list(info)[:10] == summary["first_10_keys"]


async def test_simulator_reports_execution_error_like_capture_06(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    cap = load_capture("06")
    form = aiohttp.FormData()
    form.add_field("image", b"this is not a png at all!", filename="corrupt_capture.png")
    form.add_field("overwrite", "true")
    async with http.post(sim.url + "/upload/image", data=form) as resp:
        assert resp.status == cap["upload"]["status"]
        assert await resp.json() == cap["upload"]["body"]

    async with WsRecorder(http, sim.ws_url, cap["client_id"]) as ws:
        status, ctype, body = await _post(http, sim.url, cap["post_prompt"]["request"]["json_body"])
        _assert_reply_like(cap["post_prompt"], status, ctype, body)
        await ws.wait_done(body["prompt_id"])
        assert_ws_like_capture(cap["ws_messages"], ws.messages)
        error = next(m for m in json_messages(ws.messages) if m["type"] == "execution_error")
    data = error["data"]
    assert data["exception_type"] == "PIL.UnidentifiedImageError"
    assert data["exception_message"].startswith("cannot identify image file '")
    assert data["exception_message"].endswith("input/corrupt_capture.png'\n")
    assert data["current_inputs"] == {"image": ["corrupt_capture.png"]}
    assert sorted(data["current_outputs"]) == ["1", "2", "3"]

    _, _, history = await _get(http, sim.url, f"/history/{body['prompt_id']}")
    captured_id = cap["post_prompt"]["body"]["prompt_id"]
    _assert_history_like(cap["history_entry"], captured_id, history, body["prompt_id"])


async def test_simulator_interrupts_at_the_next_node_like_capture_07(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    cap = load_capture("07")
    async with (
        run_simulator(root=tmp_path, render_seconds=1.8) as sim,
        WsRecorder(http, sim.ws_url, cap["client_id"]) as ws,
    ):
        status, ctype, body = await _post(http, sim.url, cap["post_prompt"]["request"]["json_body"])
        _assert_reply_like(cap["post_prompt"], status, ctype, body)
        pid = body["prompt_id"]
        await ws.wait_event("executing", node="10")

        status, ctype, queue = await _get(http, sim.url, "/queue")
        captured_queue = cap["get_queue_while_running"]
        assert (status, ctype) == (200, captured_queue["content_type"])
        assert_same_shape(captured_queue["body"], queue)
        assert queue["queue_running"][0][1] == pid

        status, ctype, reply = await _post(http, sim.url, {"prompt_id": pid}, "/interrupt")
        assert (status, ctype, reply) == (200, "", b"")
        await ws.wait_done(pid)
        assert_ws_like_capture(cap["ws_messages"], ws.messages)

        _, _, history = await _get(http, sim.url, f"/history/{pid}")
        captured_id = cap["post_prompt"]["body"]["prompt_id"]
        _assert_history_like(cap["history_entry"], captured_id, history, pid)
        interrupted = history[pid]["status"]["messages"][-1][1]
        assert interrupted["node_id"] == "11"
        assert sorted(interrupted["executed"]) == ["1", "10"]


async def test_simulator_manages_the_queue_like_capture_08(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    cap = load_capture("08")
    steps = {
        s["step"].split(" ")[1] if s["step"].startswith("submit") else s["step"]: s
        for s in cap["steps"]
    }
    async with (
        run_simulator(root=tmp_path, render_seconds=1.0) as sim,
        WsRecorder(http, sim.ws_url, cap["client_id"]) as ws,
    ):
        _, _, a = await _post(http, sim.url, steps["A"]["request"]["json_body"])
        await ws.wait_event("executing", node="10")
        _, _, b = await _post(http, sim.url, steps["B"]["request"]["json_body"])
        _, _, c = await _post(http, sim.url, steps["C"]["request"]["json_body"])
        _, _, d = await _post(http, sim.url, steps["D"]["request"]["json_body"])
        n = a["number"]
        assert (b["number"], c["number"], d["number"]) == (n + 1, n + 2, -(n + 3))

        captured = next(s for s in cap["steps"] if s["step"].startswith("GET /queue with A"))
        status, ctype, queue = await _get(http, sim.url, "/queue")
        assert (status, ctype) == (captured["status"], captured["content_type"])
        assert_same_shape(captured["body"], queue)
        # heap order, exactly as the real server: [-35, 34, 33]
        assert [item[0] for item in queue["queue_pending"]] == [-(n + 3), n + 2, n + 1]
        assert [item[0] for item in captured["body"]["queue_pending"]] == [-35, 34, 33]

        _, _, prompt_info = await _get(http, sim.url, "/prompt")
        assert prompt_info == {"exec_info": {"queue_remaining": 4}}

        for step_name, payload in (
            ("POST /queue delete [B]", {"delete": [b["prompt_id"]]}),
            ("POST /queue delete [A] (running: not affected)", {"delete": [a["prompt_id"]]}),
        ):
            captured = next(s for s in cap["steps"] if s["step"] == step_name)
            status, ctype, reply = await _post(http, sim.url, payload, "/queue")
            assert (status, ctype, len(reply)) == (200, captured["content_type"], 0)
        captured = next(s for s in cap["steps"] if s["step"] == "GET /queue after deletes")
        _, _, queue = await _get(http, sim.url, "/queue")
        assert_same_shape(captured["body"], queue)
        assert queue["queue_running"][0][1] == a["prompt_id"]

        status, ctype, reply = await _post(http, sim.url, {"clear": True}, "/queue")
        assert (status, ctype, reply) == (200, "", b"")
        captured = next(s for s in cap["steps"] if s["step"] == "GET /queue after clear")
        _, _, queue = await _get(http, sim.url, "/queue")
        assert_same_shape(captured["body"], queue)

        _, _, hist_b = await _get(http, sim.url, f"/history/{b['prompt_id']}")
        assert hist_b == {}
        await ws.wait_done(a["prompt_id"])
        _, _, hist_a = await _get(http, sim.url, f"/history/{a['prompt_id']}")
        assert hist_a[a["prompt_id"]]["status"]["status_str"] == "success"

        expected, actual = cap["ws_messages"], ws.messages
        exp_status = [
            m["data"]["status"]["exec_info"]["queue_remaining"]
            for m in json_messages(expected)
            if m["type"] == "status"
        ]
        act_status = [
            m["data"]["status"]["exec_info"]["queue_remaining"]
            for m in json_messages(actual)
            if m["type"] == "status"
        ]
        assert act_status == exp_status == [0, 1, 1, 2, 3, 4, 3, 1, 0]
        # apart from the status broadcasts (timing), the transcript is identical
        no_status_exp = [m for m in expected if m.get("msg", {}).get("type") != "status"]
        no_status_act = [m for m in actual if m.get("msg", {}).get("type") != "status"]
        assert_ws_like_capture(no_status_exp, no_status_act)


@pytest.mark.parametrize(
    "variant", ["without_feature_flags", "with_feature_flags_supports_preview_metadata"]
)
async def test_simulator_sends_progress_and_binary_previews_like_capture_09(
    variant: str, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    cap = load_capture("09")
    part = cap[variant]
    flags = variant.startswith("with_")
    if flags:
        # the captured second run found EmptyImage cached by the first one
        first = cap["without_feature_flags"]["post_prompt"]["request"]["json_body"]
        _, _, warm = await _post(http, sim.url, _with_client(first, None))
        for _ in range(200):
            _, _, h = await _get(http, sim.url, f"/history/{warm['prompt_id']}")
            if h:
                break
            await asyncio.sleep(0.02)
    async with WsRecorder(http, sim.ws_url, part["client_id"], feature_flags=flags) as ws:
        if flags:
            await ws.wait_event("feature_flags")
        status, ctype, body = await _post(
            http, sim.url, part["post_prompt"]["request"]["json_body"]
        )
        _assert_reply_like(part["post_prompt"], status, ctype, body)
        await ws.wait_done(body["prompt_id"])
        assert_ws_like_capture(part["ws_messages"], ws.messages)
        binaries = [m for m in ws.messages if m["kind"] == "binary"]
    expected_binaries = [m for m in part["ws_messages"] if m["kind"] == "binary"]
    for got, exp in zip(binaries, expected_binaries, strict=True):
        assert got["event_type"] == exp["event_type"]
        assert got["image_magic_hex"] == exp["image_magic_hex"]
        if flags:
            assert got["metadata"] == {**exp["metadata"], "prompt_id": body["prompt_id"]}
            assert got["metadata_length"] == exp["metadata_length"]
    _, _, history = await _get(http, sim.url, f"/history/{body['prompt_id']}")
    captured_id = part["post_prompt"]["body"]["prompt_id"]
    _assert_history_like(part["history_entry"], captured_id, history, body["prompt_id"])


async def test_simulator_routes_websocket_events_like_capture_10(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    cap = load_capture("10")
    async with (
        WsRecorder(http, sim.ws_url, cap["watcher_socket"]["client_id"]) as watcher,
        WsRecorder(http, sim.ws_url, cap["submitting_socket"]["client_id"]) as submitter,
    ):
        status, ctype, body = await replay(
            http, sim.url, cap["post_with_other_client_id"]["request"]
        )
        _assert_reply_like(cap["post_with_other_client_id"], status, ctype, body)
        await submitter.wait_done(body["prompt_id"])
        await watcher.wait_for(
            lambda m: (
                m.get("kind") == "json"
                and m["msg"]["type"] == "status"
                and m["msg"]["data"]["status"]["exec_info"]["queue_remaining"] == 0
                and "sid" not in m["msg"]["data"]
            )
        )

        status, ctype, body2 = await replay(http, sim.url, cap["post_without_client_id"]["request"])
        _assert_reply_like(cap["post_without_client_id"], status, ctype, body2)
        for _ in range(200):
            _, _, history = await _get(http, sim.url, f"/history/{body2['prompt_id']}")
            if history:
                break
            await asyncio.sleep(0.02)
        for recorder in (watcher, submitter):
            for _ in range(200):
                if _idle_statuses(recorder) >= 2:
                    break
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        assert_ws_like_capture(cap["watcher_socket"]["ws_messages"], watcher.messages)
        assert_ws_like_capture(cap["submitting_socket"]["ws_messages"], submitter.messages)

    captured = cap["history_without_client_id"]
    _assert_history_like(
        captured, "0d812d80-2624-4227-a245-29a092e2bacc", history, body2["prompt_id"]
    )
    assert history[body2["prompt_id"]]["prompt"][3] == {}


def _idle_statuses(recorder: WsRecorder) -> int:
    return sum(
        1
        for m in json_messages(recorder.messages)
        if m["type"] == "status"
        and "sid" not in m["data"]
        and m["data"]["status"]["exec_info"]["queue_remaining"] == 0
    )


async def test_simulator_loses_routing_for_a_reused_client_id_like_capture_11(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    cap = load_capture("11")
    client_id = cap["client_id"]
    first = WsRecorder(http, sim.ws_url, client_id)
    await first.connect()
    async with WsRecorder(http, sim.ws_url, client_id) as second:
        status, ctype, p1 = await _post(
            http, sim.url, cap["p1"]["post_prompt"]["request"]["json_body"]
        )
        _assert_reply_like(cap["p1"]["post_prompt"], status, ctype, p1)
        await second.wait_done(p1["prompt_id"])
        await first.close()
        await asyncio.sleep(0.05)

        status, ctype, p2 = await replay(http, sim.url, cap["p2_post"]["request"])
        assert (status, ctype) == (cap["p2_post"]["status"], cap["p2_post"]["content_type"])
        for _ in range(200):
            _, _, h2 = await _get(http, sim.url, f"/history/{p2['prompt_id']}")
            if h2:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        assert h2[p2["prompt_id"]]["status"]["status_str"] == cap["p2_history_status"]
        assert_ws_like_capture(cap["second_socket_messages"], second.messages)
        assert_ws_like_capture(cap["first_socket_messages"], first.messages)

    _, _, h1 = await _get(http, sim.url, f"/history/{p1['prompt_id']}")
    captured = cap["p1"]["history_entry"]
    _assert_history_like(
        captured, cap["p1"]["post_prompt"]["body"]["prompt_id"], h1, p1["prompt_id"]
    )


async def test_simulator_forgets_queue_history_and_counter_on_restart_like_capture_12(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    cap = load_capture("12")
    slow = copy.deepcopy(load_capture("07")["post_prompt"]["request"]["json_body"])
    slow.pop("client_id")
    slow["prompt"]["99"]["inputs"]["filename_prefix"] = "capture_restart"
    slow["extra_data"] = {"sim_render_seconds": 3.0}
    quick = copy.deepcopy(load_capture("01")["post_prompt"]["request"]["json_body"])
    quick["prompt"]["4"]["inputs"]["filename_prefix"] = "capture_restart"
    async with run_simulator(root=tmp_path, render_seconds=0.01) as sim:
        for _ in range(3):  # some history and a non-zero counter first
            await _post(
                http,
                sim.url,
                _with_client(load_capture("03")["post_prompt"]["request"]["json_body"], None),
            )
        _, _, a = await _post(http, sim.url, slow)
        _, _, b = await _post(http, sim.url, quick)
        assert (a["number"], b["number"]) == (3, 4)
        for _ in range(1000):
            _, _, queue = await _get(http, sim.url, "/queue")
            if queue["queue_running"] and queue["queue_running"][0][1] == a["prompt_id"]:
                break
            await asyncio.sleep(0.01)
        assert [i[1] for i in queue["queue_pending"]] == [b["prompt_id"]]
        _, _, history = await _get(http, sim.url, "/history")
        assert len(history) >= 1

        async with http.post(sim.url + "/_sim/restart", json={}) as resp:
            assert resp.status == 200

        steps = {s["step"]: s for s in cap["steps"]}
        captured = steps["GET /queue after restart"]
        status, ctype, queue = await _get(http, sim.url, "/queue")
        assert (status, ctype, queue) == (
            captured["status"],
            captured["content_type"],
            captured["body"],
        )
        captured = steps["GET /prompt after restart"]
        assert await _get(http, sim.url, "/prompt") == (
            captured["status"],
            captured["content_type"],
            captured["body"],
        )
        for pid in (a["prompt_id"], b["prompt_id"]):
            assert await _get(http, sim.url, f"/history/{pid}") == (
                200,
                "application/json; charset=utf-8",
                {},
            )
        assert (await _get(http, sim.url, "/history"))[2] == {}

        first_after = next(s for s in cap["steps"] if s["step"].startswith("first POST"))
        status, ctype, body = await _post(http, sim.url, first_after["request"]["json_body"])
        _assert_reply_like(first_after, status, ctype, body)
        assert body["number"] == first_after["body"]["number"] == 0
        assert not list(sim.dirs.output_dir.glob("capture_restart*"))


async def test_simulator_serves_the_full_object_info_like_capture_13(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    captured = json.loads(OBJECT_INFO_FILE.read_text())
    (sim.dirs.input_dir / "corrupt_capture.png").write_bytes(b"x")
    (sim.dirs.input_dir / "example.png").write_bytes(_tiny_png())
    async with http.get(sim.url + "/object_info") as resp:
        assert resp.status == 200
        assert content_type(resp) == "application/json; charset=utf-8"
        info = await resp.json()
    assert len(info) == 478
    assert list(info) == list(captured)
    assert info == captured  # same input files, no models: identical to the real reply
    async with http.get(sim.url + "/api/object_info/KSampler") as resp:
        assert await resp.json() == {"KSampler": captured["KSampler"]}


async def test_simulator_rejects_txt2img_with_missing_model_like_capture_14(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    cap = load_capture("14")
    status, ctype, body = await replay(http, sim.url, cap["request"])
    assert (status, ctype) == (cap["status"], cap["content_type"])
    assert body == cap["body"]
    assert list(body["node_errors"]) == ["4", "3"]


async def test_simulator_runs_txt2img_when_the_model_is_configured(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    cap = load_capture("14")
    body = copy.deepcopy(cap["request"]["json_body"])
    body["prompt"]["3"]["inputs"]["sampler_name"] = "euler_ancestral"
    body["prompt"]["3"]["inputs"]["steps"] = 5
    async with (
        run_simulator(
            root=tmp_path, render_seconds=0.05, models=["anything-v5.safetensors"]
        ) as sim,
        WsRecorder(http, sim.ws_url, "capture-14") as ws,
    ):
        status, _, reply = await _post(http, sim.url, body)
        assert status == 200, reply
        await ws.wait_done(reply["prompt_id"])
        progress = [m["data"] for m in json_messages(ws.messages) if m["type"] == "progress"]
        assert [(p["value"], p["max"], p["node"]) for p in progress] == [
            (i, 5, "3") for i in range(1, 6)
        ]
        executing = [
            m["data"]["node"] for m in json_messages(ws.messages) if m["type"] == "executing"
        ]
        assert executing == ["4", "5", "7", "6", "3", "8", "9", None]
        _, _, history = await _get(http, sim.url, f"/history/{reply['prompt_id']}")
        images = history[reply["prompt_id"]]["outputs"]["9"]["images"]
        assert [i["filename"] for i in images] == ["kai_00001_.png"]
