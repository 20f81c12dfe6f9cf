"""Thousands of hostile submissions through both doors of a real ingest.

Property: every malformed or hostile submission ends as exactly one of

* a ``job.rejected`` verdict (a ``jobs`` row with ``verdict = 'rejected'``),
* a message parked in ingest's dead-letter queue with ``x-park-reason``,
* an HTTP 4xx answer;

the valid submissions interleaved with them are all accepted, nothing is lost or left
in the work queue, and ingest still answers ``/readyz`` with 200 at the end.

Hypothesis generates the cases in a worker thread while ingest runs on the test's event
loop: HTTP cases are sent and checked one by one (so a failure shrinks), AMQP cases are
published in batches and their outcomes read from PostgreSQL and the DLQ at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import threading
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Literal, TypeVar

import aio_pika
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.ingest import MAX_BODY_BYTES
from services.ingest.bodies import MAX_JSON_DEPTH
from services.ingest.screening import ENVELOPE_FIELDS
from shared.db.models import Job
from shared.events import SHOT_REQUEST_FIELDS
from shared.settings import Settings
from shared.topology import Topology
from tests.support.ingest_http import envelope, ingest
from tests.support.records import Records
from tests.support.wait import eventually

pytestmark = pytest.mark.integration

HOSTILE_EXAMPLES = int(os.environ.get("INGEST_HOSTILE_EXAMPLES", "2000"))
#: Every this many hostile cases, one valid shot goes through the same door.
VALID_EVERY = 10
AMQP_BATCH = 100
RID = "__RID__"
T = TypeVar("T")
Door = Literal["http", "amqp"]

BASE: dict[str, Any] = {
    "request_id": RID,
    "project": "neon-skies",
    "episode": "ep01",
    "scene": "rooftop-dusk",
    "shot": "shot-001",
    "characters": [{"name": "Kai Nakamura"}],
    "prompt": "rooftop at dusk",
    "negative_prompt": "lowres",
    "template": "model-free",
    "params": {"steps": 20, "cfg": 7.0, "width": 512, "height": 512},
    "priority": 5,
}
TEMPLATES = {"model-free", "txt2img", "txt2img-reference"}


@dataclasses.dataclass(frozen=True)
class Case:
    """One submission: a JSON value (serialised at send time) or exact bytes."""

    kind: str
    value: Any = None
    raw: bytes | None = None
    encoding: str = "utf-8"
    content_type: str = "application/json"

    def body(self, index: int, *, door: Door, correlation_id: str) -> bytes:
        if self.raw is not None:
            return self.raw.replace(RID.encode(), f"hostile-{index}".encode())
        value = _unique_request_id(self.value, index)
        if door == "amqp":
            value = envelope(value, job_id=uuid.uuid4(), correlation_id=correlation_id)
        if self.encoding == "utf-8":
            return json.dumps(value).encode()
        return json.dumps(value, ensure_ascii=False).encode(self.encoding)


def _unique_request_id(value: Any, index: int) -> Any:
    """Give every storable request id its own suffix, so no case replays another."""
    if not isinstance(value, dict) or not isinstance(value.get("request_id"), str):
        return value
    rid = value["request_id"]
    if rid == RID:
        return {**value, "request_id": f"hostile-{index}"}
    if 0 < len(rid) <= 200 and rid.isprintable():
        return {**value, "request_id": f"{rid[:180]}~{index}"}
    return value


def valid_case() -> Case:
    return Case("valid", value=dict(BASE))


# --------------------------------------------------------------------------- strategies

INJECTIONS = [
    "'; DROP TABLE jobs; --",
    "' OR '1'='1",
    "{{7*7}}",
    "${jndi:ldap://evil/x}",
    "<script>alert(1)</script>",
    "%s%s%s%n",
    "$(rm -rf /)",
    "`id`",
    "\\\\server\\share",
    "file:///etc/passwd",
]
PATH_TRICKS = [
    "..",
    ".",
    "../etc",
    "../../etc/passwd",
    "/abs/path",
    "a/b",
    "a\\b",
    "C:\\Windows",
    "%2e%2e%2f",
    "neon-skies/../x",
    "NEON-SKIES",
    "neon_skies",
    " neon-skies",
    "-neon",
    "neon-",
    "ep..01",
    ".hidden",
    "x" * 65,
    "",
]
UNSAFE = ["\x00", "\ud800", "\udfff", "\x07", "\x1b[31m", "\u0085", "\x7f", "\x0b", "\x00\x00"]

unicode_text = st.text(st.characters(exclude_categories=()), max_size=30)
unsafe_text = st.tuples(unicode_text, st.sampled_from(UNSAFE), unicode_text).map("".join)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | unicode_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(unicode_text, inner, max_size=4),
    max_leaves=10,
)
containers = st.lists(json_values, max_size=3) | st.dictionaries(
    unicode_text, json_values, max_size=3
)
not_a_string = st.none() | st.integers() | st.floats(allow_nan=False) | containers
bad_int = (
    st.integers().filter(lambda n: not 0 <= n <= 9)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
    | st.sampled_from(["high", "five", "1.5", "", "0x5", "--1", "NaN"])
    | containers
    | st.none()
)
huge_number = st.sampled_from([10**30, -(10**30), 2**63, 2**64 + 1, 1e308, -1e308, 10**300])
not_a_slug = st.sampled_from(PATH_TRICKS) | unsafe_text | st.sampled_from(INJECTIONS) | not_a_string
deep_value = st.integers(2, MAX_JSON_DEPTH + 40).map(
    lambda depth: json.loads("[" * depth + "]" * depth)
)


def field_mutation() -> st.SearchStrategy[tuple[str, Any]]:
    """A (field, value) that makes any shot request invalid."""
    return st.one_of(
        st.tuples(st.just("project"), not_a_slug),
        st.tuples(
            st.sampled_from(["episode", "scene", "shot"]),
            not_a_slug.filter(lambda v: v is not None),
        ),
        st.tuples(
            st.just("request_id"),
            st.sampled_from(["", "has space", "x" * 201, "tab\tid"]) | unsafe_text | not_a_string,
        ),
        st.tuples(
            st.just("characters"),
            st.one_of(
                not_a_string.filter(lambda v: not isinstance(v, list) or not v),
                st.just([]),
                st.lists(st.just({"name": "Kai Nakamura"}), min_size=9, max_size=12),
                st.lists(not_a_string | unicode_text, min_size=1, max_size=3).filter(
                    lambda xs: not all(isinstance(x, dict) and x for x in xs)
                ),
                st.builds(lambda n: [{"name": n}], unsafe_text | st.sampled_from(INJECTIONS)),
                st.builds(
                    lambda v: [{"name": "Kai Nakamura", "version": v}],
                    bad_int.filter(lambda v: v is not None) | huge_number,
                ),
                st.just([{"name": "Kai Nakamura", "id": str(uuid.UUID(int=1))}]),
                st.just([{}]),
                st.builds(lambda i: [{"id": i}], st.uuids().map(str) | unicode_text | not_a_string),
                st.builds(
                    lambda k: [{"name": "Kai Nakamura", k: 1}],
                    unicode_text.filter(lambda k: k not in {"name", "id", "version"}),
                ),
            ),
        ),
        st.tuples(st.sampled_from(["prompt", "negative_prompt"]), not_a_string),
        st.tuples(st.sampled_from(["prompt", "negative_prompt"]), unsafe_text),
        st.tuples(st.just("prompt"), st.integers(4001, 9000).map(lambda n: "p" * n)),
        st.tuples(
            st.just("template"),
            (unicode_text | st.sampled_from(INJECTIONS)).filter(lambda t: t not in TEMPLATES)
            | not_a_string,
        ),
        st.tuples(
            st.just("params"),
            st.one_of(
                not_a_string.filter(lambda v: not isinstance(v, dict) or bool(v)).filter(
                    lambda v: v is not None
                ),
                st.builds(
                    lambda n: {"steps": n},
                    st.integers().filter(lambda n: not 1 <= n <= 150) | huge_number,
                ),
                st.builds(
                    lambda n: {"width": n},
                    st.integers().filter(lambda n: not (64 <= n <= 4096 and n % 8 == 0)),
                ),
                st.builds(
                    lambda f: {"cfg": f},
                    st.floats(allow_nan=False, allow_infinity=False).filter(
                        lambda f: not 0 <= f <= 30
                    ),
                ),
                st.builds(
                    lambda n: {"seed": n},
                    st.integers().filter(lambda n: not 0 <= n <= 2**53) | huge_number,
                ),
                st.builds(
                    lambda k: {k: 1},
                    unicode_text.filter(
                        lambda k: (
                            k
                            not in {
                                "seed",
                                "steps",
                                "cfg",
                                "width",
                                "height",
                                "batch_size",
                                "sampler",
                                "scheduler",
                                "checkpoint",
                            }
                        )
                    ),
                ),
                st.builds(
                    lambda t: {"sampler": t},
                    not_a_string.filter(lambda v: v is not None) | unsafe_text,
                ),
            ),
        ),
        st.tuples(st.just("priority"), bad_int | huge_number),
        st.tuples(
            st.sampled_from(sorted(SHOT_REQUEST_FIELDS - {"episode", "scene", "shot"})), deep_value
        ),
        st.tuples(
            unicode_text.filter(lambda k: k not in SHOT_REQUEST_FIELDS | ENVELOPE_FIELDS),
            json_values,
        ),
    )


@st.composite
def mutated_shot(draw: st.DrawFn) -> Case:
    body = dict(BASE)
    mutations = draw(st.lists(field_mutation(), min_size=1, max_size=4))
    for field, value in mutations:
        body[field] = value
    if draw(st.booleans()) and len(body) > 1:
        # Sometimes a required field is missing as well.
        body.pop(draw(st.sampled_from(["request_id", "project", "characters"])), None)
    return Case(
        "mutated:"
        + ",".join(sorted({f if f in SHOT_REQUEST_FIELDS else "extra" for f, _ in mutations})),
        value=body,
    )


def raw_case() -> st.SearchStrategy[Case]:
    shot = json.dumps(BASE).encode()
    return st.one_of(
        st.binary(max_size=200).map(lambda b: Case("binary", raw=b)),
        unicode_text.map(lambda t: Case("text", raw=t.encode("utf-8", "surrogatepass"))),
        st.integers(1, len(shot) - 1).map(lambda n: Case("truncated", raw=shot[:n])),
        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]).map(
            lambda c: Case("non-finite", raw=shot.replace(b'"cfg": 7.0', f'"cfg": {c}'.encode()))
        ),
        st.integers(4301, 20000).map(
            lambda n: Case(
                "huge-literal", raw=shot.replace(b'"priority": 5', b'"priority": ' + b"9" * n)
            )
        ),
        st.integers(MAX_JSON_DEPTH + 1, 5000).map(
            lambda d: Case(
                "deep",
                raw=shot.replace(
                    b'"prompt": "rooftop at dusk"', b'"prompt": ' + b"[" * d + b"]" * d
                ),
            )
        ),
        st.integers(MAX_BODY_BYTES + 1, MAX_BODY_BYTES + 50_000).map(
            lambda n: Case("oversize", raw=shot.replace(b"rooftop at dusk", b"r" * n))
        ),
        st.sampled_from(
            [
                ("utf-16", "caf\u00e9"),
                ("utf-16-le", "dusk"),
                ("utf-32", "dusk"),
                ("latin-1", "caf\u00e9"),
                ("cp1252", "\u20ac5"),
                ("shift_jis", "\u65e5\u672c"),
            ]
        ).map(lambda e: Case(f"encoding:{e[0]}", value={**BASE, "prompt": e[1]}, encoding=e[0])),
        st.just(Case("bom", raw=b"\xef\xbb\xbf" + shot)),
        st.just(Case("empty", raw=b"")),
    )


def not_an_object() -> st.SearchStrategy[Case]:
    return (json_scalars | st.lists(json_values, max_size=4)).map(
        lambda v: Case("not-an-object", value=v)
    )


def wrong_content_type() -> st.SearchStrategy[Case]:
    return st.sampled_from(
        ["text/plain", "application/x-www-form-urlencoded", "application/xml", "image/png"]
    ).map(lambda t: Case(f"content-type:{t}", value=dict(BASE), content_type=t))


hostile_cases = st.one_of(
    mutated_shot(), mutated_shot(), mutated_shot(), raw_case(), not_an_object()
)
http_only_cases = wrong_content_type()


# --------------------------------------------------------------------------- the test


@dataclasses.dataclass
class Sent:
    index: int
    door: Door
    case: Case
    correlation_id: str
    valid: bool
    status: int | None = None


class Bridge:
    """Runs coroutines on the test's loop from Hypothesis's worker thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def run(self, coro: Awaitable[T]) -> T:
        async def wrapper() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout=120)


