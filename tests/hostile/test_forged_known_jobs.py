"""Forged events about real jobs, some finished and some in flight (issue 11, item 6).

Two angles:

* **outside** (the broker boundary): an outside system's broker user may publish only
  ``job.submitted.<its project>`` on the intake exchange. Every other key, on every
  exchange, is refused by the broker with ACCESS_REFUSED (which closes the channel);
  nothing reaches a pipeline queue.
* **inside** (the boundary bypassed: the tests' administrator account publishes on the
  events exchange). The services' own checks must then hold. Every message carries
  RabbitMQ's validated ``user_id``, and each consumer accepts an event type only from
  the principals that may publish it (shared/publishers.py); the administrator of these
  runs keeps the operator's rights (cancel requests, redrives, replays) and nothing else.
  "No harm" per type, as asserted by :func:`test_forged_events_about_known_jobs_do_no_harm`:

  ======================  =====================================================
  forged (wrong content)  no harm means / positive marker
  ======================  =====================================================
  any type, another       no ledger row, asset or file under the other project;
  project                 parked ``forged:`` by archiver.ledger (and by the
                          renderer / archiver.rendered for accepted / rendered)
  job.accepted, true      not rendered, reference URL (attacker) never fetched;
  project, other spec     parked ``forged:`` by the renderer and archiver.ledger
  job.rendered, true      nothing fetched from the attacker, nothing archived,
  project, attacker       nothing recorded; parked ``forged:`` by
  backend / other spec /  archiver.rendered and archiver.ledger
  wrong prompt id
  job.started /           not recorded: only the renderer may publish them;
  job.progress, true      parked ``forged:`` by archiver.ledger
  project
  ledger.<type>.<project> never reaches a watcher: each watcher gets every genuine
  relays (seq far ahead,  seq once, in order, and nothing past the ledger's last;
  other project, wrong    counted by ``anime_ledger_relays_dropped_total``
  state)
  ======================  =====================================================

  For every victim: it ends ``completed`` with its one genuine asset (the finished
  ones keep theirs unchanged), its ledger holds no forged row and is a normal run's
  (accepted … rendered, archived, completed), and no backend rendered anything but its
  genuine attempt.

The harms the services allowed before publishers were checked are specifications at
the end of this file (``HARMS``, and the image swap).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from shared.events import EventType, JobAccepted, OutputImage, derived_id
from tests.hostile.conftest import HostileEnv, valid_shot
from tests.support.amqp import drain
from tests.support.chaos_checks import dead_letter_queues, sim_renders
from tests.support.chaos_forgery import (
    DOWNSTREAM,
    ELSEWHERE,
    FORGED_HEADER,
    Attacker,
    Forged,
    Forger,
    metric,
    publish_all,
    refused,
)
from tests.support.chaos_hostile import TALLY
from tests.support.chaos_watch import JobsWatcher, contiguity
from tests.support.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

#: How long a render takes while victims must stay in flight.
SLOW_RENDER = 8.0
#: Consumers each forged type reaches besides the ledger (their DLQ names).
ALSO_PARKED = {
    EventType.ACCEPTED: ("renderer",),
    EventType.RENDERED: ("archiver.rendered",),
}


# --------------------------------------------------------------------------- helpers


async def _submit(env: HostileEnv, tag: str) -> uuid.UUID:
    async with env.http.post(f"{env.ingest}/v1/jobs", json=valid_shot(tag)) as reply:
        body = await reply.json()
        assert reply.status == 202, body
        return uuid.UUID(body["job_id"])


async def _state(env: HostileEnv, job_id: uuid.UUID) -> str | None:
    return await env.db.fetchval("SELECT state FROM job_states WHERE job_id = $1", job_id)


async def _genuine(env: HostileEnv, job_id: uuid.UUID) -> JobAccepted:
    payload = await env.db.fetchval(
        "SELECT payload FROM job_events WHERE job_id = $1 AND event_type = 'job.accepted' "
        "ORDER BY seq LIMIT 1",
        job_id,
    )
    return JobAccepted.model_validate_json(payload)


async def _sim(env: HostileEnv, render_seconds: float) -> None:
    url = env.pipeline.settings.comfyui_urls[0]
    async with env.http.post(
        f"{url}/_sim/config", json={"render_seconds": render_seconds}
    ) as reply:
        assert reply.status == 200, await reply.text()


@pytest_asyncio.fixture
async def slow_renders(hostile: HostileEnv) -> AsyncIterator[None]:
    """Renders take SLOW_RENDER seconds (victims stay in flight), restored afterwards."""
    await _sim(hostile, SLOW_RENDER)
    try:
        yield
    finally:
        await _sim(hostile, 0.05)


async def _in_flight(env: HostileEnv, tag: str) -> uuid.UUID:
    job_id = await _submit(env, tag)
    await eventually(lambda: _is(env, job_id, "rendering"), timeout=60, what=f"{tag} rendering")
    return job_id


async def _flying(env: HostileEnv, job_id: uuid.UUID) -> bool:
    return await _state(env, job_id) in ("accepted", "rendering")


async def _is(env: HostileEnv, job_id: uuid.UUID, state: str) -> bool:
    return await _state(env, job_id) == state


async def _completed(env: HostileEnv, job_id: uuid.UUID, *, timeout: float = 90) -> str:
    async def final() -> str | None:
        state = await _state(env, job_id)
        return state if state in ("completed", "failed", "cancelled", "rejected") else None

    return await eventually(final, timeout=timeout, what=f"{job_id} final")


async def _parked(
    env: HostileEnv, wanted: dict[str, set[str]], *, timeout: float = 60
) -> dict[str, dict[str, str]]:
    """Drain the DLQs until every (queue, forged id) wanted is parked: {queue: {fid: reason}}."""
    queues = dead_letter_queues(env.settings)
    got: dict[str, dict[str, str]] = {name: {} for name in queues}
    deadline = time.monotonic() + timeout
    while True:
        for name, queue in queues.items():
            for _, headers in await drain(env.settings, queue):
                fid = str(headers.get(FORGED_HEADER, ""))
                if fid:
                    got[name][fid] = str(headers.get("x-park-reason", ""))
        if all(wanted[q] <= set(got[q]) for q in wanted) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.5)


async def _dropped_relays(env: HostileEnv) -> float:
    async with env.http.get(f"{env.notifier}/metrics") as reply:
        assert reply.status == 200, await reply.text()
        return metric(await reply.text(), "anime_ledger_relays_dropped_total")


def _message(
    fid: str, event: Any, *, key: str, angle: str, parked_by: tuple[str, ...] = ()
) -> Forged:
    return Forged(
        fid=fid,
        routing_key=key,
        body=event.model_dump_json().encode(),
        event_type=str(event.event_type.value),
        job_id=event.job_id,
        angle=angle,
        parked_by=parked_by,
    )


# --------------------------------------------------------------------------- outside


async def test_an_outside_submitter_is_refused_every_internal_key(hostile: HostileEnv) -> None:
    """The broker is the boundary: a submitter for ``neon-skies`` may publish
    ``job.submitted.neon-skies`` on the intake exchange and nothing else."""
    try:
        from shared.broker_access import (
            BrokerAccess,
            ProvisioningError,
            new_password,
            provision,
            revoke,
        )
    except ImportError:  # pragma: no cover - until the provisioning lands
        pytest.skip("shared/broker_access.py (anime broker provision) has not landed")
    env = hostile
    settings = env.settings
    access = BrokerAccess(settings)
    password = new_password()
    try:
        urls = await provision(settings, {}, submitters=[("forger", ["neon-skies"], password)])
    except ProvisioningError as exc:
        pytest.skip(f"this broker account cannot provision users: {exc}")
    user = access.submitter_user("forger")
    url = urls[user]
    try:
        victim = await _submit(env, "outside-victim")
        await _completed(env, victim)
        forger = Forger(await _genuine(env, victim), "http://127.0.0.1:9")
        refusals: list[str] = []
        accepted: list[str] = []
        probes: list[tuple[str, str, bytes]] = []
        for event_type in DOWNSTREAM:
            for project in ("neon-skies", ELSEWHERE):
                _, event = forger.event(event_type, project=project)
                body = event.model_dump_json().encode()
                for exchange in (access.exchange, access.intake):
                    probes.append((exchange, f"{event_type.value}.{project}", body))
                probes.append((access.exchange, f"ledger.{event_type.value}.{project}", body))
        # Straight into the pipeline's queues through the default exchange.
        for spec in access.topology.pipeline_specs(settings).values():
            probes.append(("", spec.name, b"{}"))
        # Submissions for a project that is not the submitter's.
        probes.append((access.intake, f"job.submitted.{ELSEWHERE}", b"{}"))
        probes.append((access.exchange, "job.submitted.neon-skies", b"{}"))
        for exchange, key, body in probes:
            refusal = await refused(url, exchange, key, body)
            where = f"{exchange or '(default)'} {key}"
            if refusal and "ACCESS_REFUSED" in refusal:
                refusals.append(where)
                TALLY.ok("amqp forged outside")
            else:
                accepted.append(where)
                TALLY.bad("amqp forged outside", f"the broker let the submitter publish {where}")
        assert not accepted, accepted
        # The door itself works for this user (so the refusals are about rights).
        shot = valid_shot("outside-door")
        from shared.events import JobSubmitted

        event = JobSubmitted.model_validate(
            {"job_id": uuid.uuid4(), "correlation_id": uuid.uuid4().hex, **shot}
        )
        assert (
            await refused(url, access.intake, event.routing_key(), event.model_dump_json().encode())
            is None
        )
        env.valid.append(event.job_id)
        # Nothing of the refused publishes reached a queue: the victim's ledger holds
        # only its own events and no DLQ holds anything about it.
        rows = await env.db.fetch(
            "SELECT payload->>'correlation_id' AS cid FROM job_events WHERE job_id = $1", victim
        )
        assert not [r for r in rows if str(r["cid"]).startswith("forged-")]
        parked = await _parked(env, {}, timeout=0)
        assert not any(parked.values()), parked
    finally:
        await revoke(settings, [user])
    await env.aftermath()


# --------------------------------------------------------------------------- inside


async def test_forged_events_about_known_jobs_do_no_harm(
    hostile: HostileEnv, slow_renders: None
) -> None:
    env = hostile
    settings = env.settings
    await _sim(env, 0.05)
    finished = [await _submit(env, f"victim-done-{i}") for i in range(2)]
    for job_id in finished:
        assert await _completed(env, job_id) == "completed"
    before_assets = {
        r["job_id"]: (r["path"], r["sha256"])
        for r in await env.db.fetch(
            "SELECT job_id, path, sha256 FROM assets WHERE job_id = ANY($1)", finished
        )
    }
    await _sim(env, SLOW_RENDER)
    # One backend renders one prompt at a time: the first victim renders, the second
    # waits its turn (accepted, or queued on the backend); both in flight meanwhile.
    in_flight = [await _submit(env, f"victim-flying-{i}") for i in range(2)]
    await eventually(lambda: _is(env, in_flight[0], "rendering"), timeout=60, what="rendering")
    await eventually(lambda: _flying(env, in_flight[1]), timeout=60, what="in flight")
    victims = finished + in_flight

    watcher = JobsWatcher(settings)
    watcher.start()
    await asyncio.wait_for(watcher.connected.wait(), 30)
    for job_id in victims:
        await watcher.watch(job_id)
    dropped_before = await _dropped_relays(env)

    async with Attacker() as attacker:
        messages: list[Forged] = []
        relays = 0  # relays about jobs in flight (their watchers are subscribed)
        for job_id in victims:
            genuine = await _genuine(env, job_id)
            forger = Forger(genuine, attacker.url)
            project = genuine.project
            last = int(
                await env.db.fetchval("SELECT last_seq FROM job_states WHERE job_id = $1", job_id)
            )
            for event_type in DOWNSTREAM:
                # 1. Another project, in the body and the routing key.
                fid, event = forger.event(event_type, project=ELSEWHERE)
                messages.append(
                    _message(
                        fid,
                        event,
                        key=event.routing_key(),
                        angle="other project",
                        parked_by=("archiver.ledger", *ALSO_PARKED.get(event_type, ())),
                    )
                )
                # 2. ledger.* relays: seq far ahead, another project, a wrong state.
                for seq, claimed, state in (
                    (last + 1000, project, "completed"),
                    (1, ELSEWHERE, "accepted"),
                    (1, project, "failed"),
                ):
                    fid, event = forger.event(event_type, project=claimed)
                    entry = forger.relay(event, seq=seq, state=state)
                    messages.append(
                        Forged(
                            fid=fid,
                            routing_key=entry.routing_key(),
                            body=entry.model_dump_json().encode(),
                            event_type=event_type.value,
                            job_id=job_id,
                            angle="relay",
                            relay=True,
                        )
                    )
                    relays += job_id in in_flight
            # 3. The true project, contents the row contradicts.
            fid, event = forger.event(EventType.ACCEPTED, project=project)
            messages.append(
                _message(
                    fid,
                    event,
                    key=event.routing_key(),
                    angle="spec",
                    parked_by=("renderer", "archiver.ledger"),
                )
            )
            if job_id in finished:
                for variant in (
                    {},  # the attacker as backend
                    {  # a configured backend, the row's spec, a prompt not the job's
                        "backend": settings.comfyui_urls[0],
                        "prompt_id": "forged-prompt",
                        "spec": genuine.spec,
                    },
                    {"backend": settings.comfyui_urls[0]},  # another spec
                ):
                    fid, event = forger.event(EventType.RENDERED, project=project, **variant)
                    messages.append(
                        _message(
                            fid,
                            event,
                            key=event.routing_key(),
                            angle="rendered",
                            parked_by=("archiver.rendered", "archiver.ledger"),
                        )
                    )
            # 4. The true project and plausible contents: started / progress. Only the
            #    renderer may publish these, and RabbitMQ vouches for the publisher.
            for event_type in (EventType.STARTED, EventType.PROGRESS):
                fid, event = forger.event(event_type, project=project)
                messages.append(
                    _message(
                        fid,
                        event,
                        key=event.routing_key(),
                        angle="true",
                        parked_by=("archiver.ledger",),
                    )
                )

        await publish_all(settings.amqp_url, settings.exchange, messages)
        wanted: dict[str, set[str]] = {}
        for m in messages:
            for queue in m.parked_by:
                wanted.setdefault(queue, set()).add(m.fid)
        parked = await _parked(env, wanted)

        # --- positive markers: every forgery met the check that refuses it
        for m in messages:
            for queue in m.parked_by:
                reason = parked[queue].get(m.fid, "")
                if reason.startswith("forged"):
                    TALLY.ok("amqp forged known jobs")
                else:
                    TALLY.bad(
                        "amqp forged known jobs",
                        f"{m.fid} {m.event_type} ({m.angle}) not parked as forged by {queue}: "
                        f"{reason or 'not parked'}",
                    )
        failures = [f for f in TALLY.failures if f.startswith("[amqp forged known")]
        assert not failures, failures[:20]
        unexpected = {
            q: sorted(set(got) - wanted.get(q, set())) for q, got in parked.items() if got
        }
        assert not any(unexpected.values()), f"parked but not expected: {unexpected}"
        await eventually(
            lambda: _dropped_at_least(env, dropped_before + relays),
            timeout=30,
            what=f"{relays} forged relays dropped by the notifier",
        )
        for _ in range(sum(m.relay for m in messages)):
            TALLY.ok("amqp forged known jobs")

        # --- the genuine jobs: completed, their own asset, a normal ledger
        await _sim(env, 0.05)
        for job_id in victims:
            assert await _completed(env, job_id) == "completed", job_id
        assets = await env.db.fetch(
            "SELECT job_id, path, sha256, project_slug FROM assets WHERE job_id = ANY($1)",
            victims,
        )
        assert sorted(a["job_id"] for a in assets) == sorted(victims), assets
        assert all(a["project_slug"] == "neon-skies" for a in assets), assets
        for job_id, before in before_assets.items():
            now = next((a["path"], a["sha256"]) for a in assets if a["job_id"] == job_id)
            assert now == before, f"{job_id}'s asset changed after forgeries"
        for job_id in victims:
            rows = await env.db.fetch(
                "SELECT seq, event_type, state, project_slug, payload FROM job_events "
                "WHERE job_id = $1 ORDER BY seq",
                job_id,
            )
            forged = [
                r for r in rows if json.loads(r["payload"])["correlation_id"].startswith("forged-")
            ]
            # Every forgery met a check before the ledger: none of them was recorded.
            assert forged == [], [(job_id, r["event_type"], r["state"]) for r in forged]
            genuine = [r for r in rows if r not in forged]
            kinds = [r["event_type"] for r in genuine]
            assert kinds[0] == "job.accepted" and kinds[-1] == "job.archived", kinds
            assert kinds.count("job.rendered") == 1 and kinds.count("job.archived") == 1, kinds
            assert set(kinds) <= {
                "job.accepted",
                "job.started",
                "job.progress",
                "job.rendered",
                "job.archived",
            }, kinds
            assert rows[-1]["state"] == "completed"
            assert {r["project_slug"] for r in rows} == {"neon-skies"}
        # --- nothing under the other project, nothing rendered but the genuine attempts
        assert not await env.db.fetchval(
            "SELECT count(*) FROM job_events WHERE project_slug = $1", ELSEWHERE
        )
        assert not await env.db.fetchval(
            "SELECT count(*) FROM assets WHERE project_slug = $1", ELSEWHERE
        )
        assert not (Path(env.settings.asset_root) / ELSEWHERE).exists()
        renders = sim_renders([env.tmp / "comfyui-0"], victims)
        assert renders == {(job_id, 1): 1 for job_id in victims}, renders
        # --- watchers: every genuine seq once, in order, nothing past the ledger
        last = {
            r["job_id"]: r["last_seq"]
            for r in await env.db.fetch(
                "SELECT job_id, last_seq FROM job_states WHERE job_id = ANY($1)", victims
            )
        }

        async def watched() -> bool:
            gaps, repeats, _ = contiguity(watcher.seqs, last)
            return gaps == 0 and repeats == 0

        await eventually(watched, timeout=30, what="watchers received every seq")
        assert all(max(watcher.seqs[j]) == last[j] for j in victims), (dict(watcher.seqs), last)
        await watcher.close()
        assert attacker.requests == [], f"the attacker's server was called: {attacker.requests}"
    await env.valid_traffic("forged-known-after")
    await env.aftermath()


async def _dropped_at_least(env: HostileEnv, wanted: float) -> bool:
    return await _dropped_relays(env) >= wanted


# --------------------------------------------------------------------------- once allowed

#: Harms the services allowed before publishers were checked (RabbitMQ's validated
#: user_id, shared/publishers.py) and cancel requests against the jobs row: each is now
#: a specification that must hold.
HARMS = {
    "cancel_requested naming another project": "services/renderer/handlers.py "
    "on_cancel_requested acts on any job.cancel_requested: no check against the jobs row",
    "failed with the true project": "services/archiver/ledger.py Ledger.record checks only "
    "the project: a forged final event ends a job in flight",
    "archived with the true project": "services/archiver/ledger.py Ledger.record: a forged "
    "job.archived (no asset rows) completes a job in flight",
    "cancelled with the true project": "services/archiver/ledger.py Ledger.record: a forged "
    "job.cancelled ends a job in flight while it renders",
    "rendered refused by archiver.rendered": "services/archiver/ledger.py Ledger.record "
    "records a job.rendered that archive.py parks as forged (attacker backend) and moves "
    "the job to 'rendered'; with the derived event id the genuine one is then a duplicate",
}


@pytest.mark.parametrize("harm", sorted(HARMS))
async def test_forged_event_ends_nothing_in_flight(
    harm: str, hostile: HostileEnv, slow_renders: None
) -> None:
    """Specification: once the boundary is bypassed, a forgery still must not end,
    cancel or rewrite a genuine job in flight."""
    env = hostile
    job_id = await _in_flight(env, f"harm-{harm.split()[0]}")
    genuine = await _genuine(env, job_id)
    async with Attacker() as attacker:
        forger = Forger(genuine, attacker.url)
        kind, project, extra = {
            "cancel_requested naming another project": (EventType.CANCEL_REQUESTED, ELSEWHERE, {}),
            "failed with the true project": (EventType.FAILED, genuine.project, {}),
            "archived with the true project": (EventType.ARCHIVED, genuine.project, {}),
            "cancelled with the true project": (EventType.CANCELLED, genuine.project, {}),
            "rendered refused by archiver.rendered": (
                EventType.RENDERED,
                genuine.project,
                {"event_id": derived_id(job_id, "rendered", 1)},
            ),
        }[harm]
        fid, event = forger.event(kind, project=project, **extra)
        await publish_all(
            env.settings.amqp_url,
            env.settings.exchange,
            [_message(fid, event, key=event.routing_key(), angle=harm)],
        )
        await _sim(env, 0.05)
        state = await _completed(env, job_id)
        rows = await env.db.fetch(
            "SELECT event_type, state, payload FROM job_events WHERE job_id = $1 ORDER BY seq",
            job_id,
        )
        await _parked(env, {}, timeout=0)  # leave the DLQs empty for the next test
        recorded = [
            (r["event_type"], r["state"])
            for r in rows
            if json.loads(r["payload"])["correlation_id"].startswith("forged-")
        ]
        assert not recorded, f"{HARMS[harm]}: the ledger recorded {recorded}"
        assert state == "completed", f"{HARMS[harm]}: the job ended {state}"
        assert attacker.requests == []


async def test_a_forged_job_rendered_cannot_swap_the_image(
    hostile: HostileEnv, slow_renders: None
) -> None:
    """A job.rendered that agrees with the row (project, spec, configured backend, the
    job's prompt id) but names another job's image must not archive that image."""
    env = hostile
    await _sim(env, 0.05)
    other = await _submit(env, "swap-source")
    assert await _completed(env, other) == "completed"
    await _sim(env, SLOW_RENDER)
    victim = await _in_flight(env, "swap-victim")
    genuine = await _genuine(env, victim)
    forger = Forger(genuine, "http://127.0.0.1:9")
    fid, event = forger.event(
        EventType.RENDERED,
        project=genuine.project,
        spec=genuine.spec,
        backend=env.settings.comfyui_urls[0],
        outputs=[OutputImage(filename="img_00001_.png", subfolder=f"jobs/{other}/a1")],
    )
    await publish_all(
        env.settings.amqp_url,
        env.settings.exchange,
        [_message(fid, event, key=event.routing_key(), angle="swap")],
    )
    await _sim(env, 0.05)
    await _completed(env, victim)
    await _parked(env, {}, timeout=0)
    path = await env.db.fetchval("SELECT path FROM assets WHERE job_id = $1", victim)
    assert path is not None
    sidecar = (Path(env.settings.asset_root) / path.removesuffix(".png")).with_suffix(".json")
    record = sidecar.read_text()
    # The record names the file the archiver fetched (source.subfolder) and the event's
    # correlation id: the victim's own attempt folder, from the genuine job.rendered.
    assert f"jobs/{other}/" not in record, "the victim's asset is another job's image"
    assert fid not in record, "the victim was archived from the forged job.rendered"
