"""``python -m bench`` (``make bench``): the pipeline's performance against its targets.

    python -m bench                 # full run (10,000 jobs twice; ~30 min on 2 cores)
    python -m bench --quick         # small N, a few minutes
    python -m bench --only latency --only overhead
    python -m bench --jobs 3000 --no-profile
    python -m bench --only baseline --jobs 2000   # the bare chain alone

The throughput benchmark first runs the bare baseline chain (bench/baseline: four
FastStream processes, quorum queues, persistent confirmed messages, one INSERT per stage,
one fsync'd file) with the same N, and prints the pipeline's figures as ratios to it.

Prints each figure with its target, writes ``bench/results/<mode>-<time>.json`` (and
``latest.json``), a chart ``bench/results/<mode>-<time>.png`` (and ``latest.png``) and
the services' py-spy profile summary ``bench/results/profile.txt``. Benchmarks report;
they never fail on a missed target (exit code 0 unless something broke).
See docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import chart, procstat, scenarios
from bench.harness import Result

ALL = ("throughput", "latency", "overhead", "utilization")
#: Not run by default on its own: ``throughput`` already runs the baseline first.
EXTRA = ("baseline",)


def parse(argv: list[str]) -> tuple[argparse.Namespace, scenarios.Options]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N for a quick look")
    parser.add_argument(
        "--only", action="append", choices=(*ALL, *EXTRA), help="run only these (repeatable)"
    )
    parser.add_argument("--jobs", type=int, help="jobs per throughput round (10000)")
    parser.add_argument("--no-second-round", action="store_true", help="skip the footprint round")
    parser.add_argument("--simulators", type=int, default=2, help="backends for throughput/latency")
    parser.add_argument(
        "--backend-slots", type=int, default=2, help="prompts kept on each backend (throughput)"
    )
    parser.add_argument(
        "--archivers", type=int, default=1, help="archiver processes in the throughput round"
    )
    parser.add_argument(
        "--split-archiver",
        action="store_true",
        help="the archiver's ledger and archive as two processes (throughput)",
    )
    parser.add_argument("--latency-seconds", type=float, help="duration at 20 jobs/s (60)")
    parser.add_argument("--overhead-jobs", type=int, help="jobs of 1 s for the overhead ratio (60)")
    parser.add_argument("--window", type=float, help="utilisation window in seconds (30)")
    parser.add_argument("--no-profile", action="store_true", help="skip py-spy")
    parser.add_argument(
        "--no-baseline", action="store_true", help="throughput without the baseline chain"
    )
    parser.add_argument("--out", type=Path, default=scenarios.Options.out)
    args = parser.parse_args(argv)
    opts = scenarios.Options(
        simulators=args.simulators,
        backend_slots=args.backend_slots,
        archivers=args.archivers,
        split_archiver=args.split_archiver,
        out=args.out,
        profile=not args.no_profile,
    )
    if args.quick:
        opts.jobs, opts.latency_seconds, opts.calm_seconds = 1000, 15.0, 10.0
        opts.overhead_jobs, opts.utilization_window, opts.profile_seconds = 10, 10.0, 10.0
    if args.no_baseline:
        opts.baseline = False
    if args.jobs:
        opts.jobs = args.jobs
    if args.no_second_round:
        opts.second_round = False
    if args.latency_seconds:
        opts.latency_seconds = args.latency_seconds
    if args.overhead_jobs:
        opts.overhead_jobs = args.overhead_jobs
    if args.window:
        opts.utilization_window = args.window
    return args, opts


def show(result: Result) -> None:
    print(f"\n## {result.name}")
    for key, value in result.figures.items():
        if key in ("profiles",):
            continue
        if key == "side_by_side":
            print(f"  {key}:")
            print(f"    {'':44} {'pipeline':>10} {'baseline':>10} {'ratio':>7}")
            for what, pipeline, baseline, ratio in value:
                print(
                    f"    {what:44} {_cell(pipeline):>10} {_cell(baseline):>10} {_cell(ratio):>7}"
                )
            continue
        if isinstance(value, dict):
            print(f"  {key}:")
            for k, v in value.items():
                print(f"    {k}: {v}")
        else:
            print(f"  {key}: {value}")
    for key, target in result.targets.items():
        verdict = "met" if target["met"] else "NOT MET"
        value = target["value"]
        limit = float(str(target["target"]).split()[-1])
        ratio = f" ({value / limit:.2f}x the target)" if limit else ""
        print(f"  TARGET {key}: {value} vs {target['target']} → {verdict}{ratio}")
    for note in result.notes:
        print(f"  note: {note}")


def _cell(value: object) -> str:
    return "—" if value is None else str(value)


async def run(args: argparse.Namespace, opts: scenarios.Options) -> int:
    chosen = args.only or list(ALL)
    mode = "quick" if args.quick else "full"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    opts.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "mode": mode,
        "started_at": stamp,
        "machine": procstat.machine(),
        "results": {},
    }
    series = scenarios.Series()
    runners = {
        "throughput": scenarios.throughput,
        "latency": scenarios.latency,
        "overhead": scenarios.overhead,
        "utilization": scenarios.utilization,
        "baseline": scenarios.baseline,
    }
    failed = 0
    for name in chosen:
        began = time.monotonic()
        print(f"\n>>> {name} …", flush=True)
        try:
            results = await runners[name](opts, series)
        except scenarios.PartialFailure as exc:  # show what was measured before it broke
            failed += 1
            for result in exc.results:
                show(result)
                report["results"][result.name] = asdict(result)
            print(f"  {name} FAILED: {exc}")
            report["results"][name] = {"error": str(exc)}
            continue
        except Exception as exc:  # report and go on with the next benchmark
            failed += 1
            print(f"  {name} FAILED: {type(exc).__name__}: {exc}")
            report["results"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        for result in results:
            show(result)
            report["results"][result.name] = asdict(result)
        print(f"  ({name} took {time.monotonic() - began:.0f}s)", flush=True)
    report["series"] = {k: v for k, v in series.data.items() if k != "latency_samples"}
    path = opts.out / f"{mode}-{stamp}.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    shutil.copyfile(path, opts.out / "latest.json")
    png = opts.out / f"{mode}-{stamp}.png"
    if chart.draw(png, report["results"], series.data):
        shutil.copyfile(png, opts.out / "latest.png")
        print(f"\nchart: {png}")
    else:
        print("\nchart skipped: matplotlib is not installed (pip install matplotlib)")
    print(f"results: {path}")
    if (opts.out / "profile.txt").exists() and "throughput" in chosen:
        print(f"profiles: {opts.out / 'profile.txt'}")
    return 1 if failed else 0


def main() -> None:
    args, opts = parse(sys.argv[1:])
    sys.exit(asyncio.run(run(args, opts)))


if __name__ == "__main__":
    main()