# Hypothesis runs in a worker thread while the event loop (ingest, aiohttp, aio-pika) keeps
# running; it notices the global ``random`` state moving under it and warns.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
async def test_hostile_submissions_are_rejected_parked_or_refused_and_ingest_stays_up(
    pipeline_settings: Settings, seeded: Path, records: Records
) -> None:
    loop = asyncio.get_running_loop()
    bridge = Bridge(loop)
    counter = itertools.count()
    sent: list[Sent] = []
    amqp_pending: list[Sent] = []
    lock = threading.Lock()

    async with ingest(pipeline_settings) as client:
        connection = await aio_pika.connect(pipeline_settings.amqp_url)
        channel = await connection.channel(publisher_confirms=True)

        async def post(item: Sent) -> int:
            reply = await client.request(
                "POST",
                "/v1/jobs",
                data=item.case.body(item.index, door="http", correlation_id=item.correlation_id),
                headers={
                    "Content-Type": item.case.content_type,
                    "X-Correlation-ID": item.correlation_id,
                },
            )
            return reply.status

        exchange = await channel.get_exchange(pipeline_settings.exchange)

        async def publish(batch: list[Sent]) -> None:
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            item.case.body(
                                item.index, door="amqp", correlation_id=item.correlation_id
                            ),
                            correlation_id=item.correlation_id,
                            content_type="application/json",
                            headers={"event_type": "job.submitted"},
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key="job.submitted.x",
                    )
                    for item in batch
                )
            )

        def submit(case: Case, door: Door, *, valid: bool) -> None:
            item = Sent(next(counter), door, case, f"prop-{uuid.uuid4().hex}", valid)
            with lock:
                sent.append(item)
            if door == "http":
                item.status = bridge.run(post(item))
                expected = item.status == 202 if valid else 400 <= item.status < 500
                assert expected, f"{case.kind}: HTTP {item.status} for {case!r:.300}"
                return
            amqp_pending.append(item)
            if len(amqp_pending) >= AMQP_BATCH:
                batch = amqp_pending[:]
                amqp_pending.clear()
                bridge.run(publish(batch))

        hostile_count = itertools.count()

        @settings(
            max_examples=HOSTILE_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            case=st.one_of(
                st.tuples(hostile_cases, st.sampled_from(["http", "amqp"])),
                st.tuples(http_only_cases, st.just("http")),
            )
        )
        def property_(case: tuple[Case, Door]) -> None:
            hostile, door = case
            event(f"{door} {hostile.kind.split(':')[0]}")
            submit(hostile, door, valid=False)
            if next(hostile_count) % VALID_EVERY == 0:
                submit(valid_case(), door, valid=True)

        await asyncio.to_thread(property_)
        if amqp_pending:
            await publish(amqp_pending)
        await connection.close()

        amqp = [s for s in sent if s.door == "amqp"]
        outcomes = await _amqp_outcomes(pipeline_settings, records, amqp)
        ready = await client.get("/readyz")
        work_queue_left = await _work_queue_depth(pipeline_settings)

    hostile = [s for s in sent if not s.valid]
    assert len(hostile) >= HOSTILE_EXAMPLES, len(hostile)
    assert {outcomes[s.correlation_id] for s in amqp if not s.valid} == {"rejected", "parked"}
    assert {400, 413, 415, 422} <= {s.status for s in hostile if s.door == "http"}
    assert ready.status == 200, ready.raw
    assert work_queue_left == 0
    for item in amqp:
        outcome = outcomes[item.correlation_id]
        allowed = {"accepted"} if item.valid else {"rejected", "parked"}
        assert outcome in allowed, f"{item.case.kind}: {outcome} for {item.case!r:.300}"
    valid = [s for s in sent if s.valid]
    assert valid and all(
        (s.status == 202) if s.door == "http" else outcomes[s.correlation_id] == "accepted"
        for s in valid
    )


