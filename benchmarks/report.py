"""What a run leaves behind: results.json, report.md and the terminal tables, all from the same records.

Every ratio pairs a direct and a proxied (or twemproxy) record of the same run and the same parameters: absolute
times depend on the machine, their ratios are what carry over.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.machine import summary

GOAL_SPEEDUP_RTT_MS = 2.0
GOAL_SPEEDUP = 3.5


@dataclass(frozen=True)
class TableSpec:
    """A table both renderers (rich and Markdown) draw."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""


# -- pairing records -------------------------------------------------------------------------------------------------

def _params(record: dict) -> tuple:
    """What identifies a record apart from its mode and its measured numbers."""
    skip = {"mode", "repeats", "requests", "errors", "upstream", "error"}
    return tuple(sorted((k, json.dumps(v)) for k, v in record.items()
                        if k not in skip and not k.startswith(("p50", "p99", "throughput"))))


def by_mode(records: list[dict]) -> dict[tuple, dict[str, dict]]:
    groups: dict[tuple, dict[str, dict]] = {}
    for r in records:
        groups.setdefault(_params(r), {})[r["mode"]] = r
    return groups


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def comparisons(records: list[dict]) -> list[dict]:
    """Per configuration: speedup = direct p50 / proxied p50; throughput ratios against direct (and twemproxy)."""
    out = []
    for modes in by_mode(records).values():
        direct, proxied = modes.get("direct"), modes.get("proxied")
        if not direct or not proxied:
            continue
        base = {k: v for k, v in direct.items() if k in ("scenario", "rtt_ms", "workload", "protocol", "concurrency",
                                                        "test", "pipeline", "users")}
        item = {**base,
                "speedup_p50": _ratio(direct["p50_ms"], proxied["p50_ms"]),
                "speedup_p99": _ratio(direct["p99_ms"], proxied["p99_ms"]),
                "throughput_ratio": _ratio(proxied["throughput_rps"], direct["throughput_rps"]),
                "connections_received": [direct["upstream"]["connections_received"],
                                         proxied["upstream"]["connections_received"]],
                "auth_hello_calls": [_auth_hello(direct), _auth_hello(proxied)]}
        if "persistent" in modes:
            item["ideal_speedup_p50"] = _ratio(direct["p50_ms"], modes["persistent"]["p50_ms"])
        if "twemproxy" in modes:
            item["proxied_vs_twemproxy_throughput"] = _ratio(proxied["throughput_rps"],
                                                             modes["twemproxy"]["throughput_rps"])
        out.append(item)
    return out


def _auth_hello(record: dict) -> int:
    return record["upstream"]["auth_calls"] + record["upstream"]["hello_calls"]


def verdicts(comps: list[dict]) -> list[str]:
    """The project's goals, checked against this run: >= 3.5x at 2 ms RTT, never slower at 0 ms."""
    lines = []
    for rtt, goal, what in ((GOAL_SPEEDUP_RTT_MS, GOAL_SPEEDUP, "speedup"), (0.0, 1.0, "not slower")):
        for c in comps:
            if c["scenario"] == "connect-per-request" and c["rtt_ms"] == rtt and c["speedup_p50"] is not None:
                met = "met" if c["speedup_p50"] >= goal else "NOT met"
                lines.append(f"RTT {rtt:g} ms, {c['workload']} RESP{c['protocol']} c={c['concurrency']}: "
                             f"{c['speedup_p50']:.2f}x (goal {what} >= {goal:g}x: {met})")
    return lines


# -- tables ----------------------------------------------------------------------------------------------------------

def _ms(record: dict | None, key: str = "p50_ms", compact: bool = False) -> str:
    if not record or record.get(key) is None:
        return "—" if not record or not record.get("error") else "error"
    lo, hi = record.get(f"{key}_spread", [None, None])
    spread = f" ({lo:.2f}–{hi:.2f})" if lo is not None and record["repeats"] > 1 and not compact else ""
    return f"{record[key]:.2f}{spread}"


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _evidence(record: dict | None) -> str:
    if not record or record.get("p50_ms") is None:
        return "—"
    up = record["upstream"]
    return f"{up['connections_received']} / {_auth_hello(record)} / {up['peak_clients']}"


def _evidence_pair(direct: dict | None, proxied: dict | None) -> list[str]:
    """Compact form: connections received 'direct → proxied', AUTH+HELLO calls likewise."""
    def get(record: dict | None, what) -> str:
        return "—" if not record or record.get("p50_ms") is None else str(what(record))
    conns = lambda r: r["upstream"]["connections_received"]  # noqa: E731
    return [f"{get(direct, conns)} → {get(proxied, conns)}",
            f"{get(direct, _auth_hello)} → {get(proxied, _auth_hello)}"]


