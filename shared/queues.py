"""Looking into the pipeline's queues, and putting dead letters back to work.

Shared by the CLI (``anime queues``, ``anime dlq …``), the admin HTTP routes
(:func:`register_admin_routes`) and the ops dashboard, so all three see and do the same.

Queue statistics come from RabbitMQ's management HTTP API when it answers (ready,
unacked, consumers, rates), else from passive declares over AMQP (ready and consumers
only). A passive declare of a missing queue closes its channel, so each missing queue
costs a fresh channel and nothing else breaks.

Dead letters are read with ``basic.get`` without acking: a listed message stays in its
queue (it is given back with ``nack(requeue=True)``; dead-letter queues have no delivery
limit, so that is harmless). A replayed message is published — persistent, with publisher
confirms, ``mandatory`` — to its work queue through the default exchange, and only then
acked in the dead-letter queue: a message is never lost, at worst (a crash between the
two) it is both replayed and still parked, and every handler is idempotent.

A job the renderer parked is *redriven* (docs/renderer.md): ``job.redriven`` is published
first (the one event that moves a job out of ``failed``), then the job goes back with
``x-attempt-base`` = its last attempt and ``x-attempt`` = the next, so the new run's
prompt and event ids never collide with the failed run's.

A key limited to projects (``api_keys.projects``) sees and touches over HTTP only the
dead letters of its projects (a letter's project is its ``project`` header, else the
body's ``project``; a letter with neither belongs to no project and is not shown to
such a key); naming another project's letter (ids, job) is refused with 403 before
anything moves. Queue figures count every project's messages and are refused (403) to
such keys.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import aio_pika
import aiohttp
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aiohttp import web

from shared.auth import visible_projects
from shared.events import JobAccepted, JobRedriven, Producer, derived_id
from shared.publishers import broker_user
from shared.settings import Settings
from shared.topology import DLQ_SUFFIX, Topology

QueueRole = Literal["work", "retry", "dlq"]

#: Headers describing a message's past life in the pipeline; a replay starts it afresh.
STRIPPED_ON_REPLAY = frozenset(
    {
        "x-attempt",
        "x-avoid-backends",
        "x-death",
        "x-delivery-count",
        "x-error-kind",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        "x-original-queue",
        "x-park-reason",
        "x-parked-at",
        "x-parked-by",
    }
)
REPLAY_COUNT_HEADER = "x-replay-count"
#: The renderer's: attempts before this one belong to a run that failed (a redrive).
ATTEMPT_BASE_HEADER = "x-attempt-base"
REPLAYED_FROM_HEADER = "x-replayed-from"

#: At most this many messages are held unacked while one operation scans a DLQ.
MAX_SCAN = 10_000


class QueueError(Exception):
    """Base of the errors an operator can act on (messages are written for people)."""


class BrokerUnreachable(QueueError):
    pass


class AuthFailed(QueueError):
    pass


class Forbidden(QueueError):
    """The selection names dead letters of projects the caller's key may not touch."""


class UnknownQueue(QueueError, ValueError):
    pass


# --------------------------------------------------------------------------- names


@dataclasses.dataclass(frozen=True)
class QueueRef:
    name: str
    service: str
    role: QueueRole
    #: The work queue this queue belongs to (itself for a work queue).
    work_queue: str
    #: The key of ``Topology.pipeline_specs`` (``renderer.accepted`` …).
    spec_key: str


def pipeline_queues(settings: Settings) -> list[QueueRef]:
    """Every durable queue of the pipeline: work queues, their retry tiers and DLQs.

    A DLQ shared by several work queues (the renderer's priority bands park in the
    intake's) is listed once, owned by the work queue whose own DLQ it is.
    """
    topology = Topology.from_settings(settings)
    specs = topology.pipeline_specs(settings)
    refs: list[QueueRef] = []
    owners: dict[str, tuple[str, str, str]] = {}
    for key, spec in specs.items():
        dlq = _dlq_of(spec)
        if dlq not in owners or topology.dlq_name(spec.name) == dlq:
            owners[dlq] = (spec.service, spec.name, key)
    listed: set[str] = set()
    for key, spec in specs.items():
        refs.append(QueueRef(spec.name, spec.service, "work", spec.name, key))
        refs += [
            QueueRef(topology.retry_name(spec.name, d), spec.service, "retry", spec.name, key)
            for d in spec.retry_delays
        ]
        dlq = _dlq_of(spec)
        if dlq not in listed:
            listed.add(dlq)
            service, owner, owner_key = owners[dlq]
            refs.append(QueueRef(dlq, service, "dlq", owner, owner_key))
    return refs


