"""The benchmarks. Each returns a :class:`~bench.harness.Result` (figures, targets, notes)
plus raw series for the chart. No assertion on time anywhere: figures are reported."""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import procstat
from bench.baseline import chain as baseline_chain
from bench.harness import (
    AMQP_URL,
    DATABASE_SERVER_URL,
    SERVICES,
    Bench,
    Result,
    Submitter,
    accepted_count,
    bench_pipeline,
    epoch,
    final_count,
    job_times,
    percentile,
    shot,
    sim_stats,
    submission,
    wait_until,
)
from bench.profiling import record, render, summarise
from cli.processes import Supervisor, service_argv, simulator_argv
from shared.events import RenderParams
from shared.settings import REPO_ROOT
from shared.workflows import TemplateRegistry, compile_workflow
from tests.support.pipeline import free_port


@dataclass
class Options:
    jobs: int = 10_000
    second_round: bool = True
    simulators: int = 2
    #: Prompts the renderer keeps on each backend (ANIME_BACKEND_SLOTS) in throughput
    #: and latency rounds.
    backend_slots: int = 2
    #: Archiver processes in the throughput round (competing consumers of its queues).
    archivers: int = 1
    #: Run the archiver's ledger and archive as two processes (ANIME_ARCHIVER_ROLES).
    split_archiver: bool = False
    latency_rate: float = 20.0
    latency_seconds: float = 60.0
    calm_rate: float = 5.0
    calm_seconds: float = 30.0
    overhead_jobs: int = 60
    overhead_render: float = 1.0
    utilization_window: float = 30.0
    profile: bool = True
    baseline: bool = True
    baseline_prefetch: int = 32
    profile_seconds: float = 20.0
    out: Path = REPO_ROOT / "bench" / "results"
    tmp: Path = Path("/tmp")


