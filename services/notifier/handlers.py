"""Notifier's subscription: this replica's own queue of ledger entries."""

from __future__ import annotations

from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitMessage, RabbitQueue, RabbitRouter
from pydantic import ValidationError

from services.notifier import SERVICE
from services.notifier.hub import Hub
from shared.events import LedgerEntry
from shared.logging import get_logger
from shared.messaging import undecoded, with_message
from shared.runtime import ServiceRuntime
from shared.topology import LEDGER_PREFIX

log = get_logger(__name__)

#: What the live queue is bound to while this replica has watchers.
LIVE_BINDING = f"{LEDGER_PREFIX}.#"


def live_queue(runtime: ServiceRuntime) -> RabbitQueue:
    """This replica's exclusive queue of ledger relays (bound by :class:`LiveFeed`)."""
    return runtime.topology.fanout_queue(SERVICE, LIVE_BINDING)


def build_router(
    runtime: ServiceRuntime, hub: Hub, queue: RabbitQueue, *, prefetch: int = 512
) -> RabbitRouter:
    router = RabbitRouter()

    # ACK: these are live copies of rows already committed to the ledger; a watcher that
    # misses one (notifier restart) catches up from PostgreSQL. They are not trusted:
    # anyone who may publish to the exchange can send one (see ledger_check.py). No
    # exchange here: the queue is bound to ledger.# only while somebody watches (live.py).
    @router.subscriber(
        queue,
        channel=Channel(prefetch_count=prefetch),
        decoder=undecoded,
        ack_policy=AckPolicy.ACK,
    )
    @with_message
    async def on_ledger_entry(msg: RabbitMessage) -> None:
        """A recorded job event, as a hint: the hub relays what the ledger holds."""
        try:
            entry = LedgerEntry.model_validate_json(msg.body)
        except ValidationError as exc:
            log.warning("notifier.bad_ledger_entry", error=str(exc)[:300])
            return
        hub.receive(entry)

    return router
