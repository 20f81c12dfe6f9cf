"""Who may do what on the broker: every principal and its rights, named once.

The pipeline's events are trusted by the services that consume them, so who may publish
which event is the broker's business, not the handlers'. RabbitMQ enforces it with

* vhost permissions: three regexes over resource names (``configure`` to declare or
  delete, ``write`` to publish to an exchange or bind a queue, ``read`` to consume,
  purge, or bind *from* an exchange), and
* topic permissions on a topic exchange: a ``write`` regex over the routing keys the user
  may publish with, and a ``read`` regex over the keys it may bind with.

A publish or bind outside them is refused with ``ACCESS_REFUSED``, which closes the
channel. Nothing is filtered in the services' hot path.

Principals (user names carry the topology's queue prefix, so isolated test pipelines get
users of their own):

* ``ingest``, ``renderer``, ``archiver``, ``notifier``: one user per service; each may
  declare only its own queues, publish only its own event types on the events exchange,
  and bind only with the keys its queues use.
* ``ops``: the operator's CLI (dead-letter replay and purge, cancel, submit).
* outside submitters: their own door, the ``<exchange>.intake`` topic exchange, bound
  into the events exchange for ``job.submitted.#`` only. A submitter may publish there
  with ``job.submitted.<one of its projects>`` and nothing else, and may watch the
  ledger of those projects through queues of its own; it has no right on the default
  exchange and none on any pipeline queue.

Internal principals may publish to the default exchange (parking in dead-letter queues,
retry and priority-band hops go through it); RabbitMQ checks only the exchange on such a
publish, so the internal services trust one another to that extent.

The same principals produce ``deploy/rabbitmq/definitions.json`` (:func:`definitions`)
and the provisioning step (:func:`provision`, ``anime broker provision``) that creates
them on a broker with an administrator account.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aiohttp

from shared.contract import PUBLISHES as CONTRACT
from shared.events import EventType
from shared.settings import Settings
from shared.topology import LEDGER_PREFIX, Topology

#: The internal services, each its own broker user.
SERVICE_ROLES = ("ingest", "renderer", "archiver", "notifier")
#: The operator's CLI.
OPS_ROLE = "ops"
INTERNAL_ROLES = (*SERVICE_ROLES, OPS_ROLE)
#: Suffix of the outside door's exchange: ``anime.events.intake``.
INTAKE_SUFFIX = ".intake"
#: Routing keys that may cross from the intake exchange into the events exchange.
INTAKE_BINDING_KEY = f"{EventType.SUBMITTED.value}.#"
SUBMITTER_PREFIX = "submitter."
#: Management tag for principals that read queue statistics over the HTTP API.
MANAGEMENT_TAG = "management"
DEFAULT_EXCHANGE = "amq.default"
HASHING_ALGORITHM = "rabbit_password_hashing_sha256"
#: Nothing matches it: a permission nobody is granted.
NOTHING = "^$"

#: Event types each internal principal publishes on the events exchange (the contract).
PUBLISHES: Mapping[str, tuple[EventType, ...]] = {role: CONTRACT[role] for role in INTERNAL_ROLES}

#: Fan-out bindings the services declare themselves (their per-replica queues).
FANOUT_KEYS: Mapping[str, tuple[str, ...]] = {
    "renderer": (f"{EventType.CANCEL_REQUESTED.value}.#",),
    "notifier": (f"{LEDGER_PREFIX}.#",),
}

_ONE_WORD = r"[^.]+"


def intake_exchange_name(exchange: str) -> str:
    """The outside publishers' exchange for an events exchange."""
    return exchange + INTAKE_SUFFIX


def password_env(role: str) -> str:
    """Environment variable that holds an internal principal's broker password."""
    return f"ANIME_BROKER_PASSWORD_{role.upper()}"


