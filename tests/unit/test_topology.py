"""Queue names and arguments come from one place and follow one scheme."""

from shared.events import EventType
from shared.settings import Settings
from shared.topology import Topology


def test_work_queue_dead_letters_to_its_own_dlq_through_the_default_exchange() -> None:
    topology = Topology(exchange="x", prefix="t.")
    spec = topology.work("renderer", EventType.ACCEPTED, delivery_limit=3)
    queue = topology.work_queue(spec)
    assert queue.name == "t.renderer.job.accepted"
    assert queue.arguments is not None
    assert queue.arguments["x-dead-letter-exchange"] == ""
    assert queue.arguments["x-dead-letter-routing-key"] == "t.renderer.job.accepted.dlq"
    assert queue.arguments["x-delivery-limit"] == 3
    assert queue.arguments["x-dead-letter-strategy"] == "at-least-once"
    assert queue.arguments["x-queue-type"] == "quorum"
    assert spec.binding_keys == ("job.accepted.#",)


def test_retry_queues_expire_back_into_the_work_queue() -> None:
    topology = Topology()
    spec = topology.work("renderer", EventType.ACCEPTED, retry_delays=[5, 0.25])
    first, second = topology.retry_queues(spec)
    assert first.name == "renderer.job.accepted.retry.5s"
    assert second.name == "renderer.job.accepted.retry.250ms"
    assert first.arguments is not None
    assert first.arguments["x-message-ttl"] == 5000
    assert first.arguments["x-dead-letter-routing-key"] == "renderer.job.accepted"


def test_dlq_name_is_idempotent() -> None:
    assert Topology.dlq_name("a.dlq") == "a.dlq"
    assert Topology.dlq_name("a") == "a.dlq"


def test_the_ledger_queue_hears_every_event_but_raw_submissions() -> None:
    specs = Topology().pipeline_specs(Settings())
    keys = specs["archiver.ledger"].binding_keys
    assert "job.submitted.#" not in keys
    assert {f"{t.value}.#" for t in EventType if t is not EventType.SUBMITTED} == set(keys)


def test_fanout_queues_are_exclusive_and_transient() -> None:
    queue = Topology().fanout_queue("notifier", "ledger.#", replica="r1")
    assert queue.name == "notifier.fanout.r1"
    assert queue.exclusive and queue.auto_delete and not queue.durable