def _dlq_of(spec: Any) -> str:
    dlq = getattr(spec, "dlq", None)
    return str(dlq) if dlq else Topology.dlq_name(spec.name)


def dead_letter_queues(settings: Settings) -> list[QueueRef]:
    return [q for q in pipeline_queues(settings) if q.role == "dlq"]


def resolve_dlq(settings: Settings, name: str | None = None) -> QueueRef:
    """Find a pipeline DLQ from what an operator types.

    Accepted: nothing (the renderer's), a service (``renderer``, ``ingest``), a spec key
    (``archiver.ledger``), a work queue name (``renderer.job.accepted``) or the DLQ's own
    name, with or without the configured queue prefix.
    """
    dlqs = dead_letter_queues(settings)
    wanted = (name or "renderer").strip()
    prefix = settings.queue_prefix
    candidates = {wanted, prefix + wanted}
    for ref in dlqs:
        if {ref.name, ref.work_queue, ref.spec_key} & candidates:
            return ref
    # A work queue whose dead letters go to a shared DLQ (a renderer priority band).
    for ref in pipeline_queues(settings):
        if ref.role == "work" and {ref.name, ref.spec_key} & candidates:
            owner = next(
                d for d in dlqs if d.work_queue == ref.work_queue or d.service == ref.service
            )
            return owner
    # A service: its first DLQ in pipeline order (the renderer's intake, the archiver's ledger).
    by_service = [ref for ref in dlqs if ref.service == wanted]
    if by_service:
        return by_service[0]
    choices = ", ".join(ref.name for ref in dlqs)
    raise UnknownQueue(f"no pipeline dead-letter queue {wanted!r}; choose one of: {choices}")


# --------------------------------------------------------------------------- connection


async def connect(settings: Settings, *, timeout: float = 5.0) -> AbstractConnection:
    """A plain (non-robust) AMQP connection, with errors an operator can read."""
    try:
        return await aio_pika.connect(settings.amqp_url, timeout=timeout)
    except aiormq.exceptions.ProbableAuthenticationError as exc:
        raise AuthFailed(f"RabbitMQ refused the credentials in the AMQP URL: {exc}") from None
    except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
        raise BrokerUnreachable(
            f"cannot reach RabbitMQ at {_safe_url(settings.amqp_url)}: {exc or type(exc).__name__}"
        ) from None


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{parts.scheme}://{host}:{parts.port or 5672}{parts.path or '/'}"


# --------------------------------------------------------------------------- statistics


@dataclasses.dataclass
class QueueStats:
    name: str
    service: str
    role: QueueRole
    exists: bool = True
    ready: int | None = None
    unacked: int | None = None
    consumers: int | None = None
    oldest_age_seconds: float | None = None
    publish_rate: float | None = None
    deliver_rate: float | None = None
    ack_rate: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class QueueReport:
    #: ``management`` (HTTP API) or ``amqp`` (passive declares: ready and consumers only).
    source: Literal["management", "amqp"]
    queues: list[QueueStats]
    note: str | None = None
    taken_at: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "note": self.note,
            "taken_at": self.taken_at.isoformat(),
            "queues": [q.as_dict() for q in self.queues],
        }


@dataclasses.dataclass(frozen=True)
class ManagementEndpoint:
    base_url: str
    user: str
    password: str
    vhost: str

    def queues_url(self) -> str:
        return f"{self.base_url}/api/queues/{quote(self.vhost, safe='')}"


def management_endpoint(settings: Settings) -> ManagementEndpoint:
    """Where the management API is: the broker's host, port ``management_port`` (15672).

    ``management_url`` (``ANIME_MANAGEMENT_URL``, e.g. ``http://host:15672``) overrides
    host and port. Credentials and vhost come from the AMQP URL.
    """
    amqp = urlsplit(settings.amqp_url)
    user = unquote(amqp.username or "guest")
    password = unquote(amqp.password or "guest")
    vhost = unquote(amqp.path[1:]) if amqp.path and amqp.path != "/" else "/"
    if settings.management_url:
        return ManagementEndpoint(settings.management_url.rstrip("/"), user, password, vhost)
    port = settings.management_port
    scheme = "https" if amqp.scheme == "amqps" else "http"
    host = amqp.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return ManagementEndpoint(f"{scheme}://{host}:{int(port)}", user, password, vhost)


