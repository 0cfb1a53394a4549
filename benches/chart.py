#!/usr/bin/env python3
"""Renders the drain benchmark's results (benches/drain.rs writes them as
JSON, target/drain-results.json by default) into docs/performance.png:
rows/s per method and batch size (the medians), and, when the run had
--latency, the distribution of per-batch latency (commit time - the
batch's oldest record timestamp) against issue #14's target.

    python3 -m venv /tmp/chart && /tmp/chart/bin/pip install matplotlib
    /tmp/chart/bin/python benches/chart.py [RESULTS.json] [OUT.png]

matplotlib is needed only here, never by the build or CI.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402

# The chart's order: references next to the sluice method they measure.
ORDER = [
    "R1 one COPY",
    "R1b chunked COPY",
    "sluice append",
    "sluice append pgbouncer",
    "sluice append, own process, mock",
    "sluice append, own process",
    "R2 multi-row INSERT",
    "sluice insert",
    "R3 staged upsert",
    "R3u unnest upsert",
    "sluice upsert",
    "R3g staged upsert guarded",
    "sluice upsert guarded",
]


def rates_chart(ax, results):
    medians = [m for m in results["medians"] if m.get("rate")]
    sizes = sorted({m["max_rows"] for m in medians})
    present = {m["method"] for m in medians}
    methods = [m for m in ORDER if m in present] + sorted(present - set(ORDER))
    width = 0.8 / max(len(sizes), 1)
    for i, size in enumerate(sizes):
        rate = {m["method"]: m["rate"] for m in medians if m["max_rows"] == size}
        xs = [j + (i - (len(sizes) - 1) / 2) * width for j in range(len(methods))]
        ys = [rate.get(m, 0) / 1000 for m in methods]
        colors = ["tab:orange" if m.startswith("sluice") else "tab:blue" for m in methods]
        bars = ax.bar(xs, ys, width, color=colors, alpha=1.0 - 0.35 * i, label=f"max_rows {size}")
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels(methods, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("thousand rows/s (sluice: steady rate)")
    setup = results["setup"]
    ax.set_title(
        f"{setup['records']:,} records, {setup['partitions']} partitions, "
        f"pool_size {setup['pool_size']}, median of {setup['runs']} run(s)"
        + (", pinned" if setup.get("pinned") else "")
        + "  (blue: by hand, orange: sluice)",
        fontsize=9,
    )
    if len(sizes) > 1:
        ax.legend(fontsize=8)


def latency_chart(ax, latency, broker):
    values = latency["per_batch_sorted_ms"]
    n = len(values)
    ax.plot(values, [100.0 * (i + 1) / n for i in range(n)], color="tab:orange")
    target = latency["target_p99_ms"]
    ax.axvline(target, color="tab:red", linestyle="--", label=f"target p99 {target:.0f} ms")
    p = latency["per_batch_ms"]
    ax.axvline(p["p99"], color="tab:gray", linestyle=":", label=f"p99 {p['p99']:.0f} ms")
    ax.set_xlabel("commit time - oldest record timestamp, per batch (ms)")
    ax.set_ylabel("% of batches")
    ax.set_title(
        f"open loop at {latency['rate']:,.0f} records/s for {latency['secs']} s{broker}: "
        f"p50 {p['p50']:.0f} ms, p99 {p['p99']:.0f} ms, max {p['max']:.0f} ms",
        fontsize=9,
    )
    ax.legend(fontsize=8)


def main():
    source = sys.argv[1] if len(sys.argv) > 1 else "target/drain-results.json"
    out = sys.argv[2] if len(sys.argv) > 2 else "docs/performance.png"
    with open(source) as f:
        results = json.load(f)
    latency = results.get("latency")
    rows = 2 if latency else 1
    fig, axes = plt.subplots(rows, 1, figsize=(10, 5 * rows), squeeze=False)
    rates_chart(axes[0][0], results)
    if latency:
        # `--tansu`: the latency run read from tansu, not the mock cluster.
        tansu = results.get("setup", {}).get("broker", "").startswith("tansu")
        latency_chart(axes[1][0], latency, " against tansu" if tansu else "")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
