"""ComfyUIClient + shipped templates against comfysim, the ComfyUI simulator.

No RabbitMQ or PostgreSQL involved, so these are plain (unmarked) tests. Faults
are injected per prompt with ``extra_data.sim_fault`` (see ``comfysim.faults``).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from services.renderer.comfyui import (
    ComfyExecutionError,
    ComfyInterrupted,
    ComfyOutOfMemory,
    ComfyPromptLost,
    ComfyServerError,
    ComfyUIClient,
    ComfyValidationError,
    ProgressUpdate,
    PromptState,
)
from shared.events import Lora, RenderParams
from shared.workflows import (
    TemplateRegistry,
    compile_workflow,
    derive_prompt_id,
    filename_prefix_for,
    validate_against_object_info,
)

comfysim = pytest.importorskip("comfysim", reason="the ComfyUI simulator is not in this checkout")

CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
LORA = "kai-nakamura.safetensors"
_jobs = iter(range(1, 1_000_000))


@pytest.fixture(scope="module")
def templates() -> TemplateRegistry:
    return TemplateRegistry.load()


@pytest.fixture
def job() -> Iterator[str]:
    yield f"itest-{next(_jobs)}"


@pytest_asyncio.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Any]:
    async with comfysim.run_simulator(
        port=0, root=tmp_path, render_seconds=0.05, models=[CHECKPOINT], loras=[LORA]
    ) as simulator:
        yield simulator


@pytest_asyncio.fixture
async def client(sim: Any) -> AsyncIterator[ComfyUIClient]:
    async with ComfyUIClient(
        sim.url, poll_interval=0.05, idle_check_interval=2.0, reconnect_min=0.05
    ) as comfy:
        yield comfy


def _compile(
    templates: TemplateRegistry, name: str, job: str, *, batch_size: int = 2, **extra: Any
) -> dict[str, Any]:
    return compile_workflow(
        templates.get(name),
        prompt=f"Kai Nakamura, {job}",
        negative="lowres",
        params=RenderParams(width=64, height=64, batch_size=batch_size, steps=8),
        filename_prefix=filename_prefix_for(job, 1),
        seed=42,
        **extra,
    )


async def _until_running(client: ComfyUIClient, prompt_id: str) -> None:
    for _ in range(300):
        if (await client.locate(prompt_id)).state is PromptState.RUNNING:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{prompt_id} never started")


# =========================================================================== runs


async def test_model_free_template_runs_end_to_end(
    client: ComfyUIClient, templates: TemplateRegistry, job: str
) -> None:
    # Given the model-free template, checked against the server before submitting
    workflow = _compile(templates, "model-free", job)
    assert validate_against_object_info(workflow, await client.object_info()) == []
    prompt_id = derive_prompt_id(job, 1)
    updates: list[ProgressUpdate] = []

    # When it is submitted and waited for
    await client.submit(workflow, prompt_id=prompt_id)
    result = await client.wait(prompt_id, on_progress=updates.append, timeout=10)

    # Then progress reached 100 and both PNGs are fetched, at the requested size
    percents = [u.percent_overall for u in updates]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert len(result.outputs) == 2
    for output in result.outputs:
        assert output.subfolder == f"jobs/{job}/a1"
        png = await client.fetch_view(output)
        assert Image.open(io.BytesIO(png)).size == (64, 64)
    assert result.executed_nodes == ["1", "2", "3"]


async def test_txt2img_with_a_character_lora_runs_with_sampler_progress(
    client: ComfyUIClient, templates: TemplateRegistry, job: str
) -> None:
    workflow = _compile(templates, "txt2img", job, loras=[Lora(name=LORA, strength=0.7)])
    assert validate_against_object_info(workflow, await client.object_info()) == []
    prompt_id = derive_prompt_id(job, 1)
    updates: list[ProgressUpdate] = []
    await client.submit(workflow, prompt_id=prompt_id)
    result = await client.wait(prompt_id, on_progress=updates.append, timeout=10)
    assert len(result.outputs) == 2
    sampler_steps = [u for u in updates if u.node == "3" and u.max == 8]
    assert len(sampler_steps) >= 4, "sampler steps move the bar inside the KSampler node"
    assert "10" in result.executed_nodes, "the LoRA loader ran"


async def test_reattach_via_locate_after_a_finished_run(
    sim: Any, client: ComfyUIClient, templates: TemplateRegistry, job: str
) -> None:
    prompt_id = derive_prompt_id(job, 1)
    await client.submit(_compile(templates, "model-free", job), prompt_id=prompt_id)
    original = await client.wait(prompt_id, timeout=10)
    # A restarted renderer: new client, only the derived prompt id.
    async with ComfyUIClient(sim.url, poll_interval=0.05) as again:
        where = await again.locate(prompt_id)
        assert where.state is PromptState.FINISHED
        reattached = await again.wait(prompt_id, timeout=10)
    assert reattached.outputs == original.outputs


# =========================================================================== trouble


async def test_socket_drop_mid_run_falls_back_to_history_polling(
    client: ComfyUIClient, templates: TemplateRegistry, job: str
) -> None:
    first_client_id = client.client_id
    prompt_id = derive_prompt_id(job, 1)
    await client.submit(
        _compile(templates, "model-free", job),
        prompt_id=prompt_id,
        extra_data={"sim_fault": {"type": "ws_drop", "node": "2"}},
    )
    result = await client.wait(prompt_id, timeout=10)
    assert len(result.outputs) == 2
    for _ in range(200):
        if client.connected:
            break
        await asyncio.sleep(0.01)
    assert client.client_id not in (None, first_client_id), "reconnected with a fresh clientId"


async def test_prompt_lost_in_a_restart_is_transient(
    sim: Any, client: ComfyUIClient, templates: TemplateRegistry, job: str
) -> None:
    prompt_id = derive_prompt_id(job, 1)
    await client.submit(
        _compile(templates, "model-free", job),
        prompt_id=prompt_id,
        extra_data={"sim_fault": "hang"},
    )
    await _until_running(client, prompt_id)
    waiter = asyncio.create_task(client.wait(prompt_id, timeout=10))
    await sim.restart()
    with pytest.raises(ComfyPromptLost) as info:
        await waiter
    assert info.value.transient is True


async def test_interrupt_ends_a_hanging_prompt(
    client: ComfyUIClient, templates: TemplateRegistry, job: str
) -> None:
    prompt_id = derive_prompt_id(job, 1)
    await client.submit(
        _compile(templates, "model-free", job),
        prompt_id=prompt_id,
        extra_data={"sim_fault": "hang"},
    )
    await _until_running(client, prompt_id)
    waiter = asyncio.create_task(client.wait(prompt_id, timeout=10))
    await client.interrupt(prompt_id)
    with pytest.raises(ComfyInterrupted) as info:
        await waiter
    assert (info.value.requested, info.value.transient) == (True, False)


async def test_delete_pending_behind_a_running_prompt(
    client: ComfyUIClient, templates: TemplateRegistry, job: str
) -> None:
    blocker = derive_prompt_id(job, 1)
    queued = derive_prompt_id(job, 2)
    await client.submit(
        _compile(templates, "model-free", job), prompt_id=blocker, extra_data={"sim_fault": "hang"}
    )
    await _until_running(client, blocker)
    await client.submit(_compile(templates, "model-free", f"{job}-b"), prompt_id=queued)
    assert (await client.locate(queued)).state is PromptState.PENDING

    assert (await client.delete_pending(queued)).state is PromptState.UNKNOWN
    assert (await client.delete_pending(blocker)).state is PromptState.RUNNING
    await client.interrupt(blocker)
    with pytest.raises(ComfyInterrupted):
        await client.wait(blocker, timeout=10)


async def test_out_of_memory_is_transient_and_other_errors_permanent(
    client: ComfyUIClient, templates: TemplateRegistry, job: str
) -> None:
    oom_id, err_id = derive_prompt_id(job, 1), derive_prompt_id(job, 2)
    await client.submit(
        _compile(templates, "txt2img", job), prompt_id=oom_id, extra_data={"sim_fault": "oom"}
    )
    with pytest.raises(ComfyOutOfMemory) as oom:
        await client.wait(oom_id, timeout=10)
    assert oom.value.transient is True
    assert oom.value.details() == [
        "node 3 (KSampler): torch.OutOfMemoryError: Allocation on device"
    ]

    await client.submit(
        _compile(templates, "model-free", f"{job}-b"),
        prompt_id=err_id,
        extra_data={"sim_fault": {"type": "execution_error", "node": "2"}},
    )
    with pytest.raises(ComfyExecutionError) as error:
        await client.wait(err_id, timeout=10)
    assert error.value.transient is False
    assert error.value.node_id == "2"


async def test_missing_model_and_misspelt_sampler_are_named_before_and_by_the_server(
    tmp_path: Path, templates: TemplateRegistry, job: str
) -> None:
    # A server without models, like capture 14's.
    async with (
        comfysim.run_simulator(port=0, root=tmp_path) as bare,
        ComfyUIClient(bare.url) as comfy,
    ):
        workflow = compile_workflow(
            templates.get("txt2img"),
            prompt="Kai",
            negative="",
            params=RenderParams(sampler="euler_a", checkpoint="anything-v5.safetensors"),
            filename_prefix=filename_prefix_for(job, 1),
            seed=1,
        )
        before = validate_against_object_info(workflow, await comfy.object_info())
        assert [line.split(":")[0] for line in before] == [
            "node 3 (KSampler) input sampler_name",
            "node 4 (CheckpointLoaderSimple) input ckpt_name",
        ]
        with pytest.raises(ComfyValidationError) as info:
            await comfy.submit(workflow, prompt_id=derive_prompt_id(job, 1))
    assert info.value.transient is False
    assert info.value.readable() == [
        "node 3 (KSampler) input sampler_name: value_not_in_list: "
        "'euler_a' not in (list of length 42)",
        "node 4 (CheckpointLoaderSimple) input ckpt_name: value_not_in_list: "
        "'anything-v5.safetensors' not in []",
    ]


async def test_http_500_on_submit_is_transient(
    client: ComfyUIClient, templates: TemplateRegistry, job: str
) -> None:
    with pytest.raises(ComfyServerError) as info:
        await client.submit(
            _compile(templates, "model-free", job),
            prompt_id=derive_prompt_id(job, 1),
            extra_data={"sim_fault": "http_500"},
        )
    assert (info.value.status, info.value.transient) == (500, True)