def connect_table(records: list[dict], compact: bool = False) -> TableSpec | None:
    groups = [g for g in by_mode(records).values()
              if next(iter(g.values()))["scenario"] == "connect-per-request" and ("direct" in g or "proxied" in g)]
    if not groups:
        return None
    ideal = {(r["workload"], r["concurrency"], r["rtt_ms"]): r for r in records
             if r["scenario"] == "connect-per-request" and r["mode"] == "persistent"}
    groups.sort(key=lambda g: _order(next(iter(g.values()))))
    rows = []
    for g in groups:
        d, p = g.get("direct"), g.get("proxied")
        ref = d or p
        assert ref
        row = [ref["workload"], f"RESP{ref['protocol']}", str(ref["concurrency"]), f"{ref['rtt_ms']:g}",
               _ms(d, compact=compact), _ms(p, compact=compact),
               _ms(ideal.get((ref["workload"], ref["concurrency"], ref["rtt_ms"])), compact=compact),
               _x(_ratio(d and d["p50_ms"], p and p["p50_ms"]))]
        if compact:
            rows.append(row + _evidence_pair(d, p))
        else:
            rows.append(row + [_ms(d, "p99_ms"), _ms(p, "p99_ms"), _evidence(d), _evidence(p)])
    headers = ["workload", "protocol", "conc.", "RTT ms", "direct p50", "proxied p50", "persistent p50", "speedup"]
    if compact:
        return TableSpec("Connect-per-request (redis-py defaults): p50 latency per request, ms",
                         headers + ["upstream conns", "AUTH+HELLO"], rows,
                         "upstream counts: direct → proxied, from the upstream's INFO")
    return TableSpec("Connect-per-request (redis-py defaults): latency per request, ms",
                     headers + ["direct p99", "proxied p99", "upstream direct", "upstream proxied"], rows,
                     "p50/p99: median over repeats (min–max). upstream: connections received / AUTH+HELLO calls / "
                     "peak connected clients, summed over repeats. persistent: the same commands on connections "
                     "opened beforehand (the ideal).")


def _order(record: dict) -> tuple:
    return (record.get("workload", ""), -record.get("protocol", 0), record.get("concurrency", 0), record["rtt_ms"])


def throughput_table(records: list[dict], compact: bool = False) -> TableSpec | None:
    groups = [m for m in by_mode(records).values() if next(iter(m.values()))["scenario"] == "redis-benchmark"]
    if not groups:
        return None
    groups.sort(key=lambda g: (next(iter(g.values()))["pipeline"], next(iter(g.values()))["test"]))
    rows = []
    for g in groups:
        ref = next(iter(g.values()))
        d, p, t = g.get("direct"), g.get("proxied"), g.get("twemproxy")
        row = [ref["test"], str(ref["pipeline"]), str(ref["concurrency"]), _rps(d, compact), _rps(p, compact),
               _rps(t, compact), _x(_ratio(p and p["throughput_rps"], d and d["throughput_rps"])),
               _x(_ratio(p and p["throughput_rps"], t and t["throughput_rps"]))]
        rows.append(row + (_evidence_pair(d, p) if compact else [_evidence(d), _evidence(p)]))
    if compact:
        return TableSpec("Persistent clients (redis-benchmark, RTT 0): requests per second",
                         ["test", "-P", "-c", "direct", "proxied", "twemproxy", "proxied/direct", "proxied/twemproxy",
                          "upstream conns", "AUTH+HELLO"], rows)
    return TableSpec("Persistent clients (redis-benchmark, RTT 0): requests per second",
                     ["test", "-P", "-c", "direct", "proxied", "twemproxy", "proxied/direct", "proxied/twemproxy",
                      "upstream direct", "upstream proxied"], rows,
                     "Median over repeats (min–max). Every request crosses the proxy; there is no handshake to save.")


def _rps(record: dict | None, compact: bool = False) -> str:
    if not record or record.get("throughput_rps") is None:
        return "—" if not record or not record.get("error") else "error"
    lo, hi = record["throughput_rps_spread"]
    spread = f" ({lo / 1000:.1f}k–{hi / 1000:.1f}k)" if record["repeats"] > 1 and not compact else ""
    return f"{record['throughput_rps'] / 1000:.1f}k{spread}"


