"""Hostile HTTP bodies, query strings and path segments: refused with a reason, never a 5xx.

A refusal is a 4xx answer whose JSON body lists problems, each with a message:
``{"errors": [{"field": …, "message": …}]}``.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tests.hostile.conftest import HostileEnv
from tests.support.chaos_hostile import (
    BAD_ATTRIBUTE_KEYS,
    CONFUSED,
    RAW_BODIES,
    STRINGS,
    TALLY,
    hostile_asset_queries,
    hostile_attributes,
    hostile_characters,
    hostile_paths,
    hostile_projects,
    hostile_queries,
    hostile_shots,
    oversize_body,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REFUSALS = frozenset({400, 404, 405, 409, 413, 415, 422})

Send = Callable[[aiohttp.ClientSession], Awaitable[tuple[int, bytes]]]


#: Refusals made below the application (aiohttp's HTTP parser: request line longer than
#: 8190 bytes) or by a service without a JSON error middleware (the notifier's unknown
#: routes): a 4xx with a plain-text reason. Counted as refused, reported apart.
PLAIN = "plain text"


def refusal_problem(status: int, raw: bytes) -> str | None:
    """None when the answer is a proper refusal (PLAIN for a plain-text one); else what is wrong."""
    if status not in REFUSALS:
        return f"status {status}: {raw[:300]!r}"
    try:
        errors = json.loads(raw)["errors"]
    except (ValueError, KeyError, TypeError):
        if 400 <= status < 500 and raw.strip() and not raw.lstrip().startswith(b"{"):
            return PLAIN
        return f"status {status} without an errors list: {raw[:300]!r}"
    if not errors or not all(isinstance(e.get("message"), str) and e["message"] for e in errors):
        return f"status {status} with empty problems: {raw[:300]!r}"
    return None


async def run_all(
    env: HostileEnv, category: str, sends: list[tuple[str, Send]], *, concurrency: int
) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(label: str, send: Send) -> None:
        async with gate:
            try:
                status, raw = await send(env.http)
            except (aiohttp.ClientError, TimeoutError) as exc:
                TALLY.bad(category, f"{label}: {type(exc).__name__}: {exc}")
                return
        problem = refusal_problem(status, raw)
        if problem is None:
            TALLY.ok(category)
        elif problem == PLAIN:
            TALLY.ok(category)
            TALLY.plain[category] += 1
            if len(TALLY.plain_examples) < 40:
                TALLY.plain_examples.append(f"{label[:120]} → {status} {raw[:60]!r}")
        else:
            TALLY.bad(category, f"{label}: {problem}")

    for start in range(0, len(sends), 500):
        chunk = sends[start : start + 500]
        await asyncio.gather(*(one(label, send) for label, send in chunk))
        await env.valid_traffic(f"{category}-{start}".replace(" ", "-"))
    failures = [f for f in TALLY.failures if f.startswith(f"[{category}]")]
    assert not failures, failures[:20]


def request(method: str, url: str, **kwargs: Any) -> Send:
    async def send(http: aiohttp.ClientSession) -> tuple[int, bytes]:
        async with http.request(method, url, **kwargs) as reply:
            return reply.status, await reply.read()

    return send


def as_json(value: Any) -> dict[str, Any]:
    return {
        "data": json.dumps(value, default=str).encode(),
        "headers": {"Content-Type": "application/json"},
    }


async def test_hostile_job_submissions_over_http(hostile: HostileEnv, concurrency: int) -> None:
    url = f"{hostile.ingest}/v1/jobs"
    sends = [
        (f"{why}: {json.dumps(body, default=str)[:200]}", request("POST", url, **as_json(body)))
        for body, why in hostile_shots(2000, seed=12, start=100_000)
    ]
    content_types = [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "image/png",
    ]
    for index, raw in enumerate([*RAW_BODIES * 6, oversize_body(), oversize_body(2 * 1024**2)]):
        kind = content_types[index % len(content_types)]
        sends.append(
            (
                f"raw {raw[:40]!r} as {kind}",
                request("POST", url, data=raw, headers={"Content-Type": kind}),
            )
        )
    await run_all(hostile, "http POST /v1/jobs", sends, concurrency=concurrency)
    await hostile.aftermath()


async def test_hostile_bodies_on_the_other_ingest_endpoints(
    hostile: HostileEnv, concurrency: int
) -> None:
    env = hostile
    # A character of this test's own to aim at (valid: not counted as hostile).
    async with env.http.post(
        f"{env.ingest}/v1/characters",
        json={"name": f"Target {uuid.uuid4().hex[:8]}", "definition": {"appearance": "plain"}},
    ) as reply:
        assert reply.status == 201, await reply.text()
        target = (await reply.json())["id"]
    rng = random.Random(7003)
    sends: list[tuple[str, Send]] = []
    for body in hostile_projects(400, seed=21):
        sends.append(
            (f"project {body}", request("POST", f"{env.ingest}/v1/projects", **as_json(body)))
        )
    for body in hostile_characters(400, seed=22):
        sends.append(
            (
                f"character {body}"[:300],
                request("POST", f"{env.ingest}/v1/characters", **as_json(body)),
            )
        )
    for body in hostile_attributes(300, seed=23):
        if body["attributes"] == {}:  # replacing with nothing would be valid
            continue
        url = f"{env.ingest}/v1/characters/{target}/attributes"
        sends.append((f"attributes {body}"[:300], request("PUT", url, **as_json(body))))
    for index in range(300):
        definition = rng.choice(
            [
                {"lora": {"name": rng.choice(STRINGS), "strength": 6}},
                {"prompt_fragments": [rng.choice(STRINGS)] * 51},
                {"trigger_words": ["a,b"]},
                {"appearance": rng.choice(CONFUSED[:-1])},
                {"default_seed": rng.choice([-1, 2**60, "x"])},
                {rng.choice(STRINGS): "extra"},
            ]
        )
        body = {"definition": definition} if index % 7 else rng.choice(CONFUSED)
        url = f"{env.ingest}/v1/characters/{target}/versions"
        sends.append((f"version {body}"[:300], request("POST", url, **as_json(body))))
    versions: list[Any] = [0, -1, 10**9, None, 1.5, [], {}, "latest", "1.0e9"]
    for version in versions:
        for _ in range(12):
            url = f"{env.ingest}/v1/characters/{target}/current"
            sends.append(
                (f"current {version}", request("PUT", url, **as_json({"version": version})))
            )
    for index in range(250):
        key = rng.choice([s for s in BAD_ATTRIBUTE_KEYS if "\ud800" not in s and "\udfff" not in s])
        from urllib.parse import quote

        url = f"{env.ingest}/v1/characters/{target}/attributes/{quote(key, safe='')}"
        method = "PUT" if index % 2 else "DELETE"
        kwargs = as_json({"value": "v"}) if method == "PUT" else {}
        sends.append((f"attribute key {key!r}", request(method, url, **kwargs)))
    for _ in range(200):
        body = rng.choice(
            [{"reason": rng.choice(STRINGS + CONFUSED)}, {"why": "x"}, rng.choice(CONFUSED)]
        )
        url = f"{env.ingest}/v1/jobs/{uuid.uuid4()}/cancel"
        sends.append((f"cancel {body}"[:200], request("POST", url, **as_json(body))))
    await run_all(env, "http other bodies", sends, concurrency=concurrency)
    # Nothing the refused requests carried changed the target.
    async with env.http.get(f"{env.ingest}/v1/characters/{target}") as reply:
        document = await reply.json()
    assert document["current_version"] == 1 and document["attributes"] == {}, document
    await env.aftermath()


async def test_hostile_query_strings_and_path_segments(
    hostile: HostileEnv, concurrency: int
) -> None:
    env = hostile
    sends: list[tuple[str, Send]] = []
    for path, query in hostile_queries(1200, seed=31):
        sends.append(
            (f"GET {path}?{query}"[:300], request("GET", f"{env.ingest}{path}", params=query))
        )
    for query in hostile_asset_queries(300, seed=32):
        url = f"{env.notifier}/v1/projects/neon-skies/assets"
        sends.append((f"GET assets?{query}"[:300], request("GET", url, params=query)))
    for service, path in hostile_paths(700, seed=33):
        url = env.base(service) + path
        sends.append((f"GET {service}{path}"[:300], request("GET", url)))
    await run_all(env, "http queries and paths", sends, concurrency=concurrency)
    await env.aftermath()
