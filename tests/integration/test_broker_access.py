"""The broker enforces who may publish and bind what (shared/broker_access.py).

Users and rights are provisioned on the real broker for this test's own pipeline (its
prefix is in every user name) and deleted afterwards. A refusal is RabbitMQ's
``ACCESS_REFUSED``, which closes the channel: that is the positive marker. "Nothing got
through" is checked with a spy queue bound to ``#`` on the events exchange: after the
refused attempts an allowed sentinel is published, and once it has arrived the spy must
hold only what was allowed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
import aiormq
import pytest
import pytest_asyncio

from shared.broker_access import (
    INTERNAL_ROLES,
    BrokerAccess,
    Management,
    ProvisioningError,
    new_password,
    provision,
    revoke,
)
from shared.settings import Settings
from shared.topology import Topology
from tests.support.services import IN_CI
from tests.support.wait import eventually

pytestmark = pytest.mark.integration

PROJECT = "neon-skies"
OTHER = "other-show"
SUBMITTER = "storyboard"


@dataclass
class Door:
    settings: Settings
    access: BrokerAccess
    topology: Topology
    urls: dict[str, str]

    def url(self, role: str) -> str:
        user = (
            self.access.submitter_user(SUBMITTER)
            if role == "submitter"
            else self.access.user_name(role)
        )
        return self.urls[user]

    def queue(self, key: str) -> str:
        return self.topology.pipeline_specs(self.settings)[key].name


@pytest_asyncio.fixture
async def door(pipeline_settings: Settings) -> AsyncIterator[Door]:
    settings = pipeline_settings
    try:
        await Management.from_settings(settings).whoami()
    except ProvisioningError as exc:
        if IN_CI:
            pytest.fail(f"the broker's management API is needed: {exc}")
        pytest.skip(f"the broker's management API is needed: {exc}")
    passwords = {role: new_password() for role in INTERNAL_ROLES}
    urls = await provision(settings, passwords, submitters=[(SUBMITTER, [PROJECT], new_password())])
    try:
        yield Door(settings, BrokerAccess(settings), Topology.from_settings(settings), urls)
    finally:
        await revoke(settings, urls)


async def publish(url: str, exchange: str, key: str, body: bytes = b"{}") -> None:
    """Publish one confirmed, mandatory message as the user in ``url``."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        target = (
            channel.default_exchange
            if exchange == ""
            else await channel.get_exchange(exchange, ensure=False)
        )
        await target.publish(aio_pika.Message(body), routing_key=key)


async def refused(url: str, exchange: str, key: str) -> None:
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
        await publish(url, exchange, key)