def chatroom_table(records: list[dict]) -> TableSpec | None:
    rows = [[r["mode"], f"{r['rtt_ms']:g}", str(r["users"]), _ms(r), _ms(r, "p99_ms"),
             "—" if r.get("throughput_rps") is None else f"{r['throughput_rps']:.0f}", _evidence(r)]
            for r in records if r["scenario"] == "chatroom"]
    if not rows:
        return None
    return TableSpec("The chatroom end to end (Socket.IO users joining and chatting): time to each event's answer, ms",
                     ["mode", "RTT ms", "users", "p50", "p99", "events/s", "upstream"], rows,
                     "upstream: connections received / AUTH+HELLO calls / peak connected clients.")


def errors_table(records: list[dict]) -> TableSpec | None:
    rows = [[r["scenario"], r["mode"], f"{r['rtt_ms']:g}", str(r.get("errors", 0)), r.get("error") or ""]
            for r in records if r.get("error") or r.get("errors")]
    if not rows:
        return None
    return TableSpec("Failures", ["scenario", "mode", "RTT ms", "failed requests", "error"], rows)


def tables(records: list[dict], compact: bool = False) -> list[TableSpec]:
    """compact: the terminal's version (no spreads, fewer columns); the Markdown report has everything."""
    return [t for t in (connect_table(records, compact), chatroom_table(records), throughput_table(records, compact),
                        errors_table(records)) if t]


# -- renderers -------------------------------------------------------------------------------------------------------

def print_tables(console: Console, records: list[dict], meta: dict) -> None:
    for spec in tables(records, compact=True):
        table = Table(title=spec.title, caption=spec.note or None, title_justify="left")
        for header in spec.headers:
            table.add_column(header, justify="left" if header in ("workload", "mode", "test", "error") else "right")
        for row in spec.rows:
            table.add_row(*row)
        console.print(table)
    for line in verdicts(comparisons(records)):
        console.print(f"[bold]{line}[/]", highlight=False)
    console.print(f"[dim]{summary(meta['machine'])}[/]", highlight=False)


def markdown_table(spec: TableSpec) -> str:
    lines = [f"### {spec.title}", "", "| " + " | ".join(spec.headers) + " |",
             "|" + "|".join("---" for _ in spec.headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in spec.rows]
    if spec.note:
        lines += ["", f"_{spec.note}_"]
    return "\n".join(lines) + "\n"


def markdown(records: list[dict], meta: dict, plots: list[str]) -> str:
    cfg = meta["config"]
    parts = [
        "# redis-sidecar benchmark report",
        "",
        f"Run {meta['started']} in {meta['duration_s']:.0f} s on: {summary(meta['machine'])}. Load average (1 min) "
        f"{meta['load_average_1m'][0]:g} when it started (other work on the machine), {meta['load_average_1m'][1]:g} "
        "at its end.",
        "",
        "## Goals",
        "",
        *[f"- {line}" for line in verdicts(comparisons(records))],
        "",
        "## Method",
        "",
        "- **direct**: the app connects to the upstream across the simulated WAN for every request; **proxied**: it "
        "connects to the sidecar on its own host, which holds persistent, authenticated connections across the WAN; "
        "**persistent**: the app's own persistent connections (the ideal); **twemproxy**: nutcracker in the "
        "sidecar's place.",
        "- The WAN is a loopback relay adding RTT/2 each way and one RTT to every TCP connect; RTT 0 means no relay "
        "at all. PING round trip measured across it, per setting: "
        + ", ".join(f"{k} ms → {v:.2f} ms" for k, v in meta.get("wan_ping_ms", {}).items()) + ".",
        f"- Each cell ran {cfg['repeats']} times for {cfg['seconds']:g} s (at most {cfg['max_requests']} requests) "
        "after a warm-up; figures are medians over the repeats with min–max in brackets. Within every repeat a "
        "configuration's direct, proxied and persistent measurements run one right after the other.",
        "- Upstream evidence comes from the upstream's own INFO (stats, commandstats, clients), as on the article's "
        "dashboard.",
        f"- The app is redis-py itself, building a fresh client per request as a legacy app does, on the same "
        f"{meta['machine']['cores']} cores as the upstream, the relay and the sidecar: where a row's concurrency keeps "
        "every core busy, it measures CPU more than the network.",
        "",
        "## Results",
        "",
    ]
    parts += [markdown_table(spec) for spec in tables(records)]
    if plots:
        parts += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})\n" for p in plots]
    return "\n".join(parts)


def write(out: Path, records: list[dict], meta: dict, plots: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "records": records, "comparisons": comparisons(records)}
    (out / "results.json").write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    (out / "report.md").write_text(markdown(records, meta, plots))