def _basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


MANAGEMENT_COLUMNS = ",".join(
    [
        "name",
        "type",
        "messages_ready",
        "messages_unacknowledged",
        "consumers",
        "head_message_timestamp",
        "message_stats.publish_details.rate",
        "message_stats.deliver_get_details.rate",
        "message_stats.ack_details.rate",
    ]
)


async def management_queues(
    endpoint: ManagementEndpoint,
    *,
    http: aiohttp.ClientSession | None = None,
    timeout: float = 3.0,
) -> dict[str, dict[str, Any]]:
    """Every queue of the vhost as the management API reports it, by name.

    Raises :class:`BrokerUnreachable` when the API does not answer and
    :class:`AuthFailed` when it refuses the credentials.
    """
    owned = http is None
    client = http or aiohttp.ClientSession()
    try:
        async with client.get(
            endpoint.queues_url(),
            params={"columns": MANAGEMENT_COLUMNS, "disable_stats": "false"},
            headers={"Authorization": _basic_auth(endpoint.user, endpoint.password)},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            if response.status in (401, 403):
                raise AuthFailed(f"the management API refused user {endpoint.user!r}")
            if response.status != 200:
                raise BrokerUnreachable(f"the management API answered {response.status}")
            rows = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise BrokerUnreachable(
            f"the management API at {endpoint.base_url} did not answer: {exc or type(exc).__name__}"
        ) from None
    finally:
        if owned:
            await client.close()
    return {str(row["name"]): row for row in rows if isinstance(row, dict) and "name" in row}


async def passive_queue_stats(
    connection: AbstractConnection, names: Iterable[str]
) -> dict[str, tuple[int, int] | None]:
    """(ready, consumers) per queue by passive declare; None for a missing queue.

    Uses channels of its own: a passive declare of a missing queue closes its channel.
    """
    result: dict[str, tuple[int, int] | None] = {}
    channel: AbstractChannel | None = None
    try:
        for name in names:
            if channel is None or channel.is_closed:
                channel = await connection.channel(publisher_confirms=False)
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                result[name] = None
                channel = None
                continue
            declared = queue.declaration_result
            result[name] = (int(declared.message_count or 0), int(declared.consumer_count or 0))
    finally:
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):
                await channel.close()
    return result


def _rate(row: dict[str, Any], what: str) -> float | None:
    stats = row.get("message_stats") or {}
    details = stats.get(f"{what}_details") or {}
    rate = details.get("rate")
    return float(rate) if isinstance(rate, int | float) else None


async def inspect_queues(
    settings: Settings,
    *,
    prefer_management: bool = True,
    peek_dead_letters: bool = True,
    http: aiohttp.ClientSession | None = None,
    connection: AbstractConnection | None = None,
) -> QueueReport:
    """Statistics of every pipeline queue, from the management API when it answers.

    ``oldest_age_seconds`` is given for dead-letter queues (their head is peeked, which
    is harmless there) and wherever the management API knows the head's timestamp.
    Work queues are never peeked: a peek counts as a delivery towards their limit.
    """
    refs = pipeline_queues(settings)
    stats = [QueueStats(ref.name, ref.service, ref.role) for ref in refs]
    by_name = {s.name: s for s in stats}
    note: str | None = None
    report: QueueReport | None = None
    if prefer_management:
        try:
            rows = await management_queues(management_endpoint(settings), http=http)
        except QueueError as exc:
            note = f"management API not used ({exc}); showing ready and consumers only"
        else:
            now = datetime.now(UTC).timestamp()
            for s in stats:
                row = rows.get(s.name)
                if row is None:
                    s.exists = False
                    continue
                s.ready = int(row.get("messages_ready") or 0)
                s.unacked = int(row.get("messages_unacknowledged") or 0)
                s.consumers = int(row.get("consumers") or 0)
                head = row.get("head_message_timestamp")
                if isinstance(head, int | float) and head > 0:
                    s.oldest_age_seconds = max(0.0, now - float(head))
                s.publish_rate = _rate(row, "publish")
                s.deliver_rate = _rate(row, "deliver_get")
                s.ack_rate = _rate(row, "ack")
            report = QueueReport("management", stats)
    owned = connection is None
    conn = connection
    try:
        if report is None:
            conn = conn or await connect(settings)
            for name, found in (await passive_queue_stats(conn, by_name)).items():
                if found is None:
                    by_name[name].exists = False
                else:
                    by_name[name].ready, by_name[name].consumers = found
            report = QueueReport("amqp", stats, note=note)
        if peek_dead_letters:
            dlqs = [
                s for s in stats if s.role == "dlq" and s.ready and s.oldest_age_seconds is None
            ]
            if dlqs:
                conn = conn or await connect(settings)
                for s in dlqs:
                    head = await _peek_head(conn, s.name)
                    if head is not None:
                        s.oldest_age_seconds = head.age_seconds
    finally:
        if owned and conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
    return report


