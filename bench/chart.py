"""One PNG with every benchmark's picture (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.harness import SERVICES


def draw(path: Path, results: dict[str, Any], series: dict[str, Any]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    (a, b), (c, d) = axes

    trace = series.get("throughput_trace") or []
    if trace:
        t = [p[0] for p in trace]
        a.plot(t, [p[1] for p in trace], label="judged by ingest")
        a.plot(t, [p[3] for p in trace], label="files archived (assets rows)")
        a.plot(t, [p[2] for p in trace], label="final state recorded (ledger)")
        tp = results.get("throughput", {}).get("figures", {}).get("round_1", {})
        floor = results.get("baseline", {}).get("figures", {}).get("throughput")
        versus = f"\nbare baseline chain, same run: {floor} jobs/s" if floor else ""
        a.set_title(
            f"Throughput: {tp.get('jobs')} jobs at once, {tp.get('throughput')} jobs/s "
            f"(target 200){versus}"
        )
        a.set_xlabel("seconds since the first submission")
        a.set_ylabel("jobs")
        a.legend()
    else:
        a.set_axis_off()

    samples = series.get("latency_samples") or {}
    if samples:
        for label, values in samples.items():
            if not values:
                continue
            ys = [(i + 1) / len(values) for i in range(len(values))]
            b.plot([max(v, 0.1) for v in values], ys, label=label)
        b.axvline(25, color="grey", linestyle="--", linewidth=1)
        b.axvline(100, color="grey", linestyle=":", linewidth=1)
        b.set_xscale("log")
        b.set_title("Added latency (submit → archived - render), CDF; targets 25/100 ms")
        b.set_xlabel("ms")
        b.set_ylabel("fraction of jobs")
        b.legend()
    else:
        b.set_axis_off()

    util = series.get("utilization") or []
    overhead = results.get("overhead", {}).get("figures", {})
    if util:
        names = [f"backend {i + 1}" for i in range(len(util))]
        c.bar(names, [u["busy_fraction"] * 100 for u in util], color="tab:green")
        c.axhline(97, color="grey", linestyle="--", linewidth=1)
        c.set_ylim(0, 105)
        c.set_ylabel("busy %")
        title = "Backend utilisation, 4 backends, 200 ms renders (target 97 %)"
        if overhead:
            title += f"\noverhead vs direct client: ratio {overhead.get('ratio')} (target ≤ 1.02)"
        c.set_title(title)
    else:
        c.set_axis_off()

    rss = series.get("rss") or {}
    if rss.get("after_round_1"):
        x = range(len(SERVICES))
        width = 0.27
        for k, (key, label) in enumerate(
            (
                ("start", "at start"),
                ("after_round_1", "after 1st round"),
                ("after_round_2", "after 2nd"),
            )
        ):
            values = rss.get(key)
            if values:
                d.bar(
                    [i + (k - 1) * width for i in x],
                    [values[s] for s in SERVICES],
                    width,
                    label=label,
                )
        d.axhline(150, color="grey", linestyle="--", linewidth=1)
        d.set_xticks(list(x), list(SERVICES))
        d.set_ylabel("RSS MB")
        d.set_title("Resident memory per service (target ≤ 150 MB, no growth)")
        d.legend()
    else:
        d.set_axis_off()

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