async def depth(admin_url: str, queue: str) -> int:
    connection = await aio_pika.connect(admin_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count
        assert count is not None
        return count


class Spy:
    """A queue bound to ``#`` on the events exchange: sees everything that got through."""

    def __init__(self, admin_url: str, exchange: str) -> None:
        self.admin_url, self.exchange = admin_url, exchange
        self.bodies: list[bytes] = []

    async def __aenter__(self) -> Spy:
        self.connection = await aio_pika.connect(self.admin_url)
        channel = await self.connection.channel()
        self.queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await self.queue.bind(self.exchange, routing_key="#")
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.connection.close()

    async def seen(self, sentinel: bytes) -> list[bytes]:
        async def probe() -> bool:
            while (message := await self.queue.get(no_ack=True, fail=False)) is not None:
                self.bodies.append(message.body)
            return sentinel in self.bodies

        await eventually(probe, timeout=10, what="the sentinel reached the spy")
        return self.bodies


async def test_a_submitter_reaches_ingest_through_its_door(door: Door) -> None:
    submitter = door.url("submitter")
    ingest_queue = door.queue("ingest.submitted")
    body = uuid.uuid4().hex.encode()
    await publish(submitter, door.access.intake, f"job.submitted.{PROJECT}", body)

    async def arrived() -> bool:
        return await depth(door.settings.amqp_url, ingest_queue) == 1

    await eventually(arrived, what="job.submitted in ingest's queue")


@pytest.mark.parametrize(
    ("exchange", "key"),
    [
        ("intake", "job.accepted.neon-skies"),
        ("intake", "job.rendered.neon-skies"),
        ("intake", "ledger.job.progress.neon-skies"),
        ("intake", f"job.submitted.{OTHER}"),
        ("intake", "job.submitted.neon-skies.extra"),
        ("events", "job.submitted.neon-skies"),
        ("events", "job.accepted.neon-skies"),
        ("events", "ledger.job.progress.neon-skies"),
        ("default", "ingest.job.submitted"),
    ],
)
async def test_a_submitter_cannot_forge_anything_else(door: Door, exchange: str, key: str) -> None:
    admin = door.settings.amqp_url
    names = {"intake": door.access.intake, "events": door.access.exchange, "default": ""}
    if exchange == "default":
        key = door.queue("renderer.accepted")
    async with Spy(admin, door.access.exchange) as spy:
        await refused(door.url("submitter"), names[exchange], key)
        sentinel = uuid.uuid4().hex.encode()
        await publish(
            door.url("submitter"), door.access.intake, f"job.submitted.{PROJECT}", sentinel
        )
        assert await spy.seen(sentinel) == [sentinel]
    for queue in ("renderer.accepted", "archiver.ledger", "archiver.rendered"):
        assert await depth(admin, door.queue(queue)) == 0, queue


async def test_a_submitter_cannot_touch_the_pipelines_queues(door: Door) -> None:
    submitter = door.url("submitter")
    spec = door.topology.pipeline_specs(door.settings)["ingest.submitted"]
    await publish(door.settings.amqp_url, door.access.intake, f"job.submitted.{PROJECT}")

    async def one() -> bool:
        return await depth(door.settings.amqp_url, spec.name) == 1

    await eventually(one, what="a message in ingest's queue")
    connection = await aio_pika.connect(submitter)
    async with connection:
        for attempt in ("declare", "purge", "delete", "consume"):
            channel = await connection.channel()
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                if attempt == "declare":
                    work = door.topology.work_queue(spec)
                    await channel.declare_queue(
                        work.name, durable=True, arguments=dict(work.arguments or {})
                    )
                else:
                    queue = await channel.get_queue(spec.name, ensure=False)
                    if attempt == "purge":
                        await queue.purge()
                    elif attempt == "delete":
                        await queue.delete(if_unused=False, if_empty=False)
                    else:
                        await queue.get(no_ack=True)
    assert await depth(door.settings.amqp_url, spec.name) == 1


async def test_a_submitter_watches_its_projects_ledger_only(door: Door) -> None:
    submitter = door.url("submitter")
    own = door.access.submitter_queue_prefix(SUBMITTER) + "watch"
    connection = await aio_pika.connect(submitter)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(own, exclusive=True, auto_delete=True)
        await queue.bind(door.access.exchange, routing_key=f"ledger.*.*.{PROJECT}")
        for key in (f"ledger.*.*.{OTHER}", "ledger.#", "#", "ledger.*.*.*", f"job.*.{PROJECT}"):
            probe = await (await connection.channel()).get_queue(own, ensure=False)
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                await probe.bind(door.access.exchange, routing_key=key)
        archiver = door.url("archiver")
        await publish(archiver, door.access.exchange, f"ledger.job.progress.{OTHER}", b"other")
        await publish(archiver, door.access.exchange, f"ledger.job.progress.{PROJECT}", b"mine")
        got: list[bytes] = []

        async def mine() -> bool:
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                got.append(message.body)
            return b"mine" in got

        await eventually(mine, what="the project's ledger entry")
        assert got == [b"mine"]


FORBIDDEN = [
    ("ingest", "job.rendered.neon-skies"),
    ("ingest", "job.submitted.neon-skies"),
    ("ingest", "ledger.job.progress.neon-skies"),
    ("renderer", "job.accepted.neon-skies"),
    ("renderer", "job.archived.neon-skies"),
    ("renderer", "ledger.job.rendered.neon-skies"),
    ("archiver", "job.accepted.neon-skies"),
    ("archiver", "job.rendered.neon-skies"),
    ("notifier", "job.archived.neon-skies"),
    ("notifier", "ledger.job.archived.neon-skies"),
    ("ops", "job.rendered.neon-skies"),
]


@pytest.mark.parametrize(("role", "key"), FORBIDDEN)
async def test_a_service_publishes_only_its_own_event_types(
    door: Door, role: str, key: str
) -> None:
    async with Spy(door.settings.amqp_url, door.access.exchange) as spy:
        await refused(door.url(role), door.access.exchange, key)
        sentinel = uuid.uuid4().hex.encode()
        await publish(door.url("ingest"), door.access.exchange, "job.accepted.neon-skies", sentinel)
        assert await spy.seen(sentinel) == [sentinel]


async def test_each_service_may_publish_its_own_events(door: Door) -> None:
    allowed = [
        ("ingest", "job.rejected.unassigned"),
        ("renderer", "job.progress.neon-skies"),
        ("archiver", "job.archived.neon-skies"),
        ("archiver", "ledger.job.archived.neon-skies"),
        ("notifier", "job.redriven.neon-skies"),
        ("ops", "job.cancel_requested.neon-skies"),
    ]
    async with Spy(door.settings.amqp_url, door.access.exchange) as spy:
        bodies = []
        for role, key in allowed:
            body = f"{role}:{key}".encode()
            bodies.append(body)
            await publish(door.url(role), door.access.exchange, key, body)
        assert sorted(await spy.seen(bodies[-1])) == sorted(bodies)


async def test_a_service_cannot_declare_another_services_queue(door: Door) -> None:
    spec = door.topology.pipeline_specs(door.settings)["ingest.submitted"]
    queue = door.topology.work_queue(spec)
    connection = await aio_pika.connect(door.url("renderer"))
    async with connection:
        channel = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await channel.declare_queue(
                queue.name, durable=True, arguments=dict(queue.arguments or {})
            )
