"""What must hold after every fault, read from PostgreSQL, the disk and the broker.

:func:`audit` checks the jobs of one phase:

* every job has a ``jobs`` row and ends in exactly one terminal state (completed,
  failed *with a reason*, rejected *with problems*, cancelled), and once the ledger
  says final it never says anything else;
* none is lost (no row, or no terminal state in time) and none is judged twice;
* each ends as its submission calls for (valid → completed, invalid → rejected,
  cancelled → cancelled or completed; failed only for an injected validation error);
* none is rendered twice in one attempt (the simulators' output record), rendered in
  two attempts, or archived twice (a second set of files);
* one asset set per completed job (one image each here), none for the others; each
  asset's file is on disk with the recorded sha256; paths and sha256s are unique over
  the whole campaign; nothing else lies in the asset root (no second copy, no orphan,
  no ``.partial-`` leftover);
* the dead-letter queues hold exactly the jobs that failed for good (the renderer's
  DLQ: once each; ingest's and the archiver's: nothing);
* every watcher received each job's events without a gap or a repeat.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from shared.settings import Settings
from shared.topology import Topology
from tests.support.amqp import drain
from tests.support.chaos_load import Submitted
from tests.support.chaos_watch import contiguity

FINAL = ("completed", "failed", "rejected", "cancelled")


@dataclasses.dataclass
class PhaseReport:
    phase: str
    faults: list[str]
    jobs: int = 0
    outcomes: Counter[str] = dataclasses.field(default_factory=Counter)
    lost: int = 0
    duplicated: int = 0
    dead_lettered: int = 0
    retries: int = 0
    watcher_gaps: int = 0
    watcher_repeats: int = 0
    #: Images the backends rendered for this phase's jobs (their own record).
    renders: int = 0
    #: Jobs whose outcome is not what was submitted (valid → completed, …).
    wrong_outcomes: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and self.lost == 0 and self.duplicated == 0

    def row(self) -> list[str]:
        return [
            self.phase,
            str(len(self.faults)),
            str(self.jobs),
            str(self.outcomes.get("completed", 0)),
            str(self.outcomes.get("failed", 0)),
            str(self.outcomes.get("rejected", 0)),
            str(self.outcomes.get("cancelled", 0)),
            str(self.renders),
            str(self.retries),
            str(self.lost),
            str(self.duplicated),
            str(self.wrong_outcomes),
            str(self.dead_lettered),
            str(self.watcher_gaps + self.watcher_repeats),
            f"{self.seconds:.0f}s",
        ]


HEADER = [
    "phase",
    "faults",
    "jobs",
    "completed",
    "failed",
    "rejected",
    "cancelled",
    "renders",
    "retries",
    "lost",
    "duplicated",
    "wrong",
    "DLQ",
    "watch gaps",
    "time",
]

#: Every phase's report, for the table printed at the end of the session.
CAMPAIGN: list[PhaseReport] = []


def table(reports: list[PhaseReport]) -> str:
    rows = [HEADER, *(r.row() for r in reports)]
    total = PhaseReport("TOTAL", [f for r in reports for f in r.faults])
    for r in reports:
        total.jobs += r.jobs
        total.outcomes.update(r.outcomes)
        total.lost += r.lost
        total.duplicated += r.duplicated
        total.dead_lettered += r.dead_lettered
        total.retries += r.retries
        total.renders += r.renders
        total.wrong_outcomes += r.wrong_outcomes
        total.watcher_gaps += r.watcher_gaps
        total.watcher_repeats += r.watcher_repeats
        total.seconds += r.seconds
    rows.append(total.row())
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = []
    for index, row in enumerate(rows):
        lines.append(
            "  ".join(
                cell.rjust(w) if i else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if index == 0 or index == len(rows) - 2:
            lines.append("  ".join("-" * w for w in widths))
    faults = [f"  {r.phase}: {', '.join(r.faults)}" for r in reports]
    return "\n".join(lines) + "\n\nfaults injected:\n" + "\n".join(faults)


def dead_letter_queues(settings: Settings) -> dict[str, str]:
    specs = Topology.from_settings(settings).pipeline_specs(settings)
    return {
        "ingest": specs["ingest.submitted"].dlq,
        "renderer": specs["renderer.accepted"].dlq,
        "archiver.ledger": specs["archiver.ledger"].dlq,
        "archiver.rendered": specs["archiver.rendered"].dlq,
    }


def _job_of(body: bytes, headers: dict[str, Any]) -> str:
    if headers.get("job_id"):
        return str(headers["job_id"])
    try:
        return str(json.loads(body).get("job_id"))
    except (ValueError, AttributeError):
        return "?"


async def wait_final(
    db: asyncpg.Pool, job_ids: list[uuid.UUID], *, timeout: float
) -> dict[uuid.UUID, str]:
    """Terminal states of ``job_ids`` (missing ones left out after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await db.fetch(
            "SELECT job_id, state FROM job_states WHERE job_id = ANY($1) AND state = ANY($2)",
            job_ids,
            list(FINAL),
        )
        states = {r["job_id"]: r["state"] for r in rows}
        if len(states) == len(job_ids) or time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.3)


