"""shared/queues.py and the CLI's error mapping, without a broker."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import aiormq
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from cli.common import EXIT_AUTH, EXIT_UNREACHABLE, EXIT_USAGE, classify
from shared.queues import (
    AuthFailed,
    BrokerUnreachable,
    DeadLetterFilter,
    UnknownQueue,
    dead_letter_queues,
    describe,
    inspect_queues,
    last_attempt,
    management_endpoint,
    pipeline_queues,
    replay_message,
    resolve_dlq,
)
from shared.settings import Settings
from shared.topology import Topology


def settings(**overrides: Any) -> Settings:
    return Settings.model_validate({"queue_prefix": "t.", "exchange": "t.events", **overrides})


@dataclasses.dataclass
class FakeMessage:
    body: bytes
    headers: dict[str, Any]
    correlation_id: str | None = "corr-1"
    message_id: str | None = "msg-1"
    timestamp: datetime | None = None
    content_type: str | None = "application/json"
    content_encoding: str | None = None
    priority: int | None = None


def test_every_pipeline_queue_is_listed_once_with_its_role() -> None:
    s = settings()
    topology = Topology.from_settings(s)
    refs = pipeline_queues(s)
    names = [r.name for r in refs]
    assert len(names) == len(set(names))
    for spec in topology.pipeline_specs(s).values():
        assert spec.name in names
        for delay in spec.retry_delays:
            assert topology.retry_name(spec.name, delay) in names
    dlqs = dead_letter_queues(s)
    assert all(r.role == "dlq" and r.name.endswith(".dlq") for r in dlqs)
    renderer = resolve_dlq(s)
    assert renderer.name == "t.renderer.job.accepted.dlq"
    assert renderer.work_queue == "t.renderer.job.accepted"


@pytest.mark.parametrize(
    "typed",
    [
        None,
        "renderer",
        "renderer.accepted",
        "renderer.job.accepted",
        "t.renderer.job.accepted",
        "renderer.job.accepted.dlq",
        "t.renderer.job.accepted.dlq",
    ],
)
def test_an_operator_names_a_dlq_any_natural_way(typed: str | None) -> None:
    assert resolve_dlq(settings(), typed).name == "t.renderer.job.accepted.dlq"


def test_other_dlqs_and_unknown_names() -> None:
    s = settings()
    assert resolve_dlq(s, "ingest").name == "t.ingest.job.submitted.dlq"
    assert resolve_dlq(s, "archiver.job.rendered").name == "t.archiver.job.rendered.dlq"
    assert resolve_dlq(s, "archiver").name == "t.archiver.ledger.dlq"
    with pytest.raises(UnknownQueue, match="choose one of"):
        resolve_dlq(s, "painter")


def test_management_endpoint_follows_the_amqp_url() -> None:
    endpoint = management_endpoint(settings(amqp_url="amqp://ops:s%40cret@mq.example:5672/anime"))
    assert endpoint.base_url == "http://mq.example:15672"
    assert (endpoint.user, endpoint.password, endpoint.vhost) == ("ops", "s@cret", "anime")
    assert endpoint.queues_url().endswith("/api/queues/anime")
    assert management_endpoint(settings()).queues_url().endswith("/api/queues/%2F")
    assert management_endpoint(settings(management_port=25672)).base_url == "http://127.0.0.1:25672"
    assert (
        management_endpoint(settings(management_url="http://rabbitmq:15672/")).base_url
        == "http://rabbitmq:15672"
    )


def test_a_parked_message_is_described_and_replayed_with_a_fresh_attempt_count() -> None:
    job_id = str(uuid.uuid4())
    parked = FakeMessage(
        body=b'{"job_id": "%s", "occurred_at": "2026-01-01T00:00:00+00:00"}' % job_id.encode(),
        headers={
            "job_id": job_id,
            "event_type": "job.accepted",
            "x-attempt": 4,
            "x-park-reason": "timeout: gave up",
            "x-parked-by": "renderer",
            "x-original-queue": "renderer.job.accepted",
            "x-avoid-backends": "http://gpu-1:8188",
            "x-delivery-count": 3,
            "x-error-kind": "timeout",
            "x-death": [{"queue": "renderer.job.accepted", "reason": "rejected", "count": 1}],
        },
    )
    letter = describe(parked, "renderer.job.accepted.dlq")  # type: ignore[arg-type]
    assert (letter.job_id, letter.reason, letter.attempt) == (job_id, "timeout: gave up", 4)
    assert letter.original_queue == "renderer.job.accepted"
    assert letter.age_seconds is not None and letter.age_seconds > 0
    # The id survives what listing changes (the DLQ's own delivery count)
    relisted = dataclasses.replace(parked, headers={**parked.headers, "x-delivery-count": 9})
    assert describe(relisted, "q").id == letter.id  # type: ignore[arg-type]

    fresh = replay_message(parked, "renderer.job.accepted.dlq")  # type: ignore[arg-type]
    assert fresh.body == parked.body
    assert fresh.headers == {
        "job_id": job_id,
        "event_type": "job.accepted",
        "x-replay-count": 1,
        "x-replayed-from": "renderer.job.accepted.dlq",
    }
    assert fresh.delivery_mode.value == 2  # persistent
    assert (fresh.correlation_id, fresh.message_id) == ("corr-1", "msg-1")
    again = replay_message(
        FakeMessage(body=b"{}", headers=dict(fresh.headers)),
        "q",  # type: ignore[arg-type]
    )
    assert again.headers["x-replay-count"] == 2
    # A renderer redrive numbers the new attempts after the failed run's last one
    redriven = replay_message(parked, "q", attempt_base=last_attempt(parked.headers))  # type: ignore[arg-type]
    assert (redriven.headers["x-attempt-base"], redriven.headers["x-attempt"]) == (4, 5)
    assert last_attempt({"x-attempt-base": 5, "x-attempt": 7}) == 7
    assert last_attempt({"x-attempt-base": 5}) == 6 and last_attempt({}) == 1


def test_a_broker_dead_letter_reads_its_reason_from_x_death() -> None:
    died = datetime.now(UTC) - timedelta(minutes=3)
    message = FakeMessage(
        body=b"not json",
        headers={
            "x-death": [{"queue": "archiver.ledger", "reason": "delivery_limit", "time": died}]
        },
    )
    letter = describe(message, "archiver.ledger.dlq")  # type: ignore[arg-type]
    assert letter.reason == "delivery_limit (by the broker, from archiver.ledger)"
    assert letter.body == "not json" and letter.job_id is None and letter.attempt is None
    assert letter.age_seconds is not None and 170 < letter.age_seconds < 600


def test_filters_select_nothing_unless_told() -> None:
    letter = describe(
        FakeMessage(body=b"{}", headers={"job_id": "j1", "x-park-reason": "Validation: bad"}),
        "q",  # type: ignore[arg-type]
    )
    assert not DeadLetterFilter().matches(letter)
    assert DeadLetterFilter(everything=True).matches(letter)
    assert DeadLetterFilter(job="j1").matches(letter)
    assert not DeadLetterFilter(job="j2").matches(letter)
    assert DeadLetterFilter(reason_contains="VALIDATION").matches(letter)
    assert DeadLetterFilter(ids=frozenset({letter.id}), job="j1").matches(letter)
    assert not DeadLetterFilter(ids=frozenset({"other"}), everything=True).matches(letter)


async def test_queue_figures_come_from_the_management_api_when_it_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = settings()
    dlq = resolve_dlq(s).name
    seen: dict[str, Any] = {}

    async def queues(request: web.Request) -> web.Response:
        seen["auth"] = request.headers.get("Authorization")
        seen["columns"] = request.query.get("columns")
        rows = [
            {
                "name": q.name,
                "messages_ready": 2,
                "messages_unacknowledged": 1,
                "consumers": 3,
                "message_stats": {"publish_details": {"rate": 1.5}, "ack_details": {"rate": 0.5}},
            }
            for q in pipeline_queues(s)
            if q.name not in ("t.archiver.ledger", dlq)
        ]
        rows.append(
            {
                "name": dlq,
                "messages_ready": 4,
                "messages_unacknowledged": 0,
                "consumers": 0,
                "head_message_timestamp": 1,
            }
        )
        return web.json_response(rows)

    app = web.Application()
    app.router.add_get("/api/queues/{vhost}", queues)
    async with TestServer(app) as server:
        s = settings(
            amqp_url=f"amqp://guest:guest@127.0.0.1:{server.port}/", management_port=server.port
        )
        report = await inspect_queues(s, peek_dead_letters=False)
    assert report.source == "management" and report.note is None
    assert seen["auth"] == "Basic Z3Vlc3Q6Z3Vlc3Q=" and "messages_ready" in seen["columns"]
    by_name = {q.name: q for q in report.queues}
    assert not by_name["t.archiver.ledger"].exists
    work = by_name["t.renderer.job.accepted"]
    assert (work.ready, work.unacked, work.consumers, work.publish_rate, work.ack_rate) == (
        2,
        1,
        3,
        1.5,
        0.5,
    )
    assert work.deliver_rate is None and work.oldest_age_seconds is None
    assert by_name[dlq].ready == 4 and by_name[dlq].oldest_age_seconds is not None


async def test_management_api_refusals_are_told_apart() -> None:
    from shared.queues import management_queues

    async def refuse(_: web.Request) -> web.Response:
        return web.Response(status=401)

    app = web.Application()
    app.router.add_get("/api/queues/{vhost}", refuse)
    async with TestServer(app) as server:
        endpoint = dataclasses.replace(
            management_endpoint(settings()), base_url=f"http://127.0.0.1:{server.port}"
        )
        with pytest.raises(AuthFailed):
            await management_queues(endpoint)
    closed = dataclasses.replace(endpoint, base_url="http://127.0.0.1:9")
    with pytest.raises(BrokerUnreachable):
        await management_queues(closed)


def test_errors_map_to_exit_codes() -> None:
    assert classify(AuthFailed("no"))[0] == EXIT_AUTH  # type: ignore[index]
    assert classify(BrokerUnreachable("no"))[0] == EXIT_UNREACHABLE  # type: ignore[index]
    assert classify(UnknownQueue("no"))[0] == EXIT_USAGE  # type: ignore[index]
    assert classify(aiormq.exceptions.ProbableAuthenticationError("x"))[0] == EXIT_AUTH  # type: ignore[index]
    assert classify(ConnectionRefusedError(111, "refused"))[0] == EXIT_UNREACHABLE  # type: ignore[index]
    handshake = aiohttp.WSServerHandshakeError(
        request_info=None,
        history=(),
        status=401,
        message="Unauthorized",  # type: ignore[arg-type]
    )
    assert classify(handshake)[0] == EXIT_AUTH  # type: ignore[index]
    assert classify(ValueError("mine")) is None
