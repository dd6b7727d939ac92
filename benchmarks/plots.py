"""PNG plots of a run (matplotlib, Agg backend: no display needed): latency and speedup against RTT, throughput bars,
and the upstream's handshake work per request.

RTT axes are symmetric-log (linear below 1 ms, logarithmic above), so 0, 1, 2, 5 and 20 ms are all readable; every
error bar is the min–max over the repeats, and each plot says so.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.report import by_mode, comparisons  # noqa: E402

COLOURS = {"direct": "#d62728", "proxied": "#1f77b4", "persistent": "#2ca02c", "twemproxy": "#9467bd",
           "proxied-w2": "#17becf"}
BARS = "error bars: min–max over the repeats"


def _rtt_axis(ax, rtts: list[float]) -> None:  # noqa: ANN001
    """Symmetric-log x axis (linear up to 1 ms) with a tick at each measured RTT."""
    ax.set_xscale("symlog", linthresh=1.0, linscale=0.5)
    ticks = sorted(set(rtts))
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlim(-0.2 if 0 in ticks else None, max(ticks) * 1.3 if ticks else None)
    ax.set_xlabel("round-trip time to the upstream, ms (symmetric log scale)")


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
                    label = f"{'persistent (ideal)' if mode == 'persistent' else mode} RESP{protocol}"
                    ax.errorbar(x, y, yerr=err, fmt=style + "o", color=COLOURS[mode], label=label, capsize=3,
                                markersize=4)
            ax.set_title(f"{workload}, concurrency {level}")
            _rtt_axis(ax, [r["rtt_ms"] for r in rows])
            ax.set_yscale("log")
            ax.set_ylabel("p50 latency per request, ms (log scale)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(f"Connect-per-request with redis-py defaults: direct vs through the sidecar ({BARS})")
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
    ax.axhline(1.0, color="grey", linewidth=1, label="1x: as fast as direct")
    _rtt_axis(ax, [c["rtt_ms"] for c in comps])
    ax.set_ylabel("speedup (direct p50 / proxied p50, medians)")
    ax.set_title("How much faster connect-per-request gets through the sidecar")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _bars(ax, groups: list[dict[str, dict]], labels: list[str], title: str) -> None:  # noqa: ANN001
    modes = [m for m in ("direct", "proxied", "proxied-w2", "twemproxy") if any(m in g for g in groups)]
    width = 0.8 / max(1, len(modes))
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
        label = {"proxied": "sidecar", "proxied-w2": "sidecar --workers 2"}.get(mode, mode)
        ax.bar(xs, ys, width, yerr=errs, capsize=3, label=label, color=COLOURS.get(mode, "#7f7f7f"))
    ax.set_xticks(range(len(groups)), labels)
    ax.set_ylabel("thousand requests per second")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def throughput_bars(records: list[dict], path: Path) -> bool:
    """Requests per second: the connection rate (-k 0) and persistent clients, direct / sidecar / twemproxy."""
    def groups_of(scenario: str) -> list[dict[str, dict]]:
        found = [g for g in by_mode(records).values() if next(iter(g.values()))["scenario"] == scenario]
        found.sort(key=lambda g: (next(iter(g.values()))["pipeline"], -next(iter(g.values()))["concurrency"],
                                  next(iter(g.values()))["test"]))
        return found

    rate, persistent = groups_of("connection-rate"), groups_of("redis-benchmark")
    panels = [p for p in (rate, persistent) if p]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False,
                             gridspec_kw={"width_ratios": [max(1, len(p)) for p in panels]})
    i = 0
    if rate:
        _bars(axes[0][i], rate, [f"-k 0 -c {next(iter(g.values()))['concurrency']}" for g in rate],
              "Connection rate (-k 0: connect, AUTH, GET)")
        i += 1
    if persistent:
        _bars(axes[0][i], persistent, [f"{next(iter(g.values()))['test']} -P {next(iter(g.values()))['pipeline']}"
                                       for g in persistent], "Persistent clients (-c 50)")
    fig.suptitle(f"redis-benchmark at RTT 0, medians ({BARS})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def upstream_work(records: list[dict], path: Path) -> bool:
    """Connections and AUTH/HELLO calls the upstream handled per 1000 app requests, direct vs proxied: for the
    sidecar, its own pool's connections and their handshakes count too (opened while warming up or at start, outside
    the measured stretches), so the proxied bars are what the upstream really did for those requests."""
    rows = [r for r in _connect(records) if r["mode"] in ("direct", "proxied") and r["requests"]]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2))
    metrics = (("connections opened", lambda u: u["connections_received"] + u.get("pool_connects", 0)),
               ("AUTH + HELLO calls", lambda u: u["auth_calls"] + u["hello_calls"] + u.get("pool_connects", 0)))
    for k, mode in enumerate(("direct", "proxied")):
        mine = [r for r in rows if r["mode"] == mode]
        requests = sum(r["requests"] for r in mine) or 1
        values = [1000 * sum(get(r["upstream"]) for r in mine) / requests for _, get in metrics]
        label = "direct" if mode == "direct" else "via the sidecar (its pool's connections and handshakes)"
        bars = ax.bar([i + (k - 0.5) * 0.4 for i in range(len(metrics))], values, 0.4, label=label,
                      color=COLOURS[mode])
        ax.bar_label(bars, fmt="%.1f")
    ax.set_xticks(range(len(metrics)), [name for name, _ in metrics])
    ax.set_ylabel("per 1000 app requests")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(0, 1000 * 8)
    ax.set_title("What the upstream had to do (its own INFO counters + the sidecar's pool)", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
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