async def audit(
    report: PhaseReport,
    *,
    jobs: list[Submitted],
    db: asyncpg.Pool,
    settings: Settings,
    watchers: list[Any],
    seen_assets: dict[str, uuid.UUID],
    seen_shas: dict[str, uuid.UUID],
    sim_roots: list[Path] | None = None,
    permanent_faults: int = 0,
    timeout: float = 90.0,
) -> PhaseReport:
    ids = [j.job_id for j in jobs]
    report.jobs = len(ids)
    states = await wait_final(db, ids, timeout=timeout)
    report.outcomes.update(states.values())

    # --- lost: no row, or no terminal state in time
    rows = await db.fetch(
        "SELECT id, request_id, verdict, problems FROM jobs WHERE request_id = ANY($1)",
        [j.request_id for j in jobs],
    )
    by_request = Counter(r["request_id"] for r in rows)
    for job in jobs:
        count = by_request.get(job.request_id, 0)
        if count == 0 or job.job_id not in states:
            report.lost += 1
            report.problems.append(f"lost: {job.job_id} ({job.kind}) rows={count}")
        elif count > 1:
            report.duplicated += count - 1
            report.problems.append(f"judged {count} times: {job.request_id}")
    for r in rows:
        if r["verdict"] == "rejected" and not r["problems"]:
            report.problems.append(f"rejected without problems: {r['id']}")

    if report.lost:
        report.problems += await _diagnose(
            db, settings, [j.job_id for j in jobs if j.job_id not in states]
        )

    # --- exactly one terminal state; failed with a reason
    ledger = await db.fetch(
        "SELECT job_id, seq, state, event_type, (payload->>'attempt')::int AS attempt, "
        "payload->>'error_kind' AS error_kind FROM job_events WHERE job_id = ANY($1) "
        "ORDER BY job_id, seq",
        ids,
    )
    terminal: dict[uuid.UUID, str] = {}
    for row in ledger:
        first = terminal.get(row["job_id"])
        if first is None and row["state"] in FINAL:
            terminal[row["job_id"]] = row["state"]
        elif first is not None and row["state"] != first:
            report.problems.append(
                f"{row['job_id']} left terminal state {first} for {row['state']} (seq {row['seq']})"
            )
    report.retries = sum(1 for row in ledger if row["event_type"] == "job.retrying")
    failed = {j for j, s in states.items() if s == "failed"}
    reasons = await db.fetch(
        "SELECT job_id, reason FROM job_states WHERE job_id = ANY($1)", list(failed)
    )
    for r in reasons:
        if not (r["reason"] or "").strip():
            report.problems.append(f"failed without a reason: {r['job_id']}")

    # --- outcome: what was submitted decides how the job may end
    _outcomes(report, jobs, states, ledger, permanent_faults)

    # --- renders: once per attempt (the backends' record), rendered in one attempt only
    if sim_roots is not None:
        _renders(report, ids, states, ledger, sim_renders(sim_roots, ids))

    # --- assets: one set per completed job, on disk, unique
    assets = await db.fetch("SELECT job_id, path, sha256 FROM assets WHERE job_id = ANY($1)", ids)
    per_job = Counter(a["job_id"] for a in assets)
    root = Path(settings.asset_root)
    for job_id, state in states.items():
        expected = 1 if state == "completed" else 0
        if per_job.get(job_id, 0) != expected:
            report.duplicated += max(0, per_job.get(job_id, 0) - expected)
            report.problems.append(f"{job_id} is {state} with {per_job.get(job_id, 0)} assets")
    for asset in assets:
        for key, seen, value in (
            ("path", seen_assets, asset["path"]),
            ("sha256", seen_shas, asset["sha256"]),
        ):
            owner = seen.setdefault(value, asset["job_id"])
            if owner != asset["job_id"]:
                report.duplicated += 1
                report.problems.append(f"{key} {value} of {asset['job_id']} also {owner}'s")
        path = root / asset["path"]
        if not path.is_file():
            report.problems.append(f"asset file missing: {asset['path']}")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != asset["sha256"]:
            report.problems.append(f"asset file differs from its sha256: {asset['path']}")

    # --- archived more than once: a second set of files for a job (another name)
    known = {r["path"] for r in await db.fetch("SELECT path FROM assets")}
    phase_ids = {str(j) for j in ids}
    for extra in disk_leftovers(settings, known):
        owner = next((part for part in extra.split("/") if part in phase_ids), None)
        if owner is not None:
            report.duplicated += 1
            report.problems.append(f"file of {owner} that no asset row accounts for: {extra}")

    # --- the dead-letter queues hold exactly the jobs that failed for good
    parked: dict[str, list[str]] = {}
    for name, queue in dead_letter_queues(settings).items():
        parked[name] = [_job_of(body, headers) for body, headers in await drain(settings, queue)]
    report.dead_lettered = sum(len(v) for v in parked.values())
    renderer_parked = Counter(parked.pop("renderer"))
    failed_ids = {str(j) for j in failed}
    if set(renderer_parked) != failed_ids:
        report.problems.append(
            f"renderer DLQ holds {sorted(renderer_parked)} but failed are {sorted(failed_ids)}"
        )
    for parked_id, count in renderer_parked.items():
        if count > 1:
            report.duplicated += count - 1
            report.problems.append(f"{parked_id} dead-lettered {count} times")
    for name, held in parked.items():
        if held:
            report.problems.append(f"{name} DLQ holds {held[:5]} ({len(held)})")

    # --- watchers: each job's events without a gap or a repeat
    last = {
        r["job_id"]: r["last_seq"]
        for r in await db.fetch(
            "SELECT job_id, last_seq FROM job_states WHERE job_id = ANY($1)", ids
        )
    }
    for watcher in watchers:
        wanted = {j: s for j, s in last.items() if j in getattr(watcher, "jobs", last)}
        deadline = time.monotonic() + 20
        while True:
            gaps, repeats, examples = contiguity(watcher.seqs, wanted)
            if (gaps == 0 and repeats == 0) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        report.watcher_gaps += gaps
        report.watcher_repeats += repeats
        report.problems += [f"{type(watcher).__name__}: {e}" for e in examples]
    return report


