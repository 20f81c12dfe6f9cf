"""comfysim fault injection, control API (/_sim/*), statistics and the CLI."""

from __future__ import annotations

import asyncio
import copy
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from comfysim import FaultSpec, FaultSpecError, Simulator, parse_cli_fault, run_simulator
from comfysim.faults import OOM_TIPS
from tests.unit.comfysim_capture_tools import WsRecorder, json_messages, load_capture

WF: dict[str, Any] = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 0xFF0000},
    },
    "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 2, "sigma": 1.0}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "f"}},
}
CRASH = "500 Internal Server Error\n\nServer got itself in trouble"


def wf(prefix: str = "f", color: int = 0xFF0000) -> dict[str, Any]:
    out = copy.deepcopy(WF)
    out["3"]["inputs"]["filename_prefix"] = prefix
    out["1"]["inputs"]["color"] = color
    return out


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with run_simulator(root=tmp_path, render_seconds=0.01) as simulator:
        yield simulator


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, path: str = "/prompt"
) -> tuple[int, str, Any]:
    async with http.post(url + path, json=body) as resp:
        ctype = resp.headers.get("Content-Type", "")
        data = await resp.json() if ctype.startswith("application/json") else await resp.text()
        return resp.status, ctype, data


async def get(http: aiohttp.ClientSession, url: str, path: str) -> Any:
    async with http.get(url + path) as resp:
        return await resp.json()


