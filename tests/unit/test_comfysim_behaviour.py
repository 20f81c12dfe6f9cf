"""comfysim behaviour beyond the captures: files, PNG metadata, caching, queue
priorities, interrupts, deletes, uploads, /view rules and the model nodes."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator
from io import BytesIO
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from comfysim import Simulator, run_simulator
from tests.unit.comfysim_capture_tools import WsRecorder, json_messages, load_capture

CHAIN: dict[str, Any] = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 48, "batch_size": 2, "color": 0x336699},
    },
    "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 3, "sigma": 1.0}},
    "3": {
        "class_type": "ImageScale",
        "inputs": {
            "image": ["2", 0],
            "upscale_method": "bilinear",
            "width": 32,
            "height": 24,
            "crop": "disabled",
        },
    },
    "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "t"}},
}


def chain(prefix: str = "t", color: int = 0x336699) -> dict[str, Any]:
    wf = copy.deepcopy(CHAIN)
    wf["4"]["inputs"]["filename_prefix"] = prefix
    wf["1"]["inputs"]["color"] = color
    return wf


def txt2img(seed: int = 42, steps: int = 4, lora: str | None = None) -> dict[str, Any]:
    wf: dict[str, Any] = copy.deepcopy(load_capture("14")["request"]["json_body"]["prompt"])
    wf["4"]["inputs"]["ckpt_name"] = "model_a.safetensors"
    wf["3"]["inputs"].update(sampler_name="euler", seed=seed, steps=steps)
    wf["5"]["inputs"].update(width=64, height=64)
    if lora is not None:
        wf["10"] = {
            "class_type": "LoraLoader",
            "inputs": {
                "model": ["4", 0],
                "clip": ["4", 1],
                "lora_name": lora,
                "strength_model": 0.8,
                "strength_clip": 0.8,
            },
        }
        wf["3"]["inputs"]["model"] = ["10", 0]
        wf["6"]["inputs"]["clip"] = ["10", 1]
        wf["7"]["inputs"]["clip"] = ["10", 1]
    return wf


def png_bytes(color: tuple[int, ...] = (10, 20, 30), mode: str = "RGB") -> bytes:
    buf = BytesIO()
    Image.new(mode, (16, 12), color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with run_simulator(root=tmp_path, render_seconds=0.01) as simulator:
        yield simulator


async def submit(http: aiohttp.ClientSession, sim: Simulator, **body: Any) -> dict[str, Any]:
    async with http.post(sim.url + "/prompt", json=body) as resp:
        reply: dict[str, Any] = await resp.json()
        assert resp.status == 200, reply
        return reply


async def history_of(
    http: aiohttp.ClientSession, sim: Simulator, prompt_id: str, timeout: float = 10.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with http.get(f"{sim.url}/history/{prompt_id}") as resp:
            body: dict[str, Any] = await resp.json()
        if body:
            entry: dict[str, Any] = body[prompt_id]
            return entry
        await asyncio.sleep(0.01)
    raise AssertionError(f"no history for {prompt_id}")


async def run(http: aiohttp.ClientSession, sim: Simulator, **body: Any) -> dict[str, Any]:
    reply = await submit(http, sim, **body)
    return await history_of(http, sim, reply["prompt_id"])


# --------------------------------------------------------------------------- files


async def test_simulator_writes_png_text_chunks_for_prompt_and_extra_pnginfo(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    entry = await run(
        http,
        sim,
        prompt=chain("meta"),
        extra_data={"extra_pnginfo": {"pipeline_job": "job-123", "workflow": {"a": [1, 2]}}},
    )
    image = entry["outputs"]["4"]["images"][0]
    with Image.open(sim.dirs.output_dir / image["filename"]) as img:
        text = dict(img.text)  # type: ignore[attr-defined]
        assert img.size == (32, 24)
    assert json.loads(text["prompt"]) == entry["prompt"][2]
    assert json.loads(text["pipeline_job"]) == "job-123"
    assert json.loads(text["workflow"]) == {"a": [1, 2]}


async def test_simulator_continues_the_file_counter_from_existing_files(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    (sim.dirs.output_dir / "cnt_00007_.png").write_bytes(png_bytes())
    (sim.dirs.output_dir / "cntx_00050_.png").write_bytes(png_bytes())
    entry = await run(http, sim, prompt=chain("cnt"))
    names = [i["filename"] for i in entry["outputs"]["4"]["images"]]
    assert names == ["cnt_00008_.png", "cnt_00009_.png"]


async def test_simulator_saves_into_subfolders_for_slash_prefixes(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    entry = await run(http, sim, prompt=chain("jobs/job-77/shot"))
    images = entry["outputs"]["4"]["images"]
    assert images[0] == {
        "filename": "shot_00001_.png",
        "subfolder": "jobs/job-77",
        "type": "output",
    }
    query = "filename=shot_00001_.png&subfolder=jobs/job-77&type=output"
    async with http.get(f"{sim.url}/view?{query}") as resp:
        assert resp.status == 200
        assert (await resp.read())[:4] == b"\x89PNG"


async def test_simulator_fails_at_run_time_for_a_prefix_escaping_output(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    entry = await run(http, sim, prompt=chain("../escape"))
    assert entry["status"]["status_str"] == "error"
    event, data = entry["status"]["messages"][-1]
    assert event == "execution_error"
    assert (data["node_id"], data["node_type"], data["exception_type"]) == (
        "4",
        "SaveImage",
        "Exception",
    )
    assert "Saving image outside the output folder is not allowed" in data["exception_message"]
    assert sorted(data["executed"]) == ["1", "2", "3"]
    assert entry["outputs"] == {}


async def test_simulator_preview_image_writes_temp_files(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    wf = chain()
    wf["4"] = {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}
    entry = await run(http, sim, prompt=wf)
    images = entry["outputs"]["4"]["images"]
    assert [i["type"] for i in images] == ["temp", "temp"]
    assert images[0]["filename"].startswith("ComfyUI_temp_")
    assert images[0]["filename"].endswith("_00001_.png")
    async with http.get(f"{sim.url}/view?filename={images[0]['filename']}&type=temp") as resp:
        assert resp.status == 200


async def test_simulator_load_image_round_trip_via_upload(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    form = aiohttp.FormData()
    form.add_field("image", png_bytes((10, 20, 30)), filename="ref.png")
    async with http.post(sim.url + "/api/upload/image", data=form) as resp:
        assert await resp.json() == {"name": "ref.png", "subfolder": "", "type": "input"}
    async with http.get(sim.url + "/object_info/LoadImage") as resp:
        info = await resp.json()
    assert info["LoadImage"]["input"]["required"]["image"][0] == ["ref.png"]
    wf = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "ref.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}},
    }
    entry = await run(http, sim, prompt=wf)
    name = entry["outputs"]["3"]["images"][0]["filename"]
    with Image.open(sim.dirs.output_dir / name) as img:
        assert img.getpixel((0, 0)) == (245, 235, 225)


async def test_simulator_upload_renames_on_clash_unless_identical(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async def upload(data: bytes, **fields: str) -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("image", data, filename="a.png")
        for key, value in fields.items():
            form.add_field(key, value)
        async with http.post(sim.url + "/upload/image", data=form) as resp:
            result: dict[str, Any] = await resp.json()
            return result

    assert (await upload(png_bytes((1, 1, 1))))["name"] == "a.png"
    assert (await upload(png_bytes((1, 1, 1))))["name"] == "a.png"  # identical bytes
    assert (await upload(png_bytes((2, 2, 2))))["name"] == "a (1).png"
    assert (await upload(png_bytes((3, 3, 3)), overwrite="true"))["name"] == "a.png"
    sub = await upload(png_bytes(), subfolder="refs", type="input")
    assert sub == {"name": "a.png", "subfolder": "refs", "type": "input"}
    assert (sim.dirs.input_dir / "refs" / "a.png").is_file()


async def test_simulator_view_follows_comfyui_rules(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    (sim.dirs.output_dir / "x.png").write_bytes(png_bytes((9, 9, 9, 128), "RGBA"))

    async def view(query: str) -> tuple[int, str, bytes, aiohttp.typedefs.LooseHeaders]:
        async with http.get(f"{sim.url}/view?{query}") as resp:
            return (
                resp.status,
                resp.headers.get("Content-Type", ""),
                await resp.read(),
                resp.headers,
            )

    assert (await view("filename=missing.png"))[0] == 404
    assert (await view("filename=../x.png"))[0] == 400
    assert (await view("filename=/etc/passwd"))[0] == 400
    assert (await view("filename=x.png&subfolder=../.."))[0] == 403
    assert (await view("filename=x.png&type=bogus"))[0] == 400
    status, ctype, data, headers = await view("filename=x.png")
    assert (status, ctype, data[:4]) == (200, "image/png", b"\x89PNG")
    assert headers["Content-Disposition"] == 'filename="x.png"'  # type: ignore[index]
    status, ctype, data, _ = await view("filename=x.png&preview=jpeg;50")
    assert (status, ctype, data[:2]) == (200, "image/jpeg", b"\xff\xd8")
    status, ctype, data, _ = await view("filename=x.png&channel=rgb")
    with Image.open(BytesIO(data)) as img:
        assert img.mode == "RGB"
    status, _, data, _ = await view("filename=x.png%20[output]&type=input")
    assert status == 200


# --------------------------------------------------------------------------- caching


async def test_simulator_reruns_only_the_changed_save_node(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    first = await run(http, sim, prompt=chain("one"))
    second = await run(http, sim, prompt=chain("two"))
    cached = second["status"]["messages"][1]
    assert cached[0] == "execution_cached"
    assert cached[1]["nodes"] == ["1", "2", "3"]
    assert second["outputs"]["4"]["images"][0]["filename"] == "two_00001_.png"
    third = await run(http, sim, prompt=chain("two"), extra_data={"extra_pnginfo": {"x": 1}})
    assert third["status"]["messages"][1][1]["nodes"] == ["1", "2", "3", "4"]
    assert third["outputs"] == second["outputs"]
    assert first["outputs"] != second["outputs"]
    assert len(list(sim.dirs.output_dir.glob("two_*"))) == 2


async def test_simulator_keeps_only_the_last_prompt_in_the_cache(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    await run(http, sim, prompt=chain("a", color=1))
    await run(http, sim, prompt=chain("b", color=2))
    again = await run(http, sim, prompt=chain("a", color=1))
    assert again["status"]["messages"][1][1]["nodes"] == []  # classic cache: evicted


async def test_simulator_free_memory_empties_the_cache(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    await run(http, sim, prompt=chain("f"))
    async with http.post(sim.url + "/free", json={"unload_models": True, "free_memory": True}) as r:
        assert r.status == 200
    again = await run(http, sim, prompt=chain("f"))
    assert again["status"]["messages"][1][1]["nodes"] == []
    assert again["outputs"]["4"]["images"][0]["filename"] == "f_00003_.png"


async def test_simulator_without_cache_reruns_everything(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with run_simulator(root=tmp_path, cache=False) as sim:
        await run(http, sim, prompt=chain("nc"))
        again = await run(http, sim, prompt=chain("nc"))
        assert again["status"]["messages"][1][1]["nodes"] == []
        assert again["outputs"]["4"]["images"][0]["filename"] == "nc_00003_.png"


# --------------------------------------------------------------------------- queue


async def test_simulator_counts_every_post_without_number(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    assert (await submit(http, sim, prompt=chain("c0")))["number"] == 0
    async with http.post(sim.url + "/prompt", json={"client_id": "x"}) as resp:
        assert resp.status == 400  # no_prompt still advances the counter
    async with http.post(sim.url + "/prompt", json={"prompt": {"1": {"inputs": {}}}}) as resp:
        assert resp.status == 400
    async with http.post(sim.url + "/prompt", data="{bad") as resp:
        assert resp.status == 500  # never reached the counter
    reply = await submit(http, sim, prompt=chain("c1"), number=7)
    assert reply["number"] == 7.0 and isinstance(reply["number"], float)
    assert (await submit(http, sim, prompt=chain("c2")))["number"] == 3
    assert (await submit(http, sim, prompt=chain("c3"), front=True))["number"] == -4


async def test_simulator_runs_lower_numbers_first(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with run_simulator(root=tmp_path, render_seconds=0.3) as sim:
        blocker = await submit(http, sim, prompt=chain("blocker"))
        await asyncio.sleep(0.05)
        late = await submit(http, sim, prompt=chain("late", 1), number=50)
        normal = await submit(http, sim, prompt=chain("normal", 2))
        front = await submit(http, sim, prompt=chain("front", 3), front=True)
        early = await submit(http, sim, prompt=chain("early", 4), number=-100.5)
        order = [early, front, normal, late]
        starts = []
        for reply in [blocker, *order]:
            entry = await history_of(http, sim, reply["prompt_id"])
            starts.append(entry["status"]["messages"][0][1]["timestamp"])
        assert starts == sorted(starts)


async def test_simulator_deleted_prompt_never_runs_and_gets_no_history(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with run_simulator(root=tmp_path, render_seconds=0.2) as sim:
        first = await submit(http, sim, prompt=chain("d1"))
        doomed = await submit(http, sim, prompt=chain("d2", 5))
        async with http.post(
            sim.url + "/queue", json={"delete": [doomed["prompt_id"], "nope"]}
        ) as r:
            assert r.status == 200 and await r.read() == b""
        await history_of(http, sim, first["prompt_id"])
        await asyncio.sleep(0.05)
        async with http.get(f"{sim.url}/history/{doomed['prompt_id']}") as resp:
            assert await resp.json() == {}
        assert not list(sim.dirs.output_dir.glob("d2_*"))


async def test_simulator_interrupt_for_another_prompt_id_is_ignored(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with run_simulator(root=tmp_path, render_seconds=0.2) as sim:
        reply = await submit(http, sim, prompt=chain("keep"))
        await asyncio.sleep(0.05)
        async with http.post(sim.url + "/interrupt", json={"prompt_id": "someone-else"}) as r:
            assert r.status == 200
        entry = await history_of(http, sim, reply["prompt_id"])
        assert entry["status"]["status_str"] == "success"


async def test_simulator_interrupt_while_idle_is_harmless(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async with http.post(sim.url + "/interrupt") as resp:
        assert resp.status == 200
    entry = await run(http, sim, prompt=chain("idle"))
    assert entry["status"]["status_str"] == "success"


async def test_simulator_broadcasts_interrupt_of_a_prompt_without_client(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with (
        run_simulator(root=tmp_path, render_seconds=0.4) as sim,
        WsRecorder(http, sim.ws_url, "bystander") as ws,
    ):
        reply = await submit(http, sim, prompt=chain("noclient"))
        await asyncio.sleep(0.05)
        async with http.post(sim.url + "/interrupt", json={}) as r:
            assert r.status == 200
        event = await ws.wait_event("execution_interrupted", prompt_id=reply["prompt_id"])
        assert event["msg"]["data"]["node_type"] in {"ImageBlur", "ImageScale", "SaveImage"}
        assert "executing" not in ws.types()


async def test_simulator_history_pagination_and_deletion(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    ids = [(await run(http, sim, prompt=chain(f"h{i}", i)))["prompt"][1] for i in range(4)]

    async def history(query: str = "") -> list[str]:
        async with http.get(f"{sim.url}/history{query}") as resp:
            return list(await resp.json())

    assert await history() == ids
    assert await history("?max_items=2") == ids[2:]
    assert await history("?max_items=2&offset=1") == ids[1:3]
    async with http.post(sim.url + "/history", json={"delete": [ids[0]]}) as resp:
        assert resp.status == 200 and await resp.read() == b""
    assert await history() == ids[1:]
    async with http.post(sim.url + "/api/history", json={"clear": True}) as resp:
        assert resp.status == 200
    assert await history() == []


async def test_simulator_partial_execution_targets_run_only_selected_outputs(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    wf = chain("pa")
    wf["5"] = {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "pb"}}
    entry = await run(http, sim, prompt=wf, partial_execution_targets=["5"])
    assert list(entry["outputs"]) == ["5"]
    assert entry["prompt"][4] == ["5"]


async def test_simulator_converts_literals_and_hides_sensitive_extra_data(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    wf = chain("conv")
    wf["1"]["inputs"]["width"] = "64"
    entry = await run(http, sim, prompt=wf, extra_data={"api_key_comfy_org": "secret", "keep": 1})
    assert entry["prompt"][2]["1"]["inputs"]["width"] == 64
    assert entry["prompt"][3] == {"keep": 1}


# --------------------------------------------------------------------------- websocket


async def test_simulator_resends_current_node_to_a_reconnecting_owner(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with run_simulator(root=tmp_path, render_seconds=0.6) as sim:
        first = WsRecorder(http, sim.ws_url, "owner")
        await first.connect()
        reply = await submit(http, sim, prompt=chain("rc"), client_id="owner")
        await first.wait_event("executing", node="2")
        await first.close()
        async with WsRecorder(http, sim.ws_url, "owner") as again:
            frames = json_messages(again.messages)
            await again.wait_done(reply["prompt_id"])
            frames = json_messages(again.messages)
            assert frames[0]["type"] == "status" and frames[0]["data"]["sid"] == "owner"
            assert frames[1]["type"] == "executing"
            assert set(frames[1]["data"]) == {"node"}  # no prompt_id, no display_node


async def test_simulator_answers_feature_flags_and_generates_client_ids(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async with WsRecorder(http, sim.ws_url, None, feature_flags=True) as ws:
        reply = await ws.wait_event("feature_flags")
        assert reply["msg"]["data"] == {
            "supports_preview_metadata": True,
            "max_upload_size": 104857600,
        }
        assert len(ws.sid) == 32


async def test_simulator_rejects_cross_origin_requests_to_loopback(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    headers = {"Origin": "http://evil.example"}
    async with http.get(sim.url + "/queue", headers=headers) as resp:
        assert resp.status == 403
    async with http.get(sim.url + "/queue", headers={"Origin": sim.url}) as resp:
        assert resp.status == 200


async def test_simulator_instances_run_independently_on_different_ports(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with (
        run_simulator(root=tmp_path / "a") as one,
        run_simulator(root=tmp_path / "b") as two,
    ):
        assert one.port != two.port
        await run(http, one, prompt=chain("only-a"))
        assert (await submit(http, two, prompt=chain("b")))["number"] == 0
        assert list((tmp_path / "a" / "output").glob("only-a_*"))
        assert not list((tmp_path / "b" / "output").glob("only-a_*"))


# --------------------------------------------------------------------------- model nodes


async def test_simulator_offers_configured_models_in_combos(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with run_simulator(
        root=tmp_path,
        models=["model_b.safetensors", "model_a.safetensors"],
        loras=["style.safetensors"],
    ) as sim:
        async with http.get(sim.url + "/object_info/CheckpointLoaderSimple") as resp:
            info = await resp.json()
        combo = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"]
        assert combo[0] == ["model_a.safetensors", "model_b.safetensors"]
        async with http.get(sim.url + "/models/loras") as resp:
            assert await resp.json() == ["style.safetensors"]
        async with http.get(sim.url + "/models/nope") as resp:
            assert resp.status == 404
        entry = await run(http, sim, prompt=txt2img(lora="style.safetensors"))
        assert entry["status"]["status_str"] == "success"
        async with http.post(
            sim.url + "/prompt", json={"prompt": txt2img(lora="x.safetensors")}
        ) as r:
            body = await r.json()
        assert r.status == 400
        assert body["node_errors"]["10"]["errors"][0]["type"] == "value_not_in_list"


async def test_simulator_ksampler_is_deterministic_per_seed(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async def pixels(root: Path, seed: int) -> bytes:
        async with run_simulator(root=root, models=["model_a.safetensors"]) as sim:
            entry = await run(http, sim, prompt=txt2img(seed=seed))
            name = entry["outputs"]["9"]["images"][0]["filename"]
            with Image.open(sim.dirs.output_dir / name) as img:
                assert img.size == (64, 64)
                return img.tobytes()

    assert await pixels(tmp_path / "1", 1) == await pixels(tmp_path / "2", 1)
    assert await pixels(tmp_path / "3", 1) != await pixels(tmp_path / "4", 2)


async def test_simulator_spreads_render_time_over_sampler_steps(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with (
        run_simulator(root=tmp_path, render_seconds=0.4, models=["model_a.safetensors"]) as sim,
        WsRecorder(http, sim.ws_url, "t") as ws,
    ):
        started = time.monotonic()
        reply = await submit(http, sim, prompt=txt2img(steps=4), client_id="t")
        await ws.wait_done(reply["prompt_id"])
        assert time.monotonic() - started >= 0.4
        ticks = [m["data"]["value"] for m in json_messages(ws.messages) if m["type"] == "progress"]
        assert ticks == [1, 2, 3, 4]


async def test_simulator_sends_sampler_previews_with_a_preview_method(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with (
        run_simulator(
            root=tmp_path, models=["model_a.safetensors"], preview_method="latent2rgb"
        ) as sim,
        WsRecorder(http, sim.ws_url, "p") as ws,
    ):
        reply = await submit(http, sim, prompt=txt2img(steps=3), client_id="p")
        await ws.wait_done(reply["prompt_id"])
        binaries = [m for m in ws.messages if m["kind"] == "binary"]
        assert [(b["event_type"], b["image_format_code"]) for b in binaries] == [(1, 1)] * 3
        assert binaries[0]["image_magic_hex"].startswith("ffd8")


async def test_simulator_fails_unsimulated_node_classes_at_run_time(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    wf = chain("sharp")
    wf["2"] = {
        "class_type": "ImageSharpen",
        "inputs": {"image": ["1", 0], "sharpen_radius": 1, "sigma": 1.0, "alpha": 1.0},
    }
    entry = await run(http, sim, prompt=wf)
    event, data = entry["status"]["messages"][-1]
    assert (event, data["node_type"], data["exception_type"]) == (
        "execution_error",
        "ImageSharpen",
        "NotImplementedError",
    )