def _outcomes(
    report: PhaseReport,
    jobs: list[Submitted],
    states: dict[uuid.UUID, str],
    ledger: list[Any],
    permanent_faults: int,
) -> None:
    """valid → completed, invalid → rejected, cancelled → cancelled (or completed if the
    render won); a valid job may fail only for a permanent failure the phase injected
    (a backend validation error), and no more of them than were injected."""
    failed_kind = {r["job_id"]: r["error_kind"] for r in ledger if r["event_type"] == "job.failed"}
    permanent = 0
    for job in jobs:
        state = states.get(job.job_id)
        if state is None:
            continue  # lost, counted above
        allowed = {"valid": {"completed"}, "invalid": {"rejected"}}.get(
            job.kind, {"cancelled", "completed"}
        )
        if state in allowed:
            continue
        if (
            state == "failed"
            and job.kind != "invalid"
            and failed_kind.get(job.job_id) == "validation"
        ):
            permanent += 1
            continue
        report.wrong_outcomes += 1
        report.problems.append(
            f"{job.job_id} ({job.kind}) ended {state}"
            + (f" ({failed_kind.get(job.job_id)})" if state == "failed" else "")
        )
    if permanent > permanent_faults:
        report.wrong_outcomes += permanent - permanent_faults
        report.problems.append(
            f"{permanent} jobs failed for good but only {permanent_faults} permanent "
            "failures were injected"
        )


