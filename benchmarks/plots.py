"""PNG plots of a run (matplotlib, Agg backend: no display needed): latency and speedup against RTT, throughput bars,
and the upstream's handshake work per request."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.report import GOAL_SPEEDUP, GOAL_SPEEDUP_RTT_MS, by_mode, comparisons  # noqa: E402

COLOURS = {"direct": "#d62728", "proxied": "#1f77b4", "persistent": "#2ca02c", "twemproxy": "#9467bd"}


def _connect(records: list[dict]) -> list[dict]:
    return [r for r in records if r["scenario"] == "connect-per-request" and r.get("p50_ms") is not None]


def latency_vs_rtt(records: list[dict], path: Path) -> bool:
    """One panel per workload and concurrency: p50 latency against RTT for direct, proxied and the ideal."""
    rows = _connect(records)
    if not rows:
        return False
    workloads = sorted({r["workload"] for r in rows})
    levels = sorted({r["concurrency"] for r in rows})
    fig, axes = plt.subplots(len(workloads), len(levels), figsize=(5.5 * len(levels), 4 * len(workloads)),
                             squeeze=False)
    for i, workload in enumerate(workloads):
        for j, level in enumerate(levels):
            ax = axes[i][j]
            for mode in ("direct", "proxied", "persistent"):
                for protocol, style in ((3, "-"), (2, "--")):
                    points = sorted((r["rtt_ms"], r["p50_ms"], r["p50_ms_spread"]) for r in rows
                                    if r["workload"] == workload and r["concurrency"] == level
                                    and r["mode"] == mode and r["protocol"] == protocol)
                    if not points:
                        continue
                    x, y, spread = zip(*points)
                    err = [[v - s[0] for v, s in zip(y, spread)], [s[1] - v for v, s in zip(y, spread)]]
                    label = "persistent (ideal)" if mode == "persistent" else f"{mode} RESP{protocol}"
                    ax.errorbar(x, y, yerr=err, fmt=style + "o", color=COLOURS[mode], label=label, capsize=3,
                                markersize=4)
            ax.set_title(f"{workload}, concurrency {level}")
            ax.set_xlabel("round-trip time to the upstream (ms)")
            ax.set_ylabel("p50 latency per request (ms)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle("Connect-per-request with redis-py defaults: direct vs through the sidecar")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def speedup_vs_rtt(records: list[dict], path: Path) -> bool:
    """direct p50 / proxied p50 against RTT, with the project's goal marked."""
    comps = [c for c in comparisons(records) if c["scenario"] == "connect-per-request" and c["speedup_p50"]]
    if not comps:
        return False
    fig, ax = plt.subplots(figsize=(9, 4.5))
    series = sorted({(c["workload"], c["concurrency"], -c["protocol"]) for c in comps})
    palette = plt.get_cmap("tab10")
    colours = {key: palette(i) for i, key in enumerate(sorted({(w, level) for w, level, _ in series}))}
    for workload, level, protocol in ((w, lv, -p) for w, lv, p in series):
        points = sorted((c["rtt_ms"], c["speedup_p50"]) for c in comps
                        if (c["workload"], c["protocol"], c["concurrency"]) == (workload, protocol, level))
        x, y = zip(*points)
        ax.plot(x, y, "-o" if protocol == 3 else "--o", color=colours[(workload, level)], markersize=4,
                label=f"{workload} RESP{protocol} c={level}")
    ax.axhline(1.0, color="grey", linewidth=1)
    ax.plot([GOAL_SPEEDUP_RTT_MS], [GOAL_SPEEDUP], "k*", markersize=12, label=f"goal: {GOAL_SPEEDUP:g}x at "
                                                                             f"{GOAL_SPEEDUP_RTT_MS:g} ms")
    ax.set_xlabel("round-trip time to the upstream (ms)")
    ax.set_ylabel("speedup (direct p50 / proxied p50)")
    ax.set_title("How much faster connect-per-request gets through the sidecar")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def throughput_bars(records: list[dict], path: Path) -> bool:
    """Requests per second for each redis-benchmark test, direct / proxied / twemproxy side by side."""
    groups = [g for g in by_mode(records).values()
              if next(iter(g.values()))["scenario"] == "redis-benchmark"]
    if not groups:
        return False
    groups.sort(key=lambda g: (next(iter(g.values()))["pipeline"], next(iter(g.values()))["test"]))
    modes = [m for m in ("direct", "proxied", "twemproxy") if any(m in g for g in groups)]
    width = 0.8 / len(modes)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k, mode in enumerate(modes):
        xs, ys, errs = [], [], [[], []]
        for i, g in enumerate(groups):
            r = g.get(mode)
            if not r or r.get("throughput_rps") is None:
                continue
            lo, hi = r["throughput_rps_spread"]
            xs.append(i + (k - (len(modes) - 1) / 2) * width)
            ys.append(r["throughput_rps"] / 1000)
            errs[0].append((r["throughput_rps"] - lo) / 1000)
            errs[1].append((hi - r["throughput_rps"]) / 1000)
        ax.bar(xs, ys, width, yerr=errs, capsize=3, label=mode, color=COLOURS[mode])
    labels = [f"{next(iter(g.values()))['test']} -P {next(iter(g.values()))['pipeline']}" for g in groups]
    ax.set_xticks(range(len(groups)), labels)
    ax.set_ylabel("thousand requests per second")
    ax.set_title("Persistent clients (redis-benchmark -c 50, RTT 0)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def upstream_work(records: list[dict], path: Path) -> bool:
    """Connections and AUTH/HELLO calls the upstream handled per 1000 requests, direct vs proxied (the dashboard)."""
    rows = [r for r in _connect(records) if r["mode"] in ("direct", "proxied") and r["requests"]]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(6.5, 4))
    metrics = (("connections received", lambda u: u["connections_received"]),
               ("AUTH + HELLO calls", lambda u: u["auth_calls"] + u["hello_calls"]))
    for k, mode in enumerate(("direct", "proxied")):
        mine = [r for r in rows if r["mode"] == mode]
        requests = sum(r["requests"] for r in mine) or 1
        values = [1000 * sum(get(r["upstream"]) for r in mine) / requests for _, get in metrics]
        bars = ax.bar([i + (k - 0.5) * 0.4 for i in range(len(metrics))], values, 0.4, label=mode,
                      color=COLOURS[mode])
        ax.bar_label(bars, fmt="%.0f")
    ax.set_xticks(range(len(metrics)), [name for name, _ in metrics])
    ax.set_ylabel("per 1000 app requests")
    ax.set_title("What the upstream had to do (its own INFO counters)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def draw_all(records: list[dict], out: Path) -> list[str]:
    """Every plot the records allow; returns the file names written."""
    out.mkdir(parents=True, exist_ok=True)
    drawn = []
    for name, draw in (("latency_vs_rtt.png", latency_vs_rtt), ("speedup_vs_rtt.png", speedup_vs_rtt),
                       ("throughput.png", throughput_bars), ("upstream_work.png", upstream_work)):
        if draw(records, out / name):
            drawn.append(name)
    return drawn