async def history_of(
    http: aiohttp.ClientSession, sim: Simulator, prompt_id: str, timeout: float = 10.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = await get(http, sim.url, f"/history/{prompt_id}")
        if body:
            entry: dict[str, Any] = body[prompt_id]
            return entry
        await asyncio.sleep(0.01)
    raise AssertionError(f"no history for {prompt_id}")


# --------------------------------------------------------------------------- submit faults


async def test_per_prompt_validation_fault_answers_400_like_a_real_validation_error(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    status, ctype, body = await post(
        http, sim.url, {"prompt": wf(), "extra_data": {"sim_fault": "validation_error"}}
    )
    assert (status, ctype) == (400, "application/json; charset=utf-8")
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert body["node_errors"]["3"]["errors"][0]["type"] == "custom_validation_failed"
    assert body["node_errors"]["3"]["dependent_outputs"] == ["3"]
    status, _, ok = await post(http, sim.url, {"prompt": wf()})
    assert (status, ok["number"]) == (200, 1)  # the failed POST advanced the counter


async def test_armed_faults_fire_count_times_then_disarm(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    status, _, armed = await post(
        http, sim.url, {"type": "validation_error", "count": 2}, "/_sim/faults"
    )
    assert status == 200
    assert armed["faults"][0]["type"] == "validation_error"
    statuses = [(await post(http, sim.url, {"prompt": wf()}))[0] for _ in range(3)]
    assert statuses == [400, 400, 200]
    assert (await get(http, sim.url, "/_sim/faults")) == {"faults": []}


async def test_http_500_fault_answers_like_a_crashed_handler_and_queues_nothing(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    status, ctype, text = await post(
        http, sim.url, {"prompt": wf(), "extra_data": {"sim_fault": {"type": "http_500"}}}
    )
    assert (status, ctype, text) == (500, "text/plain; charset=utf-8", CRASH)
    await post(http, sim.url, {"faults": [{"type": "http_500", "count": None}]}, "/_sim/faults")
    for _ in range(3):
        assert (await post(http, sim.url, {"prompt": wf()}))[0] == 500
    async with http.delete(sim.url + "/_sim/faults") as resp:
        assert await resp.json() == {"faults": []}
    status, _, body = await post(http, sim.url, {"prompt": wf()})
    assert (status, body["number"]) == (200, 0)
    assert await get(http, sim.url, "/queue") is not None


async def test_probability_zero_never_fires(sim: Simulator, http: aiohttp.ClientSession) -> None:
    await post(
        http, sim.url, {"type": "http_500", "probability": 0.0, "count": None}, "/_sim/faults"
    )
    assert [(await post(http, sim.url, {"prompt": wf()}))[0] for _ in range(3)] == [200] * 3


async def test_bad_fault_specs_are_rejected(sim: Simulator, http: aiohttp.ClientSession) -> None:
    status, _, body = await post(
        http, sim.url, {"prompt": wf(), "extra_data": {"sim_fault": {"type": "meteor"}}}
    )
    assert status == 400 and "meteor" in body["error"]["details"]
    status, _, body = await post(http, sim.url, {"type": "oom", "count": 0}, "/_sim/faults")
    assert status == 400


# --------------------------------------------------------------------------- run faults


async def test_execution_error_fault_fails_the_chosen_node(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    fault = {
        "type": "execution_error",
        "node": "2",
        "exception_type": "PIL.UnidentifiedImageError",
        "message": "boom",
    }
    async with WsRecorder(http, sim.ws_url, "c") as ws:
        _, _, reply = await post(
            http, sim.url, {"prompt": wf(), "client_id": "c", "extra_data": {"sim_fault": fault}}
        )
        await ws.wait_done(reply["prompt_id"])
        assert ws.types()[-4:] == ["executing", "execution_error", "status", "executing"]
    error = next(m for m in json_messages(ws.messages) if m["type"] == "execution_error")["data"]
    assert (error["node_id"], error["node_type"]) == ("2", "ImageBlur")
    assert error["exception_type"] == "PIL.UnidentifiedImageError"
    assert error["exception_message"] == "boom\n"
    assert error["executed"] == ["1"]
    assert "image" in error["current_inputs"]
    entry = await history_of(http, sim, reply["prompt_id"])
    assert entry["status"]["status_str"] == "error" and entry["outputs"] == {}


async def test_oom_fault_reports_torch_out_of_memory_at_the_sampler(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    prompt = copy.deepcopy(load_capture("14")["request"]["json_body"]["prompt"])
    prompt["4"]["inputs"]["ckpt_name"] = "m.safetensors"
    prompt["3"]["inputs"].update(sampler_name="euler", steps=3)
    prompt["5"]["inputs"].update(width=64, height=64)
    async with run_simulator(root=tmp_path, models=["m.safetensors"], faults=["oom"]) as sim:
        _, _, reply = await post(http, sim.url, {"prompt": prompt})
        entry = await history_of(http, sim, reply["prompt_id"])
        event, data = entry["status"]["messages"][-1]
        assert event == "execution_error"
        assert (data["node_id"], data["node_type"]) == ("3", "KSampler")
        assert data["exception_type"] == "torch.OutOfMemoryError"
        assert data["exception_message"] == "Allocation on device \n" + OOM_TIPS
        # the fault was consumed: the next prompt runs
        _, _, again = await post(http, sim.url, {"prompt": prompt})
        assert (await history_of(http, sim, again["prompt_id"]))["status"][
            "status_str"
        ] == "success"


async def test_hang_fault_blocks_until_interrupted(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    _, _, reply = await post(
        http, sim.url, {"prompt": wf(), "extra_data": {"sim_fault": {"type": "hang", "node": "3"}}}
    )
    await asyncio.sleep(0.2)
    stats = await get(http, sim.url, "/_sim/stats")
    assert stats["running_prompt_id"] == reply["prompt_id"]
    assert await get(http, sim.url, f"/history/{reply['prompt_id']}") == {}
    async with http.post(sim.url + "/interrupt", json={"prompt_id": reply["prompt_id"]}) as resp:
        assert resp.status == 200
    entry = await history_of(http, sim, reply["prompt_id"])
    event, data = entry["status"]["messages"][-1]
    assert (event, data["node_id"], sorted(data["executed"])) == (
        "execution_interrupted",
        "3",
        ["1", "2"],
    )


async def test_ws_drop_fault_cuts_the_socket_mid_run_but_the_prompt_finishes(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async with WsRecorder(http, sim.ws_url, "dropme") as ws:
        _, _, reply = await post(
            http,
            sim.url,
            {
                "prompt": wf(),
                "client_id": "dropme",
                "extra_data": {"sim_fault": {"type": "ws_drop", "node": "2"}},
            },
        )
        await asyncio.wait_for(ws.closed.wait(), 5)
        types = ws.types()
        assert "executing" in types and "execution_success" not in types
        executing = [
            m["data"]["node"] for m in json_messages(ws.messages) if m["type"] == "executing"
        ]
        assert executing == ["1", "2"]
    entry = await history_of(http, sim, reply["prompt_id"])
    assert entry["status"]["status_str"] == "success"


async def test_slow_ws_fault_delays_every_frame_of_the_run(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async with WsRecorder(http, sim.ws_url, "slow") as ws:
        started = time.monotonic()
        _, _, reply = await post(
            http,
            sim.url,
            {
                "prompt": wf(),
                "client_id": "slow",
                "extra_data": {"sim_fault": {"type": "slow_ws", "seconds": 0.02}},
            },
        )
        entry = await history_of(http, sim, reply["prompt_id"])
        history_at = time.monotonic()
        await ws.wait_done(reply["prompt_id"])
        done_at = time.monotonic()
    assert entry["status"]["status_str"] == "success"
    frames = len(json_messages(ws.messages))
    assert frames >= 14
    assert done_at - started >= 0.02 * 12
    assert done_at > history_at  # the transcript lags behind /history, as on a busy server


async def test_restart_fault_loses_queue_history_and_counter_mid_run(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with run_simulator(root=tmp_path, render_seconds=0.05) as sim:
        _, _, done = await post(http, sim.url, {"prompt": wf("before")})
        await history_of(http, sim, done["prompt_id"])
        async with WsRecorder(http, sim.ws_url, "r") as ws:
            _, _, doomed = await post(
                http,
                sim.url,
                {
                    "prompt": wf("doomed", 1),
                    "client_id": "r",
                    "extra_data": {"sim_fault": {"type": "restart", "node": "2"}},
                },
            )
            _, _, pending = await post(http, sim.url, {"prompt": wf("pending", 2)})
            await asyncio.wait_for(ws.closed.wait(), 5)
        await asyncio.sleep(0.05)
        assert await get(http, sim.url, "/queue") == {"queue_running": [], "queue_pending": []}
        assert await get(http, sim.url, "/history") == {}
        for pid in (done["prompt_id"], doomed["prompt_id"], pending["prompt_id"]):
            assert await get(http, sim.url, f"/history/{pid}") == {}
        _, _, after = await post(http, sim.url, {"prompt": wf("after", 3)})
        assert after["number"] == 0
        assert list(sim.dirs.output_dir.glob("before_*"))  # files persist
        assert not list(sim.dirs.output_dir.glob("doomed_*"))
        stats = await get(http, sim.url, "/_sim/stats")
        assert stats["restarts"] == 1 and stats["prompts_lost"] == 2


async def test_control_restart_with_downtime_refuses_connections_then_recovers(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    await post(http, sim.url, {"prompt": wf()})
    status, _, body = await post(http, sim.url, {"down_seconds": 0.3}, "/_sim/restart")
    assert (status, body["restarted"]) == (200, True)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as fresh, fresh.get(sim.url + "/queue"):
            pass
    await asyncio.sleep(0.4)
    async with (
        aiohttp.ClientSession() as fresh,
        fresh.post(sim.url + "/prompt", json={"prompt": wf("again")}) as resp,
    ):
        assert (await resp.json())["number"] == 0


async def test_refuse_connections_stops_listening_and_cuts_websockets(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async with WsRecorder(http, sim.ws_url, "cut") as ws:
        status, _, _ = await post(
            http, sim.url, {"type": "refuse_connections", "seconds": 0.3}, "/_sim/faults"
        )
        assert status == 200
        await asyncio.wait_for(ws.closed.wait(), 2)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", sim.port)) != 0
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(sim.url + "/queue"):
            pass  # even a pooled keep-alive connection is cut
    await asyncio.sleep(0.4)
    async with aiohttp.ClientSession() as fresh, fresh.get(sim.url + "/queue") as resp:
        assert resp.status == 200


# --------------------------------------------------------------------------- control API


async def test_stats_report_busy_idle_and_the_running_prompt(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with run_simulator(root=tmp_path, render_seconds=0.3) as sim:
        idle = await get(http, sim.url, "/_sim/stats")
        assert idle["running_prompt_id"] is None and idle["prompts_run"] == 0
        _, _, reply = await post(http, sim.url, {"prompt": wf()})
        await asyncio.sleep(0.1)
        busy = await get(http, sim.url, "/_sim/stats")
        assert busy["running_prompt_id"] == reply["prompt_id"]
        assert busy["queue_remaining"] == 1
        await history_of(http, sim, reply["prompt_id"])
        done = await get(http, sim.url, "/_sim/stats")
        assert done["prompts_run"] == done["prompts_succeeded"] == 1
        assert done["running_prompt_id"] is None
        assert 0.25 <= done["busy_seconds"] <= done["uptime_seconds"]
        assert done["idle_seconds"] == pytest.approx(done["uptime_seconds"] - done["busy_seconds"])
        assert set(done) >= {"utilization", "port", "restarts", "prompts_failed"}
        async with http.post(sim.url + "/_sim/stats/reset") as resp:
            assert (await resp.json())["prompts_run"] == 0


async def test_config_endpoint_changes_render_time_and_models_at_runtime(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    status, _, config = await post(
        http, sim.url, {"render_seconds": 0.2, "models": ["new.safetensors"]}, "/_sim/config"
    )
    assert status == 200 and config["render_seconds"] == 0.2
    info = await get(http, sim.url, "/object_info/CheckpointLoaderSimple")
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == [
        "new.safetensors"
    ]
    started = time.monotonic()
    _, _, reply = await post(http, sim.url, {"prompt": wf()})
    await history_of(http, sim, reply["prompt_id"])
    assert time.monotonic() - started >= 0.2
    status, _, _ = await post(http, sim.url, {"render_seconds": -1}, "/_sim/config")
    assert status == 400


async def test_per_prompt_render_seconds_override(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    started = time.monotonic()
    _, _, reply = await post(
        http, sim.url, {"prompt": wf(), "extra_data": {"sim_render_seconds": 0.25}}
    )
    await history_of(http, sim, reply["prompt_id"])
    assert time.monotonic() - started >= 0.25


def test_cli_fault_syntax_parses_into_fault_specs() -> None:
    assert parse_cli_fault("oom") == FaultSpec(type="oom")
    spec = parse_cli_fault("http_500:probability=0.25,count=inf")
    assert (spec.type, spec.probability, spec.count) == ("http_500", 0.25, None)
    spec = parse_cli_fault("execution_error:node=7,exception_type=ValueError,message=bad")
    assert (spec.node, spec.exception_type, spec.message) == ("7", "ValueError", "bad")
    for bad in ("nope", "oom:count", "oom:probability=2", "oom:colour=red"):
        with pytest.raises(FaultSpecError):
            parse_cli_fault(bad)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_cli_starts_an_instance_on_the_requested_port(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "comfysim",
        "--port",
        str(port),
        "--root",
        str(tmp_path),
        "--models",
        "a.safetensors,b.safetensors",
        "--fault",
        "http_500:count=1",
        "--log-level",
        "WARNING",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert f"http://127.0.0.1:{port}" in line
        url = f"http://127.0.0.1:{port}"
        assert (await get(http, url, "/models/checkpoints")) == ["a.safetensors", "b.safetensors"]
        assert (await post(http, url, {"prompt": wf()}))[0] == 500
        assert (await post(http, url, {"prompt": wf()}))[0] == 200
        assert (tmp_path / "output").is_dir() and (tmp_path / "input").is_dir()
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == 0


async def test_reconnecting_with_the_same_client_id_after_restart_keeps_routing(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    old = WsRecorder(http, sim.ws_url, "same")
    await old.connect()
    async with http.post(sim.url + "/_sim/restart") as resp:
        assert resp.status == 200
    async with WsRecorder(http, sim.ws_url, "same") as new:
        await asyncio.wait_for(old.closed.wait(), 2)
        await asyncio.sleep(0.05)  # the old socket's server side has finished by now
        _, _, reply = await post(http, sim.url, {"prompt": wf("re"), "client_id": "same"})
        await new.wait_done(reply["prompt_id"])
        assert "execution_success" in new.types()
    await old.close()


async def test_refuse_connections_at_startup_simulates_a_slow_boot(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    fault = {"type": "refuse_connections", "seconds": 0.3}
    async with run_simulator(root=tmp_path, faults=[fault]) as sim:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", sim.port)) != 0
        await asyncio.sleep(0.45)
        assert await get(http, sim.url, "/prompt") == {"exec_info": {"queue_remaining": 0}}
        assert await get(http, sim.url, "/_sim/faults") == {"faults": []}