def _renders(
    report: PhaseReport,
    ids: list[uuid.UUID],
    states: dict[uuid.UUID, str],
    ledger: list[Any],
    renders: Counter[tuple[uuid.UUID, int]],
) -> None:
    """Duplicates the schema cannot forbid: event ids are per attempt (``started/<n>``,
    ``rendered/<n>``), so the ledger holds each attempt's events once by construction;
    what can still go wrong is a backend rendering one attempt twice, or a job being
    rendered (and so delivered to the archiver) in two attempts."""
    report.renders = sum(renders.values())
    for (job_id, attempt), count in sorted(renders.items()):
        if count > 1:
            report.duplicated += count - 1
            report.problems.append(f"{job_id} attempt {attempt} rendered {count} times")
    rendered: dict[uuid.UUID, set[int]] = {}
    seen: dict[uuid.UUID, set[int]] = {}
    for row in ledger:
        if row["attempt"] is not None:
            seen.setdefault(row["job_id"], set()).add(row["attempt"])
        if row["event_type"] == "job.rendered":
            rendered.setdefault(row["job_id"], set()).add(row["attempt"])
    for job_id, attempts in rendered.items():
        if len(attempts) > 1:
            report.duplicated += len(attempts) - 1
            report.problems.append(f"{job_id} rendered in attempts {sorted(attempts)}")
        for attempt in attempts:
            if renders.get((job_id, attempt), 0) == 0:
                report.problems.append(
                    f"{job_id}: job.rendered for attempt {attempt}, no backend rendered it"
                )
    for job_id in ids:
        if states.get(job_id) == "completed" and not rendered.get(job_id):
            report.problems.append(f"{job_id} completed without a job.rendered")
    for job_id, attempt in renders:
        if attempt not in seen.get(job_id, set()):
            report.problems.append(
                f"{job_id}: a backend rendered attempt {attempt} the ledger never saw"
            )


async def _diagnose(db: asyncpg.Pool, settings: Settings, lost: list[uuid.UUID]) -> list[str]:
    """Where the lost jobs stopped, and what the queues hold (for the failure message)."""
    notes = []
    for job_id in lost[:5]:
        kinds = await db.fetch(
            "SELECT seq, event_type, state FROM job_events WHERE job_id = $1 ORDER BY seq", job_id
        )
        notes.append(f"  ledger of {job_id}: {[(r['event_type'], r['state']) for r in kinds]}")
    topology = Topology.from_settings(settings)
    names = set()
    for spec in topology.pipeline_specs(settings).values():
        names |= {
            spec.name,
            spec.dlq,
            *(topology.retry_name(spec.name, d) for d in spec.retry_delays),
        }
    import aio_pika

    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        for name in sorted(names):
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
                result = queue.declaration_result
                notes.append(
                    f"  queue {name}: ready={result.message_count} consumers={result.consumer_count}"
                )
            except Exception as exc:
                notes.append(f"  queue {name}: {type(exc).__name__}")
    return notes


def sim_renders(sim_roots: list[Path], job_ids: list[uuid.UUID]) -> Counter[tuple[uuid.UUID, int]]:
    """Images each backend wrote per (job, attempt): the simulators' own record.

    The renderer gives every attempt its own SaveImage prefix
    (``jobs/<job_id>/a<attempt>/img``, :func:`shared.workflows.filename_prefix_for`) and
    a backend writes ``img_NNNNN_.png`` with a fresh counter each time it executes the
    graph, so the files under ``output/jobs/<job>/a<n>/`` of every simulator count how
    often that attempt was really rendered (files survive a simulated restart; a prompt
    repeated on the same backend is served from its cache and writes nothing, as in
    ComfyUI, so it renders nothing either).
    """
    renders: Counter[tuple[uuid.UUID, int]] = Counter()
    for root in sim_roots:
        for job_id in job_ids:
            folder = root / "output" / "jobs" / str(job_id)
            if not folder.is_dir():
                continue
            for attempt in folder.iterdir():
                if attempt.name.startswith("a") and attempt.name[1:].isdigit():
                    renders[(job_id, int(attempt.name[1:]))] += sum(
                        1 for f in attempt.glob("*.png") if f.is_file()
                    )
    return renders


def disk_leftovers(settings: Settings, known_paths: set[str]) -> list[str]:
    """Files in the asset root that no asset row accounts for (sidecars are allowed)."""
    root = Path(settings.asset_root)
    if not root.exists():
        return []
    allowed = known_paths | {p.removesuffix(".png") + ".json" for p in known_paths}
    extra = []
    for path in root.rglob("*"):
        if path.is_file():
            relative = path.relative_to(root).as_posix()
            if relative not in allowed:
                extra.append(relative)
    return sorted(extra)
