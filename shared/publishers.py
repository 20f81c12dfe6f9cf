"""Who published a message: RabbitMQ's validated ``user_id``, checked per event type.

Every message a service or the CLI publishes carries ``user_id`` = its own broker user,
and RabbitMQ refuses a publish whose ``user_id`` is not the connection's user (see
"Validated User-ID" in RabbitMQ's documentation): the property cannot be forged. So a
consumer can tell which principal published a message, and refuse an event type that
principal may not publish, even from a principal the broker lets onto the exchange
(the administrator, a leaked credential of another service). The rights themselves are
the ones ``shared/broker_access.py`` gives each principal (``PUBLISHES``).

With one broker user for everything (local development as ``guest``) there is nothing
to tell apart and every publisher is accepted; as soon as a service runs as its own
user (``anime broker provision``), the check is on.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from shared.broker_access import INTERNAL_ROLES, PUBLISHES, BrokerAccess
from shared.events import EventType
from shared.settings import Settings

#: Who moves messages between queues besides their publishers: the renderer (priority
#: bands, retries) for its own queues, and whoever replays dead letters.
REPLAYERS = ("ops", "notifier")


def broker_user(amqp_url: str) -> str:
    """The user name in an AMQP URL (RabbitMQ's default, ``guest``, when none is given)."""
    username = urlsplit(amqp_url).username
    return unquote(username) if username else "guest"


class Publishers:
    """Which broker users may publish which event types, for one pipeline."""

    def __init__(self, settings: Settings) -> None:
        access = BrokerAccess(settings)
        self.user = broker_user(settings.amqp_url)
        self._names = {role: access.user_name(role) for role in INTERNAL_ROLES}
        self._operators = frozenset(settings.broker_operators)
        #: Off while every service shares one broker user (nothing to tell apart).
        self.enforced = self.user in self._names.values()
        # Worked out once: refusal() runs for every message.
        self._allowed: dict[tuple[EventType, tuple[str, ...], bool], frozenset[str]] = {}

    def roles_for(self, event_type: EventType) -> tuple[str, ...]:
        return tuple(role for role, types in PUBLISHES.items() if event_type in types)

    def users(self, roles: Iterable[str]) -> frozenset[str]:
        roles = tuple(roles)
        users = frozenset(self._names[r] for r in roles if r in self._names)
        return users | self._operators if "ops" in roles else users

    def refusal(
        self,
        user_id: str | None,
        event_type: EventType,
        *,
        also: tuple[str, ...] = (),
        replayed: bool = False,
    ) -> str | None:
        """Why ``user_id`` may not have published ``event_type`` here; None if it may.

        ``also``: roles that legitimately move such messages into this queue (the
        renderer's own hops). ``replayed``: the message says it came back from a dead
        letter queue, so the replayers may have sent it.
        """
        if not self.enforced:
            return None
        key = (event_type, also, replayed)
        allowed = self._allowed.get(key)
        if allowed is None:
            roles = (*self.roles_for(event_type), *also, *(REPLAYERS if replayed else ()))
            allowed = self._allowed[key] = self.users(roles)
        if user_id in allowed:
            return None
        who = repr(user_id) if user_id else "an unnamed publisher"
        return f"forged: {event_type.value} published by {who}, which may not publish it"