async def _amqp_outcomes(settings: Settings, records: Records, items: list[Sent]) -> dict[str, str]:
    """``correlation_id`` → ``accepted`` / ``rejected`` (jobs row) or ``parked`` (DLQ)."""
    topology = Topology.from_settings(settings)
    dlq = topology.dlq_name(topology.pipeline_specs(settings)["ingest.submitted"].name)
    wanted = {s.correlation_id for s in items}
    outcomes: dict[str, str] = {}
    connection = await aio_pika.connect(settings.amqp_url)

    async def collect() -> bool:
        async with records.sessions() as session:
            rows = await session.execute(
                select(Job.correlation_id, Job.verdict).where(
                    Job.correlation_id.in_(sorted(wanted - set(outcomes)))
                )
            )
            for correlation_id, verdict in rows:
                assert correlation_id not in outcomes, f"two verdicts for {correlation_id}"
                outcomes[correlation_id] = verdict
        channel = await connection.channel()
        queue = await channel.declare_queue(dlq, passive=True)
        while (message := await queue.get(fail=False)) is not None:
            reason = (message.headers or {}).get("x-park-reason")
            assert reason, f"dead letter without a reason: {dict(message.headers or {})}"
            assert message.correlation_id in wanted, message.correlation_id
            assert message.correlation_id not in outcomes, "parked and judged"
            outcomes[str(message.correlation_id)] = "parked"
            await message.ack()
        await channel.close()
        return wanted <= set(outcomes)

    try:
        await eventually(collect, timeout=120, interval=0.5, what="an outcome for every AMQP case")
    finally:
        await connection.close()
    return outcomes


async def _work_queue_depth(settings: Settings) -> int:
    topology = Topology.from_settings(settings)
    name = topology.pipeline_specs(settings)["ingest.submitted"].name
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count or 0)