def _alternatives(items: Iterable[str]) -> str:
    escaped = sorted({re.escape(i) for i in items})
    if not escaped:
        return NOTHING
    return f"^({'|'.join(escaped)})$" if len(escaped) > 1 else f"^{escaped[0]}$"


def _any_of(patterns: Iterable[str]) -> str:
    parts = [p for p in patterns if p]
    return f"^({'|'.join(parts)})$" if parts else NOTHING


@dataclasses.dataclass(frozen=True)
class TopicRights:
    """Routing keys a principal may publish (``write``) and bind (``read``) on one exchange."""

    exchange: str
    write: str
    read: str


@dataclasses.dataclass(frozen=True)
class Principal:
    """One broker user and everything it may do."""

    role: str
    user: str
    configure: str
    write: str
    read: str
    topics: tuple[TopicRights, ...]
    tags: tuple[str, ...] = ()

    def user_entry(self, password_hash: str = "") -> dict[str, Any]:
        """The ``users`` entry of a definitions document.

        An empty ``password_hash`` is a user nobody can log in as until a password is
        set (verified on 3.10.8): what a committed file can honestly carry.
        """
        return {
            "name": self.user,
            "password_hash": password_hash,
            "hashing_algorithm": HASHING_ALGORITHM,
            "tags": list(self.tags),
            "limits": {},
        }

    def permission_entry(self, vhost: str) -> dict[str, str]:
        return {
            "user": self.user,
            "vhost": vhost,
            "configure": self.configure,
            "write": self.write,
            "read": self.read,
        }

    def topic_entries(self, vhost: str) -> list[dict[str, str]]:
        return [
            {
                "user": self.user,
                "vhost": vhost,
                "exchange": t.exchange,
                "write": t.write,
                "read": t.read,
            }
            for t in self.topics
        ]