# --------------------------------------------------------------------------- dead letters


@dataclasses.dataclass
class DeadLetter:
    id: str
    queue: str
    job_id: str | None
    event_type: str | None
    reason: str
    attempt: int | None
    parked_by: str | None
    original_queue: str | None
    parked_at: datetime | None
    age_seconds: float | None
    correlation_id: str | None
    message_id: str | None
    headers: dict[str, Any]
    body: Any
    #: The message's project (its ``project`` header, else the body's); None if neither.
    project: str | None = None

    def visible_to(self, projects: frozenset[str] | None) -> bool:
        """May a key limited to ``projects`` (None: every project) see this letter?"""
        return projects is None or (self.project is not None and self.project in projects)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "queue": self.queue,
            "job_id": self.job_id,
            "project": self.project,
            "event_type": self.event_type,
            "reason": self.reason,
            "attempt": self.attempt,
            "parked_by": self.parked_by,
            "parked_at": self.parked_at.isoformat() if self.parked_at else None,
            "age_seconds": round(self.age_seconds, 3) if self.age_seconds is not None else None,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "original_queue": self.original_queue,
            "correlation_id": self.correlation_id,
            "message_id": self.message_id,
            "headers": self.headers,
            "body": self.body,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def dead_letter_id(body: bytes, reason: str, attempt: int | None, job_id: str | None) -> str:
    """A short id that stays the same however often the message is listed."""
    digest = hashlib.sha256()
    for part in (body, reason.encode(), str(attempt).encode(), str(job_id).encode()):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def describe(message: AbstractIncomingMessage, queue: str) -> DeadLetter:
    """What an operator needs to know about one dead letter."""
    headers = dict(message.headers or {})
    try:
        body: Any = json.loads(message.body)
    except (ValueError, UnicodeDecodeError):
        body = message.body.decode("utf-8", "replace")
    deaths = headers.get("x-death")
    last_death = (
        deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
    )
    reason = headers.get("x-park-reason")
    if isinstance(reason, bytes | bytearray):
        reason = bytes(reason).decode("utf-8", "replace")
    if not reason and last_death:
        died = last_death.get("reason", "dead-lettered")
        died = died.decode() if isinstance(died, bytes) else died
        reason = f"{died} (by the broker, from {_jsonable(last_death.get('queue'))})"
    reason = str(reason or "unknown")
    job_id = headers.get("job_id") or (body.get("job_id") if isinstance(body, dict) else None)
    event_type = headers.get("event_type") or (
        body.get("event_type") if isinstance(body, dict) else None
    )
    # Never x-delivery-count: listing a DLQ (get, then requeue) changes it there.
    attempt = _int_or_none(headers.get("x-attempt"))
    parked_at = (
        _as_datetime(headers.get("x-parked-at"))
        or _as_datetime(last_death.get("time"))
        or _as_datetime(message.timestamp)
        or (_as_datetime(body.get("occurred_at")) if isinstance(body, dict) else None)
    )
    age = (datetime.now(UTC) - parked_at).total_seconds() if parked_at else None
    original = headers.get("x-original-queue") or last_death.get("queue")
    project = _jsonable(headers.get("project")) or (
        body.get("project") if isinstance(body, dict) else None
    )
    return DeadLetter(
        id=dead_letter_id(message.body, reason, attempt, str(job_id) if job_id else None),
        queue=queue,
        job_id=str(job_id) if job_id else None,
        event_type=str(event_type) if event_type else None,
        reason=reason,
        attempt=attempt,
        parked_by=str(_jsonable(headers.get("x-parked-by")))
        if headers.get("x-parked-by")
        else None,
        original_queue=str(_jsonable(original)) if original else None,
        parked_at=parked_at,
        age_seconds=max(0.0, age) if age is not None else None,
        correlation_id=message.correlation_id,
        message_id=message.message_id,
        headers=_jsonable(headers),
        body=body,
        project=project if isinstance(project, str) and project else None,
    )