class PartialFailure(Exception):
    """A benchmark broke after some of its results were measured (reported anyway)."""

    def __init__(self, results: list[Result], cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.results = results
        self.cause = cause


@dataclass
class Series:
    """Raw points for the chart."""

    data: dict[str, Any] = field(default_factory=dict)


def _labels(bench: Bench) -> dict[int, str]:
    labels = {bench.pid(s): s for s in SERVICES}
    for name, managed in bench.pipeline.supervisor.processes.items():
        if name.startswith("comfyui-") and managed.process is not None:
            labels[managed.process.pid] = "simulators"
        elif name.startswith("archiver-") and managed.process is not None:
            labels[managed.process.pid] = "archiver"  # the extra ones of --archivers
    labels[os.getpid()] = "bench (submitter, poller)"
    return labels


# =========================================================================== 1, 5, 6


async def _archived_count(bench: Bench) -> int:
    return int(await bench.db.fetchval("SELECT count(DISTINCT job_id) FROM assets"))


async def _round(
    bench: Bench, n: int, offset: int, trace: list[tuple[float, int, int, int]], timeout: float
) -> dict[str, Any]:
    """Publish ``n`` jobs at once; follow acceptance and completion until all are final."""
    events = [submission(shot(offset + i)) for i in range(n)]
    load = [round(x, 2) for x in os.getloadavg()]
    base_accepted = await accepted_count(bench)
    base_final = await final_count(bench)
    base_archived = await _archived_count(bench)
    archived_at: float | None = None
    cpu_before = procstat.snapshot()
    async with Submitter(bench.settings) as submitter:
        start = time.monotonic()
        publishing = asyncio.create_task(submitter.publish_all(events))
        published_at: float | None = None
        accepted_at: float | None = None
        deadline = start + timeout
        while True:
            now = time.monotonic()
            if published_at is None and publishing.done():
                await publishing
                published_at = now
            accepted = await accepted_count(bench) - base_accepted
            final = await final_count(bench) - base_final
            archived = await _archived_count(bench) - base_archived
            trace.append((now - start, accepted, final, archived))
            if accepted_at is None and accepted >= n:
                accepted_at = now
            if archived_at is None and archived >= n:
                archived_at = now
            if final >= n and published_at is not None:
                finished_at = now
                break
            if now > deadline:
                raise TimeoutError(f"{final}/{n} jobs final after {timeout}s")
            await asyncio.sleep(0.5)
    cpu = procstat.spent(cpu_before, procstat.snapshot(), _labels(bench))
    assert accepted_at is not None
    wall = finished_at - start
    # The same "done" clock as the baseline's: the last job's final state as the ledger
    # stamped it, minus the first submission (the poll above is 0.5 s coarse).
    sent = publishing.result()
    last_final = await bench.db.fetchval(
        "SELECT max(finished_at) FROM job_states WHERE job_id = ANY($1)", list(sent)
    )
    ledger_wall = epoch(last_final) - min(sent.values()) if last_final else wall
    # Steady archiving rate: between 10 % and 90 % of jobs archived (files and rows).
    # (Final states come in a late rush: the ledger queue is FIFO and every job's
    # job.archived waits behind the events published before it.)
    first = next(t for t, _, _, a in trace if a >= 0.1 * n)
    last = next(t for t, _, _, a in trace if a >= 0.9 * n)
    steady = (0.8 * n) / (last - first) if last > first else float("nan")
    states = await bench.db.fetch(
        "SELECT state, count(*) AS n FROM job_states WHERE job_id = ANY($1) GROUP BY state",
        [e.job_id for e in events],
    )
    return {
        "jobs": n,
        "load_average_before": load,
        "publish_seconds": round(published_at - start, 3),
        "broker_accept_rate": round(n / (published_at - start), 1),
        "ingest_all_accepted_seconds": round(accepted_at - start, 2),
        "ingest_rate": round(n / (accepted_at - start), 1),
        "all_files_archived_seconds": round((archived_at or finished_at) - start, 2),
        "archive_rate": round(n / ((archived_at or finished_at) - start), 2),
        "all_final_seconds": round(wall, 2),
        "throughput": round(n / wall, 2),
        "all_final_seconds_ledger": round(ledger_wall, 3),
        "throughput_ledger": round(n / ledger_wall, 2),
        "steady_archive_rate_10_90": round(steady, 2),
        "states": {r["state"]: r["n"] for r in states},
        "cpu_seconds": {k: round(v, 1) for k, v in cpu.items() if v >= 0.05},
        "cpu_ms_per_job": {k: round(v / n * 1000, 2) for k, v in cpu.items() if v >= 0.05},
        **_charged(cpu, n),
    }


def _charged(cpu: dict[str, float], n: int) -> dict[str, Any]:
    """The CPU total charged to the pipeline, counted as the baseline's is: the four
    services, the bench process, RabbitMQ and PostgreSQL (not the simulators, which
    stand in for ComfyUI, nor whatever else ran on the machine)."""
    figures = baseline_chain.cpu_figures(cpu, n, chain_labels=SERVICES)
    return {
        "cpu_ms_per_job_total": figures["cpu_ms_per_job_total"],
        "cpu_ms_per_job_elsewhere_not_charged": figures["cpu_ms_per_job_elsewhere_not_charged"],
    }


async def _baseline_round(opts: Options) -> Result:
    """The bare chain (bench/baseline): the floor the pipeline's figures are divided by."""
    n = opts.jobs
    figures = await baseline_chain.measure(
        n,
        opts.tmp / f"bench-baseline-{uuid.uuid4().hex[:6]}",
        amqp_url=AMQP_URL,
        database_server_url=DATABASE_SERVER_URL,
        requests=[shot(i) for i in range(n)],
        prefetch=opts.baseline_prefetch,
    )
    result = Result(
        "baseline",
        notes=[
            "RabbitMQ and PostgreSQL are shared: their CPU includes whatever else used "
            "them during the round (so does the pipeline's)"
        ],
    )
    result.figures = {
        "what": "4 FastStream processes (ingest → render → archive → notify), quorum queues, "
        "persistent messages + publisher confirms, 1 PostgreSQL INSERT per stage, "
        "1 fsync'd 4 KiB file (+ directory fsync) in the archive stage; submitted like "
        "the pipeline's round (all at once over AMQP); done = last stage's row committed",
        **figures,
    }
    return result


async def baseline(opts: Options, series: Series) -> list[Result]:
    """The baseline chain alone (``--only baseline``)."""
    return [await _baseline_round(opts)]


def _side_by_side(round1: dict[str, Any], base: dict[str, Any]) -> list[list[Any]]:
    """Rows of (what, pipeline, baseline, pipeline / baseline)."""

    def row(what: str, p: float | None, b: float | None) -> list[Any]:
        ratio = round(p / b, 2) if p is not None and b else None
        return [what, p, b, ratio]

    pcpu, bcpu = round1["cpu_ms_per_job"], base["cpu_ms_per_job"]
    rows = [
        row("jobs/s (first submit → last done)", round1["throughput_ledger"], base["throughput"]),
        row(
            "CPU ms/job, total charged",
            round1["cpu_ms_per_job_total"],
            base["cpu_ms_per_job_total"],
        ),
    ]
    for stage, service in baseline_chain.COUNTERPART.items():
        rows.append(row(f"  {service} / {stage}", pcpu.get(service), bcpu.get(stage)))
    for family, label in (("beam.smp", "RabbitMQ"), ("postgres", "PostgreSQL")):
        rows.append(row(f"  {label}", pcpu.get(family), bcpu.get(family)))
    bench_label = baseline_chain.BENCH_LABEL
    rows.append(row(f"  {bench_label}", pcpu.get(bench_label), bcpu.get(bench_label)))
    rows.append(row("  simulators (not charged)", pcpu.get("simulators"), None))
    rows.append(
        row(
            "  elsewhere on the machine (not charged)",
            round1["cpu_ms_per_job_elsewhere_not_charged"],
            base["cpu_ms_per_job_elsewhere_not_charged"],
        )
    )
    return rows


async def throughput(opts: Options, series: Series) -> list[Result]:
    """1 throughput, 5 burst absorption, 6 footprint: one pipeline, two rounds of N; and
    the bare baseline chain with the same N just before, for the ratios."""
    base: Result | None = None
    if opts.baseline:
        base = await _baseline_round(opts)
    try:
        results = await _pipeline_throughput(opts, series)
    except Exception as exc:
        if base is None:
            raise
        base.notes.append("the pipeline's throughput round failed: no ratios")
        raise PartialFailure([base], exc) from exc
    if base is None:
        return results
    tp = results[0]
    round1, floor = tp.figures["round_1"], base.figures
    tp.figures["side_by_side"] = _side_by_side(round1, floor)
    speed = round(round1["throughput_ledger"] / floor["throughput"], 3)
    cost = round(round1["cpu_ms_per_job_total"] / floor["cpu_ms_per_job_total"], 3)
    tp.target("throughput_vs_baseline", speed, 0.7, at_most=False)
    tp.target("throughput_vs_baseline_stretch", speed, 1.0, at_most=False)
    tp.target("cpu_per_job_vs_baseline", cost, 2.0, at_most=True)
    tp.notes.append(
        "ratios use the same clock for both: last job's final state (ledger finished_at / "
        "baseline's last-stage row) minus the first submission; CPU charged = the four "
        "processes + bench + RabbitMQ + PostgreSQL, from /proc, both rounds counted alike"
    )
    return [base, *results]


async def _extra_archiver(bench: Bench, index: int, *, roles: str = "ledger,archive") -> None:
    """Another archiver process on the same queues (its own HTTP port)."""
    port = free_port()
    env = {
        **bench.pipeline.env("archiver"),
        "ANIME_ARCHIVER_PORT": str(port),
        "ANIME_ARCHIVER_ROLES": roles,
    }
    await bench.pipeline.supervisor.start(
        f"archiver-{index}",
        service_argv("archiver"),
        env=env,
        ready_url=f"http://127.0.0.1:{port}/readyz",
        timeout=60,
    )


async def _pipeline_throughput(opts: Options, series: Series) -> list[Result]:
    tmp = opts.tmp / f"bench-throughput-{uuid.uuid4().hex[:6]}"
    n = opts.jobs
    async with bench_pipeline(
        tmp,
        render_seconds=0.0,
        simulators=opts.simulators,
        backend_slots=opts.backend_slots,
        archiver_roles=("ledger",) if opts.split_archiver else ("ledger", "archive"),
    ) as bench:
        if opts.split_archiver:
            await _extra_archiver(bench, 0, roles="archive")
        for index in range(2, opts.archivers + 1):
            await _extra_archiver(bench, index)
        rss_start = bench.rss_mb()
        trace1: list[tuple[float, int, int, int]] = []
        profiles: dict[str, Any] = {}
        profiler: asyncio.Task[None] | None = None
        if opts.profile:
            profiler = asyncio.create_task(_profile_all(bench, opts, profiles))
        round1 = await _round(bench, n, 0, trace1, timeout=max(600.0, n * 0.5))
        if profiler is not None:
            await profiler
        await asyncio.sleep(2.0)
        rss1 = bench.rss_mb()
        round2: dict[str, Any] | None = None
        rss2: dict[str, float] | None = None
        trace2: list[tuple[float, int, int, int]] = []
        if opts.second_round:
            round2 = await _round(bench, n, n, trace2, timeout=max(600.0, n * 0.5))
            await asyncio.sleep(2.0)
            rss2 = bench.rss_mb()

    series.data["throughput_trace"] = trace1
    series.data["throughput_trace_2"] = trace2
    series.data["rss"] = {"start": rss_start, "after_round_1": rss1, "after_round_2": rss2}

    tp = Result("throughput", notes=[])
    tp.figures = {
        "jobs": n,
        "simulators": opts.simulators,
        "backend_slots": opts.backend_slots,
        "archivers": opts.archivers,
        "split_archiver": opts.split_archiver,
        "render_seconds": 0.0,
        "image": "64x64, template model-free",
        "round_1": round1,
        "round_2": round2,
    }
    tp.target("jobs_per_second", round1["throughput"], 200.0, at_most=False)
    tp.figures["profiles"] = profiles
    burst = Result("burst")
    burst.figures = {
        "submissions": n,
        "broker_confirmed_all_seconds": round1["publish_seconds"],
        "broker_accept_rate": round1["broker_accept_rate"],
        "ingest_judged_all_seconds": round1["ingest_all_accepted_seconds"],
        "ingest_rate_under_load": round1["ingest_rate"],
        "lost": n - sum(round1["states"].values()),
    }
    footprint = Result("footprint")
    growth = {s: round(rss2[s] - rss1[s], 1) for s in SERVICES} if rss2 is not None else None
    footprint.figures = {
        "rss_mb_start": _rounded(rss_start),
        "rss_mb_after_first": _rounded(rss1),
        "rss_mb_after_second": _rounded(rss2) if rss2 else None,
        "growth_mb_second_round": growth,
        "jobs_per_round": n,
    }
    for service in SERVICES:
        peak = max(rss1[service], (rss2 or rss1)[service])
        footprint.target(f"rss_mb_{service}", round(peak, 1), 150.0, at_most=True)
        if growth is not None:
            # "No growth": within 5 % of the first round's figure (allocator noise).
            footprint.target(
                f"growth_mb_{service}",
                growth[service],
                round(0.05 * rss1[service], 1),
                at_most=True,
            )
    return [tp, burst, footprint]


def _rounded(values: dict[str, float] | None) -> dict[str, float] | None:
    return {k: round(v, 1) for k, v in values.items()} if values else None


async def _profile_all(bench: Bench, opts: Options, out: dict[str, Any]) -> None:
    """py-spy every service at once, a few seconds into the first round."""
    await asyncio.sleep(5.0)
    opts.out.mkdir(parents=True, exist_ok=True)
    # Raw collapsed stacks are large: kept next to the run's temp files, not in results/.
    raws = {s: opts.tmp / f"bench-profile-{s}-{uuid.uuid4().hex[:6]}.raw" for s in SERVICES}
    done = await asyncio.gather(
        *(record(bench.pid(s), raws[s], seconds=opts.profile_seconds) for s in SERVICES)
    )
    texts = []
    for service, ok in zip(SERVICES, done, strict=True):
        if not ok:
            out[service] = "py-spy unavailable or failed"
            continue
        summary = summarise(raws[service])
        out[service] = {
            "samples": summary.samples,
            "by_library": summary.by_area[:8],
            "inclusive": summary.inclusive_top[:12],
            "self": summary.self_top[:10],
        }
        texts.append(render(service, summary))
    (opts.out / "profile.txt").write_text("\n\n".join(texts) + "\n")


# =========================================================================== 2


async def _paced(bench: Bench, rate: float, seconds: float, offset: int) -> dict[str, Any]:
    count = max(1, int(rate * seconds))
    events = [submission(shot(offset + i)) for i in range(count)]
    async with Submitter(bench.settings) as submitter:
        start = time.monotonic()
        sent = await submitter.publish_paced(events, rate=rate)
        offered = count / (time.monotonic() - start)
    await wait_until(
        lambda: final_count(bench, sent), count, timeout=max(300.0, count * 0.5), what="latency"
    )
    times = await job_times(bench, sent)
    added = []
    total = []
    renders = []
    for job_id, sent_at in sent.items():
        t = times[job_id]
        if t.state != "completed" or t.finished_at is None:
            continue
        end_to_end = epoch(t.finished_at) - sent_at
        total.append(end_to_end * 1000)
        renders.append(t.render_seconds * 1000)
        added.append((end_to_end - t.render_seconds) * 1000)
    stages = await _stages(bench, sent)
    return {
        "rate_offered": round(offered, 2),
        "stage_ms_p50": stages,
        "jobs": count,
        "completed": len(added),
        "added_ms": {
            "p50": round(percentile(added, 50), 1),
            "p90": round(percentile(added, 90), 1),
            "p99": round(percentile(added, 99), 1),
            "max": round(max(added), 1) if added else None,
        },
        "end_to_end_ms_p50": round(percentile(total, 50), 1),
        "render_ms_p50": round(percentile(renders, 50), 2),
        "samples_ms": sorted(round(a, 2) for a in added),
    }


async def _stages(bench: Bench, sent: dict[uuid.UUID, float]) -> dict[str, float]:
    """Median time of each hop, from the ledger's occurred_at/recorded_at stamps."""
    rows = await bench.db.fetch(
        """
        SELECT j.id, j.created_at, e.event_type, e.occurred_at, e.recorded_at
        FROM jobs j JOIN job_events e ON e.job_id = j.id
        WHERE j.id = ANY($1)
          AND e.event_type IN ('job.accepted', 'job.started', 'job.rendered', 'job.archived')
        """,
        list(sent),
    )
    by_job: dict[uuid.UUID, dict[str, Any]] = {}
    for r in rows:
        job = by_job.setdefault(r["id"], {"judged": epoch(r["created_at"])})
        job[r["event_type"]] = (epoch(r["occurred_at"]), epoch(r["recorded_at"]))
    hops: dict[str, list[float]] = {
        "submit→ingest_judged": [],
        "judged→render_started": [],
        "started→rendered (incl. render)": [],
        "rendered→archived": [],
        "archived→recorded_in_ledger": [],
    }
    for job_id, job in by_job.items():
        if not {"job.started", "job.rendered", "job.archived"} <= job.keys():
            continue
        points = [
            sent[job_id],
            job["judged"],
            job["job.started"][0],
            job["job.rendered"][0],
            job["job.archived"][0],
            job["job.archived"][1],
        ]
        for values, a, b in zip(hops.values(), points, points[1:], strict=False):
            values.append((b - a) * 1000)
    return {name: round(percentile(values, 50), 1) for name, values in hops.items()}


async def latency(opts: Options, series: Series) -> list[Result]:
    tmp = opts.tmp / f"bench-latency-{uuid.uuid4().hex[:6]}"
    async with bench_pipeline(tmp, render_seconds=0.0, simulators=opts.simulators) as bench:
        # Warm up: connections, prepared statements, caches.
        await _paced(bench, 5.0, 2.0, 0)
        calm = await _paced(bench, opts.calm_rate, opts.calm_seconds, 100)
        await asyncio.sleep(1.0)
        loaded = await _paced(bench, opts.latency_rate, opts.latency_seconds, 10_000)
    series.data["latency_samples"] = {
        f"{opts.latency_rate:g} jobs/s": loaded.pop("samples_ms"),
        f"{opts.calm_rate:g} jobs/s": calm.pop("samples_ms"),
    }
    result = Result("latency")
    result.figures = {
        "how": "per job: job_states.finished_at (ledger records job.archived) minus the "
        "moment the submitter published job.submitted, minus the render time the "
        "backend reported (job.rendered render_seconds); render-seconds 0",
        f"at_{opts.latency_rate:g}_jobs_per_second": loaded,
        f"at_{opts.calm_rate:g}_jobs_per_second": calm,
    }
    result.target("p50_ms", loaded["added_ms"]["p50"], 25.0, at_most=True)
    result.target("p99_ms", loaded["added_ms"]["p99"], 100.0, at_most=True)
    return [result]


# =========================================================================== 3


async def _direct(url: str, n: int, concurrency: int) -> float:
    """A minimal direct ComfyUI client: POST /prompt, poll /history/{id}; wall seconds."""
    template = TemplateRegistry.load(REPO_ROOT / "templates").get("model-free")
    gate = asyncio.Semaphore(concurrency)

    async def one(client: aiohttp.ClientSession, index: int) -> None:
        async with gate:
            prompt_id = str(uuid.uuid4())
            workflow = compile_workflow(
                template,
                prompt=f"direct frame {index}",
                negative="",
                params=RenderParams(width=64, height=64),
                filename_prefix=f"direct/{prompt_id}/img",
                seed=index,
            )
            async with client.post(
                f"{url}/prompt", json={"prompt": workflow, "prompt_id": prompt_id}
            ) as reply:
                reply.raise_for_status()
            while True:
                async with client.get(f"{url}/history/{prompt_id}") as reply:
                    history = await reply.json()
                if prompt_id in history and history[prompt_id].get("status", {}).get("completed"):
                    return
                await asyncio.sleep(0.01)

    async with aiohttp.ClientSession() as client:
        start = time.monotonic()
        await asyncio.gather(*(one(client, i) for i in range(n)))
        return time.monotonic() - start


async def overhead(opts: Options, series: Series) -> list[Result]:
    n, render_s = opts.overhead_jobs, opts.overhead_render
    tmp = opts.tmp / f"bench-overhead-{uuid.uuid4().hex[:6]}"
    slots = 2
    supervisor = Supervisor(log_dir=tmp / "direct-logs")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        await supervisor.start(
            "direct-sim",
            simulator_argv(
                port=port,
                root=tmp / "direct-sim",
                render_seconds=render_s,
                extra=["--log-level", "WARNING"],
            ),
            ready_url=f"{url}/system_stats",
        )
        await _direct(url, 2, slots)  # warm-up
        direct = await _direct(url, n, slots)
    finally:
        await supervisor.stop_all()
        shutil.rmtree(tmp / "direct-sim", ignore_errors=True)

    async with bench_pipeline(
        tmp / "pipeline", render_seconds=render_s, simulators=1, backend_slots=slots
    ) as bench:
        async with Submitter(bench.settings) as submitter:
            warm = [submission(shot(i)) for i in range(2)]
            await submitter.publish_all(warm)
            await wait_until(lambda: final_count(bench), 2, timeout=60, what="warm-up")
            events = [submission(shot(100 + i)) for i in range(n)]
            sent = await submitter.publish_all(events)
        await wait_until(
            lambda: final_count(bench, sent), n, timeout=n * render_s * 3 + 60, what="overhead"
        )
        times = await job_times(bench, sent)
    first_sent = min(sent.values())
    last_done = max(epoch(t.finished_at) for t in times.values() if t.finished_at)
    through = last_done - first_sent
    ratio = through / direct
    result = Result("overhead")
    result.figures = {
        "jobs": n,
        "render_seconds": render_s,
        "concurrency": f"{slots} in flight (the renderer's backend_slots) on one backend",
        "direct_seconds": round(direct, 3),
        "pipeline_seconds": round(through, 3),
        "ratio": round(ratio, 4),
        "pipeline_states": _count(t.state for t in times.values()),
    }
    result.target("ratio", round(ratio, 4), 1.02, at_most=True)
    return [result]


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


# =========================================================================== 4


async def utilization(opts: Options, series: Series) -> list[Result]:
    backends, render_s, window = 4, 0.2, opts.utilization_window
    tmp = opts.tmp / f"bench-util-{uuid.uuid4().hex[:6]}"
    capacity = backends / render_s
    backlog = int(capacity * (window + 15) * 1.3) + 50
    async with bench_pipeline(tmp, render_seconds=render_s, simulators=backends) as bench:
        urls = bench.sim_urls
        events = [submission(shot(i)) for i in range(backlog)]
        async with Submitter(bench.settings) as submitter:
            await submitter.publish_all(events)

        async def warm() -> int:
            stats = await asyncio.gather(*(sim_stats(u) for u in urls))
            return min(int(s["prompts_run"]) for s in stats)

        await wait_until(warm, 5, timeout=120, what="every backend busy")
        await asyncio.gather(*(sim_stats(u, reset=True) for u in urls))
        await asyncio.sleep(window)
        stats = await asyncio.gather(*(sim_stats(u) for u in urls))
        final = await final_count(bench)
    per_backend = []
    for url, s in zip(urls, stats, strict=True):
        busy, idle = s["busy_seconds"], s["idle_seconds"]
        per_backend.append(
            {
                "backend": url,
                "busy_seconds": round(busy, 2),
                "idle_seconds": round(idle, 2),
                "busy_fraction": round(busy / (busy + idle), 4) if busy + idle else 0.0,
                "prompts_run": s["prompts_run"],
                "queue_remaining_at_close": s["queue_remaining"],
            }
        )
    series.data["utilization"] = per_backend
    result = Result("utilization")
    lowest = min(b["busy_fraction"] for b in per_backend)
    result.figures = {
        "backends": backends,
        "render_seconds": render_s,
        "window_seconds": window,
        "backlog_jobs": backlog,
        "jobs_recorded_final_when_window_closed": final,
        "per_backend": per_backend,
        "mean_busy_fraction": round(sum(b["busy_fraction"] for b in per_backend) / backends, 4),
    }
    if any(b["queue_remaining_at_close"] == 0 for b in per_backend):
        result.notes.append("a backend had nothing queued when the window closed")
    result.target("lowest_busy_fraction", lowest, 0.97, at_most=False)
    return [result]


def fmt_seconds(value: float) -> str:
    return f"{value:.1f}s" if math.isfinite(value) else "n/a"
