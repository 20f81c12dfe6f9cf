"""``anime queues`` and ``anime dlq …`` on the real broker: what an operator sees and does.

No service runs here: the test declares the pipeline's topology itself, parks messages
the way the services do, and reads the work queue to see what a replay sends back.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aio_pika
import pytest
from faststream.rabbit import RabbitBroker
from typer.testing import CliRunner, Result

from cli.main import app
from shared.messaging import declare_pipeline, park_message
from shared.settings import Settings, get_settings
from shared.topology import Topology
from tests.support.amqp import drain, queue_depth

pytestmark = pytest.mark.integration


def cli_sync(settings: Settings, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``anime …`` in-process with ``settings`` as its environment."""
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app, list(args), env={**settings.as_env(), **(env or {})}, catch_exceptions=False
        )
    finally:
        get_settings.cache_clear()
    return result


async def cli(settings: Settings, *args: str, env: dict[str, str] | None = None) -> Result:
    """The same from async code (the CLI runs its own event loop, so in a thread)."""
    return await asyncio.to_thread(cli_sync, settings, *args, env=env)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)


async def declare(settings: Settings) -> Topology:
    topology = Topology.from_settings(settings)
    await declare_pipeline(settings.amqp_url, topology, topology.pipeline_specs(settings).values())
    return topology


def accepted_body(job_id: uuid.UUID) -> bytes:
    return json.dumps(
        {"event_type": "job.accepted", "job_id": str(job_id), "project": "neon-skies"}
    ).encode()


async def park(settings: Settings, job_id: uuid.UUID, reason: str, attempt: int) -> None:
    """Park a job in the renderer's DLQ exactly as the renderer does."""
    topology = Topology.from_settings(settings)
    spec = topology.pipeline_specs(settings)["renderer.accepted"]
    broker = RabbitBroker(settings.amqp_url, logger=None)
    async with broker:
        await broker.connect()
        await park_message(
            broker,
            spec,
            body=accepted_body(job_id),
            headers={
                "job_id": str(job_id),
                "event_type": "job.accepted",
                "x-attempt": attempt,
                "x-avoid-backends": "http://gpu-1:8188",
                "x-error-kind": "validation",
            },
            correlation_id=f"corr-{job_id.hex[:8]}",
            reason=reason,
            service="renderer",
        )