@dataclasses.dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters an operation touches. An empty filter touches none."""

    ids: frozenset[str] = frozenset()
    job: str | None = None
    reason_contains: str | None = None
    everything: bool = False

    def is_empty(self) -> bool:
        return not (self.ids or self.job or self.reason_contains or self.everything)

    def names_letters(self) -> bool:
        """Does it name letters (ids, a job) rather than sweep (all, reason_contains)?"""
        return bool(self.ids or self.job)

    def matches(self, letter: DeadLetter) -> bool:
        if self.is_empty():
            return False
        if self.ids and letter.id not in self.ids:
            return False
        if self.job and letter.job_id != self.job:
            return False
        return not (
            self.reason_contains and self.reason_contains.lower() not in letter.reason.lower()
        )


@dataclasses.dataclass
class ReplayResult:
    queue: str
    target: str
    replayed: list[DeadLetter] = dataclasses.field(default_factory=list)
    failed: list[tuple[DeadLetter, str]] = dataclasses.field(default_factory=list)
    kept: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "target": self.target,
            "replayed": [d.summary() for d in self.replayed],
            "failed": [{**d.summary(), "error": e} for d, e in self.failed],
            "kept": self.kept,
        }


@dataclasses.dataclass
class PurgeResult:
    queue: str
    purged: list[DeadLetter] = dataclasses.field(default_factory=list)
    kept: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "purged": [d.summary() for d in self.purged],
            "kept": self.kept,
        }


def last_attempt(headers: dict[str, Any]) -> int:
    """The attempt number the message died on (as the renderer counts, across redrives)."""
    base = max(0, _int_or_none(headers.get(ATTEMPT_BASE_HEADER)) or 0)
    return max(base + 1, _int_or_none(headers.get("x-attempt")) or 1)


def replay_message(
    message: AbstractIncomingMessage,
    source: str,
    *,
    attempt_base: int | None = None,
    user_id: str | None = None,
) -> aio_pika.Message:
    """The message as it goes back to work: same body and ids, a fresh set of attempts.

    With ``attempt_base`` (a renderer redrive) the new attempts are numbered after the
    failed run's: ``x-attempt-base`` = the last attempt, ``x-attempt`` = the next one.
    """
    headers = {
        k: v
        for k, v in (message.headers or {}).items()
        if k not in STRIPPED_ON_REPLAY and k != ATTEMPT_BASE_HEADER
    }
    headers[REPLAY_COUNT_HEADER] = (_int_or_none(headers.get(REPLAY_COUNT_HEADER)) or 0) + 1
    headers[REPLAYED_FROM_HEADER] = source
    if attempt_base is not None:
        headers[ATTEMPT_BASE_HEADER] = attempt_base
        headers["x-attempt"] = attempt_base + 1
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type or "application/json",
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        correlation_id=message.correlation_id,
        message_id=message.message_id,
        priority=message.priority,
        timestamp=datetime.now(UTC),
        # The replayer's own user: consumers accept replays from the replayers only.
        user_id=user_id,
    )


def redrive_event(message: AbstractIncomingMessage, source: str) -> JobRedriven | None:
    """``job.redriven`` for a job the renderer parked (None for anything else)."""
    try:
        accepted = JobAccepted.model_validate_json(message.body)
    except ValueError:
        return None
    first = last_attempt(dict(message.headers or {})) + 1
    return JobRedriven(
        event_id=derived_id(accepted.job_id, "redriven", first),
        job_id=accepted.job_id,
        correlation_id=accepted.correlation_id,
        producer=Producer.CLI,
        project=accepted.project,
        first_attempt=first,
        reason=f"replayed from {source}",
    )


@contextlib.asynccontextmanager
async def _scan(
    connection: AbstractConnection, queue: str, *, limit: int = MAX_SCAN
) -> AsyncIterator[tuple[AbstractChannel, list[AbstractIncomingMessage]]]:
    """Take up to ``limit`` ready messages, unacked; whatever is not acked is given back."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    taken: list[AbstractIncomingMessage] = []
    try:
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            raise UnknownQueue(
                f"queue {queue!r} does not exist (no service declared it yet)"
            ) from None
        while len(taken) < limit:
            message = await declared.get(no_ack=False, fail=False, timeout=10)
            if message is None:
                break
            taken.append(message)
        yield channel, taken
    finally:
        if not channel.is_closed:
            for message in taken:
                if not message.processed:
                    with contextlib.suppress(Exception):
                        await message.nack(requeue=True)
            with contextlib.suppress(Exception):
                await channel.close()