class BrokerAccess:
    """The principals of one pipeline (one exchange and queue prefix)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topology = Topology.from_settings(settings)
        self.exchange = self.topology.exchange_name
        self.intake = intake_exchange_name(self.exchange)
        self.prefix = self.topology.prefix

    # ------------------------------------------------------------------ names

    def user_name(self, role: str) -> str:
        return f"{self.prefix}{role}"

    def submitter_user(self, name: str) -> str:
        return f"{self.prefix}{SUBMITTER_PREFIX}{name}"

    def submitter_queue_prefix(self, name: str) -> str:
        """Queues a submitter may declare (to watch progress) start with this."""
        return f"{self.submitter_user(name)}."

    def _own_queues(self, service: str) -> str:
        return re.escape(f"{self.prefix}{service}.") + ".+"

    def _dead_letter_queues(self) -> str:
        owners = "|".join(re.escape(s) for s in ("ingest", "renderer", "archiver"))
        return re.escape(self.prefix) + f"({owners})\\..+" + re.escape(".dlq")

    def _event_keys(self, types: Iterable[EventType]) -> str:
        names = "|".join(sorted(re.escape(t.value) for t in types))
        return f"({names})\\.{_ONE_WORD}"

    def binding_keys(self, service: str) -> tuple[str, ...]:
        """Every key the service binds its queues with (work queues and fan-out)."""
        keys: list[str] = []
        for spec in self.topology.pipeline_specs(self.settings).values():
            if spec.service == service:
                keys += spec.binding_keys
        keys += FANOUT_KEYS.get(service, ())
        return tuple(dict.fromkeys(keys))

    # ------------------------------------------------------------------ principals

    def service(self, service: str) -> Principal:
        """A service: its own queues, its own event types, the default exchange."""
        if service not in SERVICE_ROLES:
            raise ValueError(f"unknown service {service!r}")
        own = self._own_queues(service)
        exchange = re.escape(self.exchange)
        read = [exchange, own]
        if service == "notifier":
            read.append(self._dead_letter_queues())  # dashboard: list, replay, purge
        publish = self._event_keys(PUBLISHES[service])
        if service == "archiver":
            # The ledger relay: ledger.<event type>.<project>.
            publish = f"({publish}|{re.escape(LEDGER_PREFIX)}\\.job\\.[a-z_]+\\.{_ONE_WORD})"
        return Principal(
            role=service,
            user=self.user_name(service),
            configure=f"^{own}$",
            write=_any_of([exchange, re.escape(DEFAULT_EXCHANGE), own]),
            read=_any_of(read),
            topics=(
                TopicRights(
                    self.exchange,
                    write=f"^{publish}$",
                    read=_alternatives(self.binding_keys(service)),
                ),
            ),
            tags=(MANAGEMENT_TAG,) if service == "notifier" else (),
        )

    def ops(self) -> Principal:
        """The operator's CLI: dead letters, cancel requests, redrives, submissions."""
        return Principal(
            role=OPS_ROLE,
            user=self.user_name(OPS_ROLE),
            configure=NOTHING,
            write=_any_of(
                [re.escape(self.exchange), re.escape(self.intake), re.escape(DEFAULT_EXCHANGE)]
            ),
            read=f"^{self._dead_letter_queues()}$",
            topics=(
                TopicRights(
                    self.exchange, write=f"^{self._event_keys(PUBLISHES['ops'])}$", read=NOTHING
                ),
                TopicRights(
                    self.intake, write=f"^{self._event_keys([EventType.SUBMITTED])}$", read=NOTHING
                ),
            ),
            tags=(MANAGEMENT_TAG,),
        )

    def submitter(self, name: str, projects: Sequence[str]) -> Principal:
        """An outside system: submit for ``projects`` and watch their ledger, nothing else.

        Its queues (``<prefix>submitter.<name>.*``) are its own to declare, bind and read.
        On the events exchange it may only bind, and only with
        ``ledger.<type or *>.<one of its projects>``: never ``#``, never another project.
        """
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", name):
            raise ValueError(f"submitter name {name!r}: use lower-case letters, digits, - and _")
        if not projects:
            raise ValueError("a submitter needs at least one project")
        for project in projects:
            if not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?", project):
                raise ValueError(f"project {project!r} is not a slug")
        own = re.escape(self.submitter_queue_prefix(name)) + ".+"
        mine = "(" + "|".join(sorted(re.escape(p) for p in projects)) + ")"
        submitted = re.escape(EventType.SUBMITTED.value)
        ledger = re.escape(LEDGER_PREFIX)
        return Principal(
            role="submitter",
            user=self.submitter_user(name),
            configure=f"^{own}$",
            write=_any_of([re.escape(self.intake), own]),
            read=_any_of([re.escape(self.exchange), own]),
            topics=(
                TopicRights(self.intake, write=f"^{submitted}\\.{mine}$", read=NOTHING),
                TopicRights(
                    self.exchange,
                    write=NOTHING,
                    read=f"^{ledger}\\.(\\*|job)\\.(\\*|[a-z_]+)\\.{mine}$",
                ),
            ),
        )

    def internal(self) -> list[Principal]:
        return [*(self.service(s) for s in SERVICE_ROLES), self.ops()]

    # ------------------------------------------------------------------ documents

    def exchanges(self, vhost: str) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "vhost": vhost,
                "type": "topic",
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
            for name in (self.exchange, self.intake)
        ]

    def bindings(self, vhost: str) -> list[dict[str, Any]]:
        return [
            {
                "source": self.intake,
                "vhost": vhost,
                "destination": self.exchange,
                "destination_type": "exchange",
                "routing_key": INTAKE_BINDING_KEY,
                "arguments": {},
            }
        ]

    def policies(self, vhost: str) -> list[dict[str, Any]]:
        prefix = re.escape(self.prefix)
        return [
            {
                "vhost": vhost,
                "name": f"{self.prefix}anime-leaders-balanced",
                "pattern": f"^{prefix}(ingest|renderer|archiver)\\.",
                "apply-to": "queues",
                "priority": 0,
                "definition": {"queue-leader-locator": "balanced"},
            },
            {
                "vhost": vhost,
                "name": f"{self.prefix}anime-dead-letters-bounded",
                "pattern": f"^{prefix}(ingest|renderer|archiver)\\..*\\.dlq$",
                "apply-to": "queues",
                "priority": 10,
                "definition": {
                    "max-length-bytes": 2147483648,
                    "overflow": "reject-publish",
                    "queue-leader-locator": "balanced",
                },
            },
            {
                "vhost": vhost,
                "name": f"{self.prefix}anime-fanout-bounded",
                "pattern": f"^{prefix}notifier\\.fanout\\.",
                "apply-to": "queues",
                "priority": 10,
                "definition": {"max-length": 100000, "overflow": "drop-head"},
            },
        ]

    def definitions(
        self,
        vhost: str,
        *,
        principals: Sequence[Principal] | None = None,
        password_hashes: Mapping[str, str] | None = None,
        with_policies: bool = True,
    ) -> dict[str, Any]:
        """A RabbitMQ definitions document: vhost, users, rights, exchanges, the door.

        Queues are left out on purpose: their arguments follow the settings
        (delivery limit, retry tiers), so they are declared over AMQP instead.
        """
        chosen = list(principals) if principals is not None else self.internal()
        hashes = password_hashes or {}
        return {
            "rabbit_version": "3.13.0",
            "users": [p.user_entry(hashes.get(p.user, "")) for p in chosen],
            "vhosts": [{"name": vhost}],
            "permissions": [p.permission_entry(vhost) for p in chosen],
            "topic_permissions": [e for p in chosen for e in p.topic_entries(vhost)],
            "exchanges": self.exchanges(vhost),
            "queues": [],
            "bindings": self.bindings(vhost),
            "parameters": [],
            "policies": self.policies(vhost) if with_policies else [],
            "global_parameters": [],
        }