async def dead_letter_by_broker(settings: Settings, queue: str, job_id: uuid.UUID) -> None:
    """A message the broker itself dead-letters (rejected without requeue): x-death."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(
                accepted_body(job_id),
                headers={"job_id": str(job_id), "event_type": "job.rendered"},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=queue,
        )
        declared = await channel.declare_queue(queue, passive=True)
        message = None
        for _ in range(50):
            message = await declared.get(fail=False)
            if message is not None:
                break
            await asyncio.sleep(0.05)
        assert message is not None
        await message.reject(requeue=False)


async def wait_depth(settings: Settings, queue: str, expected: int) -> None:
    for _ in range(100):
        if await queue_depth(settings, queue) == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"{queue} never held {expected} (holds {await queue_depth(settings, queue)})"
    )


async def test_list_show_replay_purge_dead_letters(pipeline_settings: Settings) -> None:
    settings = pipeline_settings
    topology = await declare(settings)
    spec = topology.pipeline_specs(settings)["renderer.accepted"]
    dlq, work = topology.dlq_name(spec.name), spec.name
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    # Given three jobs parked by the renderer, two for validation and one for a timeout
    await park(settings, first, "validation: unknown checkpoint", attempt=1)
    await park(settings, second, "timeout: gave up after 4 attempts", attempt=4)
    await park(settings, third, "validation: bad LoRA", attempt=1)
    await wait_depth(settings, dlq, 3)

    # When listed, they are shown with job, reason, attempt and age, and stay parked
    listed = as_json(await cli(settings, "dlq", "list", "--json"))
    assert listed["queue"] == dlq
    letters = {d["job_id"]: d for d in listed["dead_letters"]}
    assert set(letters) == {str(first), str(second), str(third)}
    assert letters[str(second)]["reason"] == "timeout: gave up after 4 attempts"
    assert letters[str(second)]["attempt"] == 4
    assert all(d["age_seconds"] is not None and d["age_seconds"] >= 0 for d in letters.values())
    assert await queue_depth(settings, dlq) == 3
    # … with ids that do not change from one listing to the next
    again = as_json(await cli(settings, "dlq", "list", "--json", "--queue", "renderer"))
    assert {d["id"] for d in again["dead_letters"]} == {d["id"] for d in letters.values()}

    # And the human table names them too
    table = await cli(settings, "dlq", "list")
    assert table.exit_code == 0 and letters[str(first)]["id"] in table.stdout

    # When one is shown, its headers and body are there in full
    shown = as_json(await cli(settings, "dlq", "show", letters[str(second)]["id"], "--json"))
    assert shown["headers"]["x-park-reason"] == "timeout: gave up after 4 attempts"
    assert shown["body"]["job_id"] == str(second)
    assert shown["original_queue"] == work
    missing = await cli(settings, "dlq", "show", "feedfeedfeed")
    assert missing.exit_code == 1 and "no dead letter" in missing.stderr

    # When one job's dead letter is replayed, it goes back to the work queue with a fresh
    # attempt count, and only it leaves the DLQ
    replayed = as_json(await cli(settings, "dlq", "replay", "--job", str(second), "--json"))
    assert [d["job_id"] for d in replayed["replayed"]] == [str(second)]
    assert replayed["target"] == work and replayed["kept"] == 2
    await wait_depth(settings, dlq, 2)
    ((body, headers),) = await drain(settings, work)
    assert json.loads(body)["job_id"] == str(second)
    for stale in ("x-attempt", "x-park-reason", "x-avoid-backends", "x-death", "x-error-kind"):
        assert stale not in headers, stale
    assert headers["job_id"] == str(second) and headers["x-replay-count"] == 1
    assert headers["x-replayed-from"] == dlq

    # When those whose reason mentions validation are replayed, both go back
    by_reason = as_json(
        await cli(settings, "dlq", "replay", "--reason-contains", "VALIDATION", "--json")
    )
    assert {d["job_id"] for d in by_reason["replayed"]} == {str(first), str(third)}
    await wait_depth(settings, dlq, 0)
    assert len(await drain(settings, work)) == 2

    # Replaying an id that is not there fails with exit 1; no selector is a usage error
    assert (await cli(settings, "dlq", "replay", "feedfeedfeed")).exit_code == 1
    assert (await cli(settings, "dlq", "replay")).exit_code == 2

    # Purge: refused without --yes (exit 2, nothing deleted), done with it
    await park(settings, first, "validation: again", attempt=1)
    await park(settings, second, "timeout: again", attempt=2)
    await wait_depth(settings, dlq, 2)
    refused = await cli(settings, "dlq", "purge")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert await queue_depth(settings, dlq) == 2
    purged = as_json(await cli(settings, "dlq", "purge", "--job", str(first), "--yes", "--json"))
    assert [d["job_id"] for d in purged["purged"]] == [str(first)] and purged["kept"] == 1
    everything = as_json(await cli(settings, "dlq", "purge", "--yes", "--json"))
    assert len(everything["purged"]) == 1
    await wait_depth(settings, dlq, 0)


async def test_broker_dead_letters_are_listed_and_replayed_to_their_queue(
    pipeline_settings: Settings,
) -> None:
    settings = pipeline_settings
    topology = await declare(settings)
    spec = topology.pipeline_specs(settings)["archiver.rendered"]
    dlq = topology.dlq_name(spec.name)
    job_id = uuid.uuid4()
    # Given a message the broker dead-lettered itself (no x-park-reason, an x-death)
    await dead_letter_by_broker(settings, spec.name, job_id)
    await wait_depth(settings, dlq, 1)

    listed = as_json(await cli(settings, "dlq", "list", "-q", "archiver.job.rendered", "--json"))
    (letter,) = listed["dead_letters"]
    assert letter["job_id"] == str(job_id)
    assert "rejected" in letter["reason"] and spec.name in letter["reason"]

    # When replayed by id, it lands in its own work queue without the death record
    replayed = as_json(await cli(settings, "dlq", "replay", letter["id"], "-q", dlq, "--json"))
    assert replayed["target"] == spec.name and len(replayed["replayed"]) == 1
    await wait_depth(settings, dlq, 0)
    ((_, headers),) = await drain(settings, spec.name)
    assert "x-death" not in headers and "x-first-death-reason" not in headers


async def test_queues_table_counts_every_pipeline_queue(pipeline_settings: Settings) -> None:
    settings = pipeline_settings
    topology = await declare(settings)
    await park(settings, uuid.uuid4(), "validation: x", attempt=1)
    dlq = topology.dlq_name(topology.pipeline_specs(settings)["renderer.accepted"].name)
    await wait_depth(settings, dlq, 1)

    # Passive declares: ready and consumers, for every work, retry and dead-letter queue
    report = as_json(await cli(settings, "queues", "--amqp", "--json"))
    assert report["source"] == "amqp"
    by_name = {q["name"]: q for q in report["queues"]}
    for spec in topology.pipeline_specs(settings).values():
        assert by_name[spec.name]["role"] == "work" and by_name[spec.name]["exists"]
        for delay in spec.retry_delays:
            assert by_name[topology.retry_name(spec.name, delay)]["role"] == "retry"
    assert by_name[dlq]["ready"] == 1 and by_name[dlq]["role"] == "dlq"
    assert by_name[dlq]["oldest_age_seconds"] is not None
    assert by_name[dlq]["unacked"] is None  # not known without the management API
    # The DLQ is still holding its message after being peeked
    assert await queue_depth(settings, dlq) == 1

    # --check fails (exit 1) while a dead letter waits or a work queue has no consumer
    check = await cli(settings, "queues", "--amqp", "--check")
    assert check.exit_code == 1 and f"{dlq} holds 1 dead letter" in check.stderr
    assert "source: AMQP passive declares" in check.stdout


async def test_queues_from_the_management_api_when_it_answers(
    pipeline_settings: Settings,
) -> None:
    from shared.queues import BrokerUnreachable, management_endpoint, management_queues

    try:
        await management_queues(management_endpoint(pipeline_settings))
    except BrokerUnreachable:
        pytest.skip("RabbitMQ's management API does not answer on this machine")
    settings = pipeline_settings
    topology = await declare(settings)
    await park(settings, uuid.uuid4(), "validation: x", attempt=1)
    dlq = topology.dlq_name(topology.pipeline_specs(settings)["renderer.accepted"].name)
    await wait_depth(settings, dlq, 1)

    async def report() -> dict[str, Any]:
        document: dict[str, Any] = as_json(await cli(settings, "queues", "--json"))
        return document

    # The management API's figures lag a little behind the broker: wait for them.
    for _ in range(100):
        document = await report()
        by_name = {q["name"]: q for q in document["queues"]}
        if by_name[dlq]["ready"] == 1:
            break
        await asyncio.sleep(0.2)
    assert document["source"] == "management"
    assert by_name[dlq]["ready"] == 1 and by_name[dlq]["unacked"] == 0
    assert by_name[dlq]["oldest_age_seconds"] is not None
    table = await cli(settings, "queues")
    assert "source: management API" in table.stdout


async def test_errors_are_one_line_with_their_exit_code(pipeline_settings: Settings) -> None:
    settings = pipeline_settings
    await declare(settings)
    # Nothing listens on that port: exit 3, no traceback
    dead = settings.model_copy(update={"amqp_url": "amqp://guest:guest@127.0.0.1:9/"})
    for args in (("dlq", "list"), ("queues", "--amqp"), ("dlq", "replay", "--all")):
        result = await cli(dead, *args)
        assert result.exit_code == 3, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr and "cannot reach RabbitMQ" in result.stderr
    # Wrong password: exit 4
    host = settings.amqp_url.split("@", 1)[1]
    bad = settings.model_copy(update={"amqp_url": f"amqp://guest:wrong@{host}"})
    result = await cli(bad, "dlq", "list")
    assert result.exit_code == 4, (result.stdout, result.stderr)
    assert "refused the credentials" in result.stderr
    # A queue that is not one of the pipeline's: exit 2, with the choices
    result = await cli(settings, "dlq", "list", "--queue", "nope")
    assert result.exit_code == 2 and "choose one of" in result.stderr