async def _peek_head(connection: AbstractConnection, queue: str) -> DeadLetter | None:
    with contextlib.suppress(UnknownQueue, aiormq.exceptions.AMQPError):
        async with _scan(connection, queue, limit=1) as (_, taken):
            return describe(taken[0], queue) if taken else None
    return None


def _screen(
    taken: list[AbstractIncomingMessage],
    queue: str,
    which: DeadLetterFilter,
    projects: frozenset[str] | None,
) -> list[tuple[AbstractIncomingMessage, DeadLetter | None]]:
    """Each taken message with its letter if ``which`` selects it (else None).

    For a key limited to ``projects``, letters of other projects (or of none) are never
    selected; if ids or a job *name* one of them, :class:`Forbidden` is raised before
    anything is touched (the scan gives every message back).
    """
    screened: list[tuple[AbstractIncomingMessage, DeadLetter | None]] = []
    for message in taken:
        letter = describe(message, queue)
        if not which.matches(letter):
            screened.append((message, None))
        elif letter.visible_to(projects):
            screened.append((message, letter))
        elif which.names_letters():
            raise Forbidden("this key may not touch dead letters of other projects")
        else:
            screened.append((message, None))
    return screened


class DeadLetters:
    """List, show, replay and purge the dead letters of the pipeline's DLQs."""

    def __init__(self, settings: Settings, connection: AbstractConnection | None = None) -> None:
        self.settings = settings
        self._connection = connection
        self._owned = connection is None

    async def __aenter__(self) -> DeadLetters:
        if self._connection is None:
            self._connection = await connect(self.settings)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._owned and self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    @property
    def connection(self) -> AbstractConnection:
        if self._connection is None:
            raise RuntimeError("use DeadLetters as an async context manager")
        return self._connection

    async def list(
        self,
        queue: str | None = None,
        *,
        limit: int = 100,
        projects: frozenset[str] | None = None,
    ) -> list[DeadLetter]:
        """Up to ``limit`` dead letters (of ``projects`` only, when given)."""
        ref = resolve_dlq(self.settings, queue)
        scan = limit if projects is None else MAX_SCAN
        async with _scan(self.connection, ref.name, limit=scan) as (_, taken):
            letters = [describe(m, ref.name) for m in taken]
        return [d for d in letters if d.visible_to(projects)][:limit]

    async def show(self, queue: str | None, letter_id: str) -> DeadLetter | None:
        ref = resolve_dlq(self.settings, queue)
        async with _scan(self.connection, ref.name) as (_, taken):
            for message in taken:
                letter = describe(message, ref.name)
                if letter.id == letter_id or letter.id.startswith(letter_id):
                    return letter
        return None

    async def replay(
        self,
        queue: str | None,
        which: DeadLetterFilter,
        *,
        limit: int | None = None,
        projects: frozenset[str] | None = None,
    ) -> ReplayResult:
        """Send matching dead letters back to their work queue with a fresh attempt count.

        ``projects``: the caller's key is limited to these (see :func:`_screen`).
        """
        ref = resolve_dlq(self.settings, queue)
        result = ReplayResult(ref.name, ref.work_queue)
        async with _scan(self.connection, ref.name) as (channel, taken):
            for message, letter in _screen(taken, ref.name, which, projects):
                if letter is None or (limit is not None and len(result.replayed) >= limit):
                    result.kept += 1
                    continue
                try:
                    # A job the renderer parked is redriven: job.redriven (the one way out
                    # of "failed") first, then the job with attempts numbered after the last.
                    redriven = (
                        redrive_event(message, ref.name) if ref.service == "renderer" else None
                    )
                    if redriven is not None:
                        exchange = await channel.get_exchange(self.settings.exchange, ensure=False)
                        await exchange.publish(
                            aio_pika.Message(
                                redriven.model_dump_json().encode(),
                                headers=dict(redriven.headers()),
                                content_type="application/json",
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                correlation_id=redriven.correlation_id,
                                message_id=str(redriven.event_id),
                                user_id=broker_user(self.settings.amqp_url),
                            ),
                            routing_key=redriven.routing_key(),
                            mandatory=True,
                        )
                    await channel.default_exchange.publish(
                        replay_message(
                            message,
                            ref.name,
                            attempt_base=redriven.first_attempt - 1 if redriven else None,
                            user_id=broker_user(self.settings.amqp_url),
                        ),
                        routing_key=ref.work_queue,
                        mandatory=True,
                    )
                except Exception as exc:
                    # Not confirmed: the dead letter stays where it is (given back below).
                    result.failed.append((letter, f"{type(exc).__name__}: {exc}"))
                    result.kept += 1
                    if channel.is_closed:
                        break
                    continue
                await message.ack()
                result.replayed.append(letter)
        return result

    async def purge(
        self,
        queue: str | None,
        which: DeadLetterFilter,
        *,
        projects: frozenset[str] | None = None,
    ) -> PurgeResult:
        """Delete matching dead letters for good (``projects``: see :func:`_screen`)."""
        ref = resolve_dlq(self.settings, queue)
        result = PurgeResult(ref.name)
        async with _scan(self.connection, ref.name) as (_, taken):
            for message, letter in _screen(taken, ref.name, which, projects):
                if letter is not None:
                    await message.ack()
                    result.purged.append(letter)
                else:
                    result.kept += 1
        return result