def deploy_definitions() -> dict[str, Any]:
    """What ``deploy/rabbitmq/definitions.json`` holds: production names, vhost ``anime``."""
    return BrokerAccess(Settings(exchange="anime.events", queue_prefix="")).definitions("anime")


# --------------------------------------------------------------------------- credentials


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password)).

    Computed here so provisioning can import users in one definitions document without
    sending clear passwords in it.
    """
    salt = salt if salt is not None else os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def new_password() -> str:
    return secrets.token_urlsafe(24)


def with_credentials(amqp_url: str, user: str, password: str) -> str:
    """``amqp_url`` (same host, port, vhost) logging in as ``user``."""
    parts = urlsplit(amqp_url)
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


def vhost_of(amqp_url: str) -> str:
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if path and path != "/" else "/"


# --------------------------------------------------------------------------- provisioning


class ProvisioningError(RuntimeError):
    """The broker refused or could not be reached for provisioning."""


class Management:
    """The few management HTTP API calls provisioning needs (administrator account)."""

    def __init__(self, base_url: str, user: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}"}

    @classmethod
    def from_settings(cls, settings: Settings) -> Management:
        from shared.queues import management_endpoint

        endpoint = management_endpoint(settings)
        return cls(endpoint.base_url, endpoint.user, endpoint.password)

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            async with (
                aiohttp.ClientSession(headers=self._headers) as client,
                client.request(
                    method,
                    self.base_url + path,
                    json=body,
                    timeout=aiohttp.ClientTimeout(total=30),
                ) as response,
            ):
                text = await response.text()
                if method == "DELETE" and response.status == 404:
                    return None
                if response.status >= 300:
                    raise ProvisioningError(f"{method} {path}: HTTP {response.status} {text[:300]}")
                return await response.json() if text else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProvisioningError(
                f"management API at {self.base_url} unreachable: {exc or type(exc).__name__}"
            ) from None

    async def whoami(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/api/whoami")
        return result

    async def import_definitions(self, document: Mapping[str, Any]) -> None:
        await self._call("POST", "/api/definitions", document)

    async def clear_topic_permissions(self, vhost: str, user: str) -> None:
        await self._call("DELETE", f"/api/topic-permissions/{quote(vhost, safe='')}/{quote(user)}")

    async def delete_user(self, user: str) -> None:
        await self._call("DELETE", f"/api/users/{quote(user, safe='')}")


async def provision(
    settings: Settings,
    passwords: Mapping[str, str],
    *,
    submitters: Sequence[tuple[str, Sequence[str], str]] = (),
    management: Management | None = None,
) -> dict[str, str]:
    """Create the principals and the whole topology; idempotent. Returns AMQP URLs by user.

    Runs with an administrator account (``settings.amqp_url`` and the management API it
    implies). ``passwords`` maps each internal role to its password; ``submitters`` are
    ``(name, projects, password)``. Stale topic permissions of these users are cleared
    first, so narrowing a submitter's projects takes effect.
    """
    from shared.messaging import declare_pipeline

    access = BrokerAccess(settings)
    vhost = vhost_of(settings.amqp_url)
    principals = [p for p in access.internal() if p.role in passwords]
    secrets_by_user = {access.user_name(role): pw for role, pw in passwords.items()}
    for name, projects, password in submitters:
        principal = access.submitter(name, projects)
        principals.append(principal)
        secrets_by_user[principal.user] = password
    mgmt = management or Management.from_settings(settings)
    for principal in principals:
        await mgmt.clear_topic_permissions(vhost, principal.user)
    document = access.definitions(
        vhost,
        principals=principals,
        password_hashes={u: hash_password(pw) for u, pw in secrets_by_user.items()},
        # Test pipelines share one vhost: policies are a deployment's business.
        with_policies=not settings.queue_prefix,
    )
    await mgmt.import_definitions(document)
    specs = access.topology.pipeline_specs(settings).values()
    await declare_pipeline(settings.amqp_url, access.topology, specs, exchanges=True)
    return {
        user: with_credentials(settings.amqp_url, user, pw) for user, pw in secrets_by_user.items()
    }


async def revoke(settings: Settings, users: Iterable[str]) -> None:
    """Delete broker users (tests remove their run's users this way)."""
    mgmt = Management.from_settings(settings)
    for user in users:
        await mgmt.delete_user(user)


async def provision_services(settings: Settings) -> dict[str, str] | None:
    """Provision every internal principal with fresh passwords: ``{role: amqp_url}``.

    For ``anime up``, ``anime demo`` and the end-to-end tests, which run each service as
    its own user. ``None`` when the configured account cannot provision (no management
    API, or not an administrator): the caller then runs everything as that account.
    """
    mgmt = Management.from_settings(settings)
    try:
        me = await mgmt.whoami()
    except ProvisioningError:
        return None
    tags = me.get("tags", [])
    tag_list = tags if isinstance(tags, list) else str(tags).split(",")
    if "administrator" not in tag_list:
        return None
    passwords = {role: new_password() for role in INTERNAL_ROLES}
    urls = await provision(settings, passwords, management=mgmt)
    access = BrokerAccess(settings)
    return {role: urls[access.user_name(role)] for role in INTERNAL_ROLES}


def service_env(settings: Settings, urls: Mapping[str, str], role: str) -> dict[str, str]:
    """Environment of a service process that runs as its own least-privileged user."""
    from shared.publishers import broker_user

    return {
        **settings.as_env(),
        "ANIME_AMQP_URL": urls[role],
        "ANIME_DECLARE_TOPOLOGY": "own",
        # The account that provisioned the run keeps the operator's rights, so the CLI
        # works with the settings it was started with (shared/publishers.py).
        "ANIME_BROKER_OPERATORS": ",".join(
            dict.fromkeys([*settings.broker_operators, broker_user(settings.amqp_url)])
        ),
    }
