"""ComfyUIClient against FakeComfyUI: every protocol trap, every failure class."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from services.renderer.comfyui import (
    ComfyConnectionError,
    ComfyExecutionError,
    ComfyFileNotFound,
    ComfyInterrupted,
    ComfyOutOfMemory,
    ComfyPromptDeleted,
    ComfyPromptLost,
    ComfyProtocolError,
    ComfyServerError,
    ComfyTimeoutError,
    ComfyTimeouts,
    ComfyUIClient,
    ComfyValidationError,
    ProgressUpdate,
    PromptState,
)
from services.renderer.comfyui.testing import CannedReply, FakeComfyUI, NodeFailure
from shared.events import OutputImage, RenderParams
from shared.workflows import (
    TemplateRegistry,
    compile_workflow,
    derive_prompt_id,
    filename_prefix_for,
)
from tests.unit.test_comfyui_captures import CAPTURES


def _client(url: str, **overrides: Any) -> ComfyUIClient:
    """A client with short poll/reconnect intervals so tests stay fast."""
    settings: dict[str, Any] = {
        "poll_interval": 0.05,
        "idle_check_interval": 5.0,
        "reconnect_min": 0.05,
    }
    settings.update(overrides)
    return ComfyUIClient(url, **settings)


_counter = 0


def _job() -> tuple[str, str]:
    """A fresh (prompt_id, filename_prefix) pair per call."""
    global _counter
    _counter += 1
    job = f"job-{_counter}"
    return derive_prompt_id(job, 1), filename_prefix_for(job, 1)


def _model_free(prefix: str, batch_size: int = 2) -> dict[str, Any]:
    template = TemplateRegistry.load().get("model-free")
    return compile_workflow(
        template,
        prompt="test",
        negative="",
        params=RenderParams(width=64, height=64, batch_size=batch_size),
        filename_prefix=prefix,
        seed=0,
    )


async def _until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


async def _until_state(client: ComfyUIClient, prompt_id: str, state: PromptState) -> None:
    for _ in range(300):
        if (await client.locate(prompt_id)).state is state:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"prompt never reached {state}")


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI(node_seconds=0.01) as server:
        yield server


@pytest_asyncio.fixture
async def client(fake: FakeComfyUI) -> AsyncIterator[ComfyUIClient]:
    async with _client(fake.url) as comfy:
        yield comfy


def _posted_prompts(fake: FakeComfyUI) -> list[dict[str, Any]]:
    return [body for method, path, body in fake.requests if (method, path) == ("POST", "/prompt")]


# =========================================================================== happy path


async def test_model_free_run_reports_progress_to_100_and_fetches_the_pngs(
    fake: FakeComfyUI, client: ComfyUIClient
) -> None:
    # Given a compiled model-free workflow
    prompt_id, prefix = _job()
    updates: list[ProgressUpdate] = []

    # When it is submitted and waited for
    submitted = await client.submit(_model_free(prefix), prompt_id=prompt_id)
    result = await client.wait(prompt_id, on_progress=updates.append, timeout=5)

    # Then the outputs are the two PNGs under the job's prefix, downloadable
    assert submitted.prompt_id == prompt_id
    assert [(o.node_id, o.subfolder, o.type) for o in result.outputs] == [
        ("3", prefix.rpartition("/")[0], "output")
    ] * 2
    for image in result.outputs:
        assert (await client.fetch_view(image)).startswith(b"\x89PNG\r\n\x1a\n")
    assert result.executed_nodes == ["1", "2", "3"]
    assert result.status == "success"
    assert result.render_seconds is not None and result.render_seconds >= 0
    # And progress climbed monotonically to exactly 100
    percents = [u.percent_overall for u in updates]
    assert percents == sorted(percents)
    assert percents[-1] == 100.0
    assert any(0 < p < 100 for p in percents)


async def test_socket_is_open_before_submit_and_its_client_id_is_sent(
    fake: FakeComfyUI, client: ComfyUIClient
) -> None:
    prompt_id, prefix = _job()
    await client.submit(_model_free(prefix), prompt_id=prompt_id, extra_data={"a": 1}, number=3)
    (body,) = _posted_prompts(fake)
    assert body["client_id"] == client.client_id == fake.connections[-1]
    assert body["prompt_id"] == prompt_id
    assert body["extra_data"] == {"a": 1}
    assert body["number"] == 3
    await client.wait(prompt_id, timeout=5)


async def test_async_progress_callbacks_are_awaited(client: ComfyUIClient) -> None:
    prompt_id, prefix = _job()
    seen: list[float] = []

    async def report(update: ProgressUpdate) -> None:
        await asyncio.sleep(0)
        seen.append(update.percent_overall)

    await client.submit(_model_free(prefix), prompt_id=prompt_id)
    await client.wait(prompt_id, on_progress=report, timeout=5)
    assert seen[-1] == 100.0


async def test_a_failing_progress_callback_does_not_fail_the_render(client: ComfyUIClient) -> None:
    prompt_id, prefix = _job()

    def broken(update: ProgressUpdate) -> None:
        raise RuntimeError("the bus is down")

    await client.submit(_model_free(prefix), prompt_id=prompt_id)
    result = await client.wait(prompt_id, on_progress=broken, timeout=5)
    assert len(result.outputs) == 2


# =========================================================================== submit failures


async def test_client_reports_node_errors_when_error_details_are_empty(
    fake: FakeComfyUI, client: ComfyUIClient
) -> None:
    # Given the real 400 of capture 14
    fake.canned["POST /prompt"] = [CannedReply(400, CAPTURES["14_body"])]
    prompt_id, _ = _job()
    # When a workflow is submitted
    with pytest.raises(ComfyValidationError) as info:
        await client.submit(CAPTURES["14_request_prompt"], prompt_id=prompt_id)
    # Then it is a permanent validation error naming every node problem
    error = info.value
    assert error.transient is False
    assert error.partial is False
    assert error.readable() == [
        "node 3 (KSampler) input sampler_name: value_not_in_list: "
        "'euler_a' not in (list of length 42)",
        "node 4 (CheckpointLoaderSimple) input ckpt_name: value_not_in_list: "
        "'anything-v5.safetensors' not in []",
    ]


async def test_partial_acceptance_is_refused_and_the_prompt_removed(
    fake: FakeComfyUI, client: ComfyUIClient
) -> None:
    # Given a 200 whose node_errors say an output was dropped (capture 04)
    body = dict(CAPTURES["04_cases"]["partially_valid_prompt_is_accepted"]["body"])
    prompt_id, prefix = _job()
    body["prompt_id"] = prompt_id
    fake.canned["POST /prompt"] = [CannedReply(200, body)]
    # When it is submitted
    with pytest.raises(ComfyValidationError) as info:
        await client.submit(_model_free(prefix), prompt_id=prompt_id)
    # Then it is refused, and the queued remainder deleted and interrupted
    assert info.value.partial is True
    assert info.value.dropped_outputs == ["5"]
    assert ("POST", "/queue", {"delete": [prompt_id]}) in fake.requests
    assert ("POST", "/interrupt", {"prompt_id": prompt_id}) in fake.requests


@pytest.mark.parametrize(
    "reply",
    [
        CannedReply(500, text="500 Internal Server Error\n\nServer got itself in trouble"),
        CannedReply(502, text="Bad Gateway"),
        CannedReply(503, text="Service Unavailable"),
    ],
)
async def test_server_errors_on_submit_are_transient(
    fake: FakeComfyUI, client: ComfyUIClient, reply: CannedReply
) -> None:
    fake.canned["POST /prompt"] = [reply]
    prompt_id, prefix = _job()
    with pytest.raises(ComfyServerError) as info:
        await client.submit(_model_free(prefix), prompt_id=prompt_id)
    assert info.value.transient is True
    assert info.value.status == reply.status
    # The request reached the server: make sure nothing half-queued stays behind.
    assert ("POST", "/queue", {"delete": [prompt_id]}) in fake.requests


@pytest.mark.parametrize(
    "reply",
    [
        CannedReply(200, text="<html>proxy error page</html>"),
        CannedReply(200, json_body={"unexpected": True}),
        CannedReply(400, text="Bad Request"),
    ],
)
async def test_unusable_submit_replies_are_transient_protocol_errors(
    fake: FakeComfyUI, client: ComfyUIClient, reply: CannedReply
) -> None:
    fake.canned["POST /prompt"] = [reply]
    prompt_id, prefix = _job()
    with pytest.raises(ComfyProtocolError) as info:
        await client.submit(_model_free(prefix), prompt_id=prompt_id)
    assert info.value.transient is True


async def test_connection_refused_is_transient() -> None:
    # A port nobody listens on (the fake is started and stopped to get one).
    async with FakeComfyUI() as gone:
        url = gone.url
    with pytest.raises(ComfyConnectionError) as info:
        async with ComfyUIClient(url, timeouts=ComfyTimeouts(connect=0.5)):
            pass
    assert info.value.transient is True
    assert info.value.maybe_delivered is False


async def test_http_timeouts_are_transient(fake: FakeComfyUI) -> None:
    fake.delays["GET /queue"] = 0.3
    async with ComfyUIClient(fake.url, timeouts=ComfyTimeouts(request=0.1)) as comfy:
        with pytest.raises(ComfyTimeoutError) as info:
            await comfy.queue()
    assert info.value.transient is True


async def test_a_prompt_id_can_only_be_tracked_once(client: ComfyUIClient) -> None:
    prompt_id, prefix = _job()
    await client.submit(_model_free(prefix), prompt_id=prompt_id)
    with pytest.raises(ValueError, match="already being tracked"):
        await client.submit(_model_free(prefix), prompt_id=prompt_id)
    await client.wait(prompt_id, timeout=5)


# =========================================================================== execution failures


async def test_out_of_memory_during_execution_is_transient(
    fake: FakeComfyUI, client: ComfyUIClient
) -> None:
    fake.failures["ImageBlur"] = NodeFailure(
        "torch.OutOfMemoryError", "CUDA out of memory. Tried to allocate 20.00 GiB"
    )
    prompt_id, prefix = _job()
    await client.submit(_model_free(prefix), prompt_id=prompt_id)
    with pytest.raises(ComfyOutOfMemory) as info:
        await client.wait(prompt_id, timeout=5)
    error = info.value
    assert error.transient is True
    assert (error.node_id, error.node_type, error.executed) == ("2", "ImageBlur", ["1"])
    assert error.exception_type == "torch.OutOfMemoryError"
    assert not any("/srv/comfy" in line for line in error.traceback)


async def test_other_execution_errors_are_permanent_and_path_free(
    fake: FakeComfyUI, client: ComfyUIClient
) -> None:
    fake.failures["EmptyImage"] = NodeFailure(
        "PIL.UnidentifiedImageError", "cannot identify image file '/srv/comfy/input/x.png'\n"
    )
    prompt_id, prefix = _job()
    await client.submit(_model_free(prefix), prompt_id=prompt_id)
    with pytest.raises(ComfyExecutionError) as info:
        await client.wait(prompt_id, timeout=5)
    assert info.value.transient is False
    assert info.value.exception_message == "cannot identify image file 'x.png'"
    assert "/srv/comfy" not in str(info.value)


async def test_configured_transient_exception_types_are_retried(fake: FakeComfyUI) -> None:
    fake.failures["EmptyImage"] = NodeFailure("aiohttp.ClientConnectionError", "api node down")
    async with _client(
        fake.url, transient_exception_types={"aiohttp.ClientConnectionError"}
    ) as comfy:
        prompt_id, prefix = _job()
        await comfy.submit(_model_free(prefix), prompt_id=prompt_id)
        with pytest.raises(ComfyExecutionError) as info:
            await comfy.wait(prompt_id, timeout=5)
    assert info.value.transient is True


# =========================================================================== interrupt, delete


async def test_interrupt_stops_only_our_running_prompt_and_is_permanent(
    fake: FakeComfyUI, client: ComfyUIClient
) -> None:
    fake.node_seconds = 0.2
    prompt_id, prefix = _job()
    await client.submit(_model_free(prefix), prompt_id=prompt_id)
    await _until_state(client, prompt_id, PromptState.RUNNING)
    waiter = asyncio.create_task(client.wait(prompt_id, timeout=5))

    await client.interrupt(prompt_id)

    with pytest.raises(ComfyInterrupted) as info:
        await waiter
    assert info.value.requested is True
    assert info.value.transient is False
    assert ("POST", "/interrupt", {"prompt_id": prompt_id}) in fake.requests


async def test_an_interrupt_we_did_not_ask_for_is_transient(
    fake: FakeComfyUI, client: ComfyUIClient
) -> None:
    fake.node_seconds = 0.2
    prompt_id, prefix = _job()
    await client.submit(_model_free(prefix), prompt_id=prompt_id)
    await _until_state(client, prompt_id, PromptState.RUNNING)
    waiter = asyncio.create_task(client.wait(prompt_id, timeout=5))
    # Someone presses "cancel" in the ComfyUI web page (bare POST /interrupt).
    async with aiohttp.ClientSession() as other, other.post(fake.url + "/interrupt") as resp:
        assert resp.status == 200
    with pytest.raises(ComfyInterrupted) as info:
        await waiter
    assert info.value.requested is False
    assert info.value.transient is True


async def test_delete_pending_removes_a_queued_prompt_and_ends_its_wait(
    fake: FakeComfyUI, client: ComfyUIClient
) -> None:
    fake.paused.clear()  # the worker holds everything in the queue
    prompt_id, prefix = _job()
    await client.submit(_model_free(prefix), prompt_id=prompt_id)
    where = await client.locate(prompt_id)
    assert (where.state, where.position) == (PromptState.PENDING, 0)
    waiter = asyncio.create_task(client.wait(prompt_id, timeout=5))

    after = await client.delete_pending(prompt_id)

    assert after.state is PromptState.UNKNOWN
    with pytest.raises(ComfyPromptDeleted) as info:
        await waiter
    assert info.value.transient is False
    fake.paused.set()


async def test_delete_pending_reports_a_running_prompt_untouched(
    fake: FakeComfyUI, client: ComfyUIClient
) -> None:
    fake.node_seconds = 0.2
    prompt_id, prefix = _job()
    await client.submit(_model_free(prefix), prompt_id=prompt_id)
    await _until_state(client, prompt_id, PromptState.RUNNING)
    assert (await client.delete_pending(prompt_id)).state is PromptState.RUNNING
    assert len((await client.wait(prompt_id, timeout=5)).outputs) == 2


async def test_pending_position_follows_run_order_not_heap_order(
    fake: FakeComfyUI, client: ComfyUIClient
) -> None:
    fake.paused.clear()
    ids = []
    for number in (5, 1, 3):
        prompt_id, prefix = _job()
        await client.submit(_model_free(prefix), prompt_id=prompt_id, number=number)
        ids.append(prompt_id)
    positions = [(await client.locate(p)).position for p in ids]
    assert positions == [2, 0, 1]
    for prompt_id in ids:
        await client.delete_pending(prompt_id)
    fake.paused.set()


# =========================================================================== socket trouble


async def test_socket_drop_falls_back_to_history_polling(
    fake: FakeComfyUI, client: ComfyUIClient
) -> None:
    # Given a prompt running under the first clientId
    fake.node_seconds = 0.1
    prompt_id, prefix = _job()
    updates: list[ProgressUpdate] = []
    await client.submit(_model_free(prefix), prompt_id=prompt_id)
    first_id = client.client_id
    waiter = asyncio.create_task(client.wait(prompt_id, on_progress=updates.append, timeout=5))
    await _until_state(client, prompt_id, PromptState.RUNNING)

    # When the server drops every websocket
    await fake.drop_sockets()

    # Then the client reconnects under a fresh clientId, and the wait still ends
    # with the outputs (found by polling: the events went to the old id)
    result = await waiter
    assert len(result.outputs) == 2
    assert updates[-1].percent_overall == 100.0
    await _until(lambda: client.connected)
    assert client.client_id not in (None, first_id)
    assert len(set(fake.connections)) == len(fake.connections), "clientIds are never reused"


async def test_events_silently_lost_are_caught_by_the_idle_check(fake: FakeComfyUI) -> None:
    # The socket stays up but no execution event arrives (capture 11's routing loss).
    fake.mute_events = True
    async with ComfyUIClient(fake.url, poll_interval=0.05, idle_check_interval=0.2) as comfy:
        prompt_id, prefix = _job()
        await comfy.submit(_model_free(prefix), prompt_id=prompt_id)
        result = await comfy.wait(prompt_id, timeout=5)
    assert len(result.outputs) == 2


async def test_bad_frames_on_the_socket_are_skipped(
    fake: FakeComfyUI, client: ComfyUIClient
) -> None:
    assert client.client_id is not None
    for frame in ("not json", '{"type": "progress", "data": {}}', '{"type": "x.custom"}'):
        await fake.send_raw(client.client_id, frame)
    for binary in (b"\x00\x00", (4).to_bytes(4, "big") + (999).to_bytes(4, "big")):
        await fake.send_raw(client.client_id, binary)
    prompt_id, prefix = _job()
    await client.submit(_model_free(prefix), prompt_id=prompt_id)
    assert len((await client.wait(prompt_id, timeout=5)).outputs) == 2
    assert client.client_id == fake.connections[-1], "no reconnect was needed"


async def test_prompt_lost_in_a_server_restart_is_transient(
    fake: FakeComfyUI, client: ComfyUIClient
) -> None:
    fake.node_seconds = 0.3
    prompt_id, prefix = _job()
    await client.submit(_model_free(prefix), prompt_id=prompt_id)
    await _until_state(client, prompt_id, PromptState.RUNNING)
    waiter = asyncio.create_task(client.wait(prompt_id, timeout=5))

    await fake.restart()

    with pytest.raises(ComfyPromptLost) as info:
        await waiter
    assert info.value.transient is True
    assert info.value.prompt_id == prompt_id


async def test_a_server_that_stays_down_ends_the_wait_with_a_transient_error() -> None:
    fake = FakeComfyUI(node_seconds=0.3)
    await fake.start()
    async with _client(fake.url, unreachable_grace=0.3) as comfy:
        prompt_id, prefix = _job()
        await comfy.submit(_model_free(prefix), prompt_id=prompt_id)
        waiter = asyncio.create_task(comfy.wait(prompt_id, timeout=5))
        await fake.close()
        with pytest.raises(ComfyConnectionError) as info:
            await waiter
    assert info.value.transient is True


async def test_wait_timeout_is_transient_and_leaves_the_prompt_alone(
    fake: FakeComfyUI, client: ComfyUIClient
) -> None:
    fake.paused.clear()
    prompt_id, prefix = _job()
    await client.submit(_model_free(prefix), prompt_id=prompt_id)
    with pytest.raises(ComfyTimeoutError) as info:
        await client.wait(prompt_id, timeout=0.2)
    assert info.value.transient is True
    assert (await client.locate(prompt_id)).state is PromptState.PENDING
    fake.paused.set()
    assert len((await client.wait(prompt_id, timeout=5)).outputs) == 2


# =========================================================================== re-attach


async def test_reattach_via_locate_after_a_finished_run(fake: FakeComfyUI) -> None:
    prompt_id, prefix = _job()
    async with _client(fake.url) as first:
        await first.submit(_model_free(prefix), prompt_id=prompt_id)
        original = await first.wait(prompt_id, timeout=5)

    # A new renderer process, knowing only the derived prompt id
    async with _client(fake.url) as second:
        where = await second.locate(prompt_id)
        assert where.state is PromptState.FINISHED
        assert where.history is not None
        reattached = await second.wait(prompt_id, timeout=5)
    assert reattached.outputs == original.outputs
    assert reattached.executed_nodes == ["1", "2", "3"]


async def test_reattach_to_a_prompt_still_running_waits_by_polling(fake: FakeComfyUI) -> None:
    fake.node_seconds = 0.1
    prompt_id, prefix = _job()
    first = _client(fake.url)
    await first.start()
    await first.submit(_model_free(prefix), prompt_id=prompt_id)
    await first.close()  # the renderer "crashes"; its socket (and events) are gone

    async with _client(fake.url) as second:
        assert (await second.locate(prompt_id)).state in (PromptState.PENDING, PromptState.RUNNING)
        updates: list[ProgressUpdate] = []
        result = await second.wait(prompt_id, on_progress=updates.append, timeout=5)
    assert len(result.outputs) == 2
    assert updates[-1].percent_overall == 100.0


async def test_unknown_prompt_is_reported_as_lost(client: ComfyUIClient) -> None:
    assert (await client.locate("never-submitted")).state is PromptState.UNKNOWN
    with pytest.raises(ComfyPromptLost):
        await client.wait("never-submitted", timeout=5)


# =========================================================================== reads


async def test_object_info_is_fetched_once_and_dropped_on_reconnect(
    fake: FakeComfyUI, client: ComfyUIClient
) -> None:
    fake.object_info = {"SaveImage": {"input": {}, "output": [], "output_node": True}}
    assert await client.object_info() == await client.object_info()
    assert fake.object_info_fetches == 1
    await client.object_info(refresh=True)
    assert fake.object_info_fetches == 2
    await client.drop_connection()
    await _until(lambda: client.connected and len(fake.connections) == 2)
    await client.object_info()
    assert fake.object_info_fetches == 3


async def test_missing_output_file_is_a_permanent_not_found(client: ComfyUIClient) -> None:
    with pytest.raises(ComfyFileNotFound) as info:
        await client.fetch_view(OutputImage(filename="nope.png", subfolder="jobs/x"))
    assert info.value.transient is False


async def test_uploaded_reference_gets_a_load_image_value(
    fake: FakeComfyUI, client: ComfyUIClient
) -> None:
    uploaded = await client.upload_image(b"\x89PNG...", "abc.png", subfolder="refs")
    assert uploaded.load_image_value() == "refs/abc.png"
    assert fake.files[("input", "refs", "abc.png")] == b"\x89PNG..."


async def test_system_stats_and_queue_are_typed(client: ComfyUIClient) -> None:
    stats = await client.system_stats()
    assert stats.system.comfyui_version == "0.3.64"
    queue = await client.queue()
    assert queue.queue_running == [] and queue.queue_pending == []


async def test_garbage_from_a_read_endpoint_is_a_transient_protocol_error(
    fake: FakeComfyUI, client: ComfyUIClient
) -> None:
    fake.canned["GET /queue"] = [CannedReply(200, text="nope")]
    with pytest.raises(ComfyProtocolError):
        await client.queue()
    fake.canned["GET /system_stats"] = [CannedReply(200, json_body={"devices": "x"})]
    with pytest.raises(ComfyProtocolError, match="unexpected reply shape"):
        await client.system_stats()


async def test_client_must_be_started_before_use(fake: FakeComfyUI) -> None:
    comfy = ComfyUIClient(fake.url)
    with pytest.raises(RuntimeError, match="not started"):
        await comfy.submit({}, prompt_id="x")