# --------------------------------------------------------------------------- admin HTTP


class SharedConnection:
    """One lazily opened AMQP connection for a service's admin routes, reopened if lost."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._connection: AbstractConnection | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> AbstractConnection:
        async with self._lock:
            if self._connection is None or self._connection.is_closed:
                self._connection = await connect(self.settings)
            return self._connection

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None


ADMIN_KEY: web.AppKey[SharedConnection] = web.AppKey("anime_admin_amqp", SharedConnection)
QUEUES_NOT_FOR_LIMITED_KEYS = (
    "queue figures count every project's messages; they are shown only to keys not "
    "limited to projects"
)


def _problem(status: int, message: str, field: str = "request") -> web.Response:
    return web.json_response(
        {"errors": [{"field": field, "code": "invalid", "message": message, "suggestions": []}]},
        status=status,
    )


def _filter_from(body: dict[str, Any]) -> DeadLetterFilter:
    ids = body.get("ids") or []
    if isinstance(ids, str):
        ids = [ids]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError("ids must be a list of dead-letter ids")
    job = body.get("job")
    reason = body.get("reason_contains")
    everything = body.get("all", False)
    if job is not None and not isinstance(job, str):
        raise ValueError("job must be a job id")
    if reason is not None and not isinstance(reason, str):
        raise ValueError("reason_contains must be text")
    if not isinstance(everything, bool):
        raise ValueError("all must be true or false")
    return DeadLetterFilter(frozenset(ids), job or None, reason or None, everything)


def admin_handlers(
    settings: Settings, amqp: Callable[[], Awaitable[AbstractConnection]]
) -> dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """The admin handlers (undecorated), for :func:`register_admin_routes` and tests."""

    async def guarded(
        work: Callable[[], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        try:
            return await work()
        except UnknownQueue as exc:
            return _problem(404, str(exc), "queue")
        except Forbidden as exc:
            return _problem(403, str(exc), "selection")
        except (BrokerUnreachable, AuthFailed) as exc:
            return _problem(503, str(exc), "broker")
        except (aiormq.exceptions.AMQPError, ConnectionError) as exc:
            return _problem(503, f"broker error: {exc}", "broker")

    async def queues(request: web.Request) -> web.StreamResponse:
        if visible_projects(request) is not None:
            # Depths count every project's messages: not for a key limited to some.
            return _problem(403, QUEUES_NOT_FOR_LIMITED_KEYS, "api_key")

        async def work() -> web.StreamResponse:
            report = await inspect_queues(settings, connection=await amqp())
            return web.json_response(report.as_dict())

        return await guarded(work)

    async def dlq_list(request: web.Request) -> web.StreamResponse:
        try:
            limit = max(1, min(int(request.query.get("limit", "100")), 1000))
        except ValueError:
            return _problem(400, "limit must be a number", "limit")

        async def work() -> web.StreamResponse:
            letters = await DeadLetters(settings, await amqp()).list(
                request.query.get("queue"), limit=limit, projects=visible_projects(request)
            )
            full = request.query.get("full") in ("1", "true")
            return web.json_response(
                {
                    "queue": resolve_dlq(settings, request.query.get("queue")).name,
                    "dead_letters": [d.as_dict() if full else d.summary() for d in letters],
                }
            )

        return await guarded(work)

    async def read_body(request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _problem(400, "send a JSON object")
        if not isinstance(body, dict):
            return _problem(400, "send a JSON object")
        return body

    async def read_selection(
        request: web.Request,
    ) -> tuple[dict[str, Any], DeadLetterFilter] | web.Response:
        """The body and which dead letters it names, or the 4xx answer."""
        body = await read_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            which = _filter_from(body)
        except ValueError as exc:
            return _problem(422, str(exc))
        if which.is_empty():
            return _problem(422, "say which dead letters: ids, job, reason_contains or all")
        return body, which

    async def dlq_replay(request: web.Request) -> web.StreamResponse:
        selection = await read_selection(request)
        if isinstance(selection, web.Response):
            return selection
        body, which = selection

        async def work() -> web.StreamResponse:
            result = await DeadLetters(settings, await amqp()).replay(
                body.get("queue"), which, projects=visible_projects(request)
            )
            return web.json_response(result.as_dict(), status=502 if result.failed else 200)

        return await guarded(work)

    async def dlq_purge(request: web.Request) -> web.StreamResponse:
        selection = await read_selection(request)
        if isinstance(selection, web.Response):
            return selection
        body, which = selection

        async def work() -> web.StreamResponse:
            result = await DeadLetters(settings, await amqp()).purge(
                body.get("queue"), which, projects=visible_projects(request)
            )
            return web.json_response(result.as_dict())

        return await guarded(work)

    return {
        "queues": queues,
        "dlq_list": dlq_list,
        "dlq_replay": dlq_replay,
        "dlq_purge": dlq_purge,
    }


def register_admin_routes(runtime: Any) -> None:
    """Add the admin routes to a service (all need an ``admin`` key).

    ``GET /v1/admin/queues``, ``GET /v1/admin/dlq?queue=&limit=&full=``,
    ``POST /v1/admin/dlq/replay`` and ``POST /v1/admin/dlq/purge`` with a JSON body
    ``{"queue": "renderer", "ids": [...], "job": "...", "reason_contains": "...", "all": false}``.
    Idempotent: a second call on the same runtime does nothing.
    """
    from shared.auth import requires

    app: web.Application = runtime.http
    if ADMIN_KEY in app:
        return
    shared = SharedConnection(runtime.settings)
    app[ADMIN_KEY] = shared
    runtime.on_stop.append(shared.close)
    handlers = admin_handlers(runtime.settings, shared.get)
    app.router.add_get("/v1/admin/queues", requires("admin")(handlers["queues"]))
    app.router.add_get("/v1/admin/dlq", requires("admin")(handlers["dlq_list"]))
    app.router.add_post("/v1/admin/dlq/replay", requires("admin")(handlers["dlq_replay"]))
    app.router.add_post("/v1/admin/dlq/purge", requires("admin")(handlers["dlq_purge"]))


__all__ = [
    "DLQ_SUFFIX",
    "AuthFailed",
    "BrokerUnreachable",
    "DeadLetter",
    "DeadLetterFilter",
    "DeadLetters",
    "Forbidden",
    "QueueReport",
    "QueueStats",
    "UnknownQueue",
    "dead_letter_queues",
    "inspect_queues",
    "management_endpoint",
    "passive_queue_stats",
    "pipeline_queues",
    "register_admin_routes",
    "resolve_dlq",
]
