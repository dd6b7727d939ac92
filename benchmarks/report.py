"""What a run leaves behind: results.json, report.md and the terminal tables, all from the same records.

Every ratio pairs records of the same run and the same parameters, measured side by side in time: absolute figures
depend on the machine, their ratios are what carry over. The only targets shown are issue 13's, in a table of their
own, each with the figure measured, the target and "met" or "not yet".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.evidence import SAMPLE_EVERY
from benchmarks.machine import summary


@dataclass(frozen=True)
class TableSpec:
    """A table both renderers (rich and Markdown) draw; ``note`` says how to read it."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""


# -- pairing records -------------------------------------------------------------------------------------------------

MEASURED = {"mode", "repeats", "requests", "errors", "upstream", "error", "cpu", "extra"}


def _params(record: dict) -> tuple:
    """What identifies a record apart from its mode and its measured numbers."""
    return tuple(sorted((k, json.dumps(v)) for k, v in record.items()
                        if k not in MEASURED and not k.startswith(("p50", "p99", "throughput"))))


def by_mode(records: list[dict]) -> dict[tuple, dict[str, dict]]:
    groups: dict[tuple, dict[str, dict]] = {}
    for r in records:
        groups.setdefault(_params(r), {})[r["mode"]] = r
    return groups


def _groups(records: list[dict], scenario: str) -> list[dict[str, dict]]:
    return [g for g in by_mode(records).values() if next(iter(g.values()))["scenario"] == scenario]


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def _ok(record: dict | None) -> dict | None:
    """The record if it has figures (not an error and not empty)."""
    return record if record and record.get("throughput_rps") is not None else None


def comparisons(records: list[dict]) -> list[dict]:
    """Per configuration: speedup = direct p50 / proxied p50; throughput ratios against direct (and twemproxy)."""
    out = []
    for modes in by_mode(records).values():
        direct, proxied = modes.get("direct"), modes.get("proxied")
        if not direct or not proxied:
            continue
        base = {k: v for k, v in direct.items() if k in ("scenario", "rtt_ms", "workload", "protocol", "concurrency",
                                                        "test", "pipeline", "users", "big_reply", "clients")}
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


def _cpu(record: dict | None, key: str) -> float | None:
    return (record or {}).get("cpu", {}).get(key)


def _find(records: list[dict], scenario: str, mode: str, **params) -> dict | None:
    for r in records:
        if r["scenario"] == scenario and r["mode"] == mode and all(r.get(k) == v for k, v in params.items()):
            return _ok(r)
    return None


# -- issue 13's targets ----------------------------------------------------------------------------------------------

def load_baseline(path: Path | None) -> list[dict] | None:
    """The records of an earlier results.json (``--baseline``), for the targets stated against today's figures."""
    if not path:
        return None
    return json.loads(Path(path).read_text())["records"]


def targets(records: list[dict], baseline: list[dict] | None = None) -> list[dict]:
    """Issue 13's rows that this run measured: the figure, the target, and whether it is met."""
    rows: list[dict] = []

    def add(row: str, value: float | None, shown: str, target: str, met: bool | None) -> None:
        if value is not None:
            rows.append({"row": row, "value": value, "measured": shown, "target": target,
                         "status": "—" if met is None else ("met" if met else "not yet")})

    for clients, what in ((50, "connect-per-request with AUTH (redis-benchmark -c 50 -k 0 -a), sidecar / direct"),
                          (1, "the same, one client at a time (-c 1)")):
        d = _find(records, "connection-rate", "direct", concurrency=clients)
        p = _find(records, "connection-rate", "proxied", concurrency=clients)
        r = _ratio(p and p["throughput_rps"], d and d["throughput_rps"])
        add(what, r, f"{r:.2f}x ({_k(p)} vs {_k(d)}/s)" if r else "", ">= 1.0x", r is not None and r >= 1.0)
    for pipeline, goal in ((1, 1.0), (16, 0.9)):
        for test in ("GET", "SET"):
            p = _find(records, "redis-benchmark", "proxied", test=test, pipeline=pipeline)
            t = _find(records, "redis-benchmark", "twemproxy", test=test, pipeline=pipeline)
            r = _ratio(p and p["throughput_rps"], t and t["throughput_rps"])
            add(f"{test} -P {pipeline}, sidecar / twemproxy", r, f"{r:.2f}x ({_k(p)} vs {_k(t)}/s)" if r else "",
                f">= {goal:g}x", r is not None and r >= goal)
    extra = big_reply_extra(records, "proxied")
    if extra:
        add("one 100k-element reply (SMEMBERS) in flight: p99 of other clients' GETs, extra", extra["extra_p99_ms"],
            f"+{extra['extra_p99_ms']:.1f} ms (p99 {extra['without_p99_ms']:.2f} → {extra['with_p99_ms']:.2f} ms)",
            "< 5 ms extra", extra["extra_p99_ms"] < 5.0)
    for test in ("GET", "SET"):
        p = _find(records, "redis-benchmark", "proxied", test=test, pipeline=16)
        us = _cpu(p, "proxy_us_per_command")
        before = _cpu(_find(baseline or [], "redis-benchmark", "proxied", test=test, pipeline=16),
                      "proxy_us_per_command")
        if us is not None and before:
            add(f"sidecar CPU per proxied command, {test} -P 16", us, f"{us:.1f} µs (baseline {before:.1f} µs)",
                f"halve it: <= {before / 2:.1f} µs", us <= before / 2)
        else:
            add(f"sidecar CPU per proxied command, {test} -P 16", us, f"{us:.1f} µs" if us is not None else "",
                "report it; halve it (give --baseline to compare)", None)
    idle = _find(records, "idle-clients", "proxied")
    kb = (idle or {}).get("extra", {}).get("proxy_rss_kb_per_client")
    add(f"idle client memory ({int(idle['clients']) if idle else 0} clients connected)", kb,
        f"{kb:.1f} kB each" if kb is not None else "", "<= 10 kB each", kb is not None and kb <= 10.0)
    return rows


def targets_table(records: list[dict], baseline: list[dict] | None = None) -> TableSpec | None:
    rows = [[t["row"], t["measured"], t["target"], t["status"]] for t in targets(records, baseline)]
    if not rows:
        return None
    return TableSpec("Issue 13's targets (this run)", ["row", "measured", "target", "status"], rows,
                     "How to read: each row is one target of issue 13, with the figure this run measured; ratios pair "
                     "two modes measured side by side in the same repeats (medians over repeats). 'met' or 'not yet' "
                     "compares the figure with the target and says nothing more; a row whose load generator was "
                     "saturated is flagged in the tables below.")


def _k(record: dict | None) -> str:
    return "—" if not record else f"{record['throughput_rps'] / 1000:.1f}k"


# -- tables ----------------------------------------------------------------------------------------------------------

def _ms(record: dict | None, key: str = "p50_ms", compact: bool = False) -> str:
    if not record or record.get(key) is None:
        return "—" if not record or not record.get("error") else "error"
    lo, hi = record.get(f"{key}_spread", [None, None])
    spread = f" ({lo:.2f}–{hi:.2f})" if lo is not None and record["repeats"] > 1 and not compact else ""
    return f"{record[key]:.2f}{spread}"


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "—" if value is None else fmt.format(value)


def _gen(record: dict | None) -> str:
    """The generator's CPU: cores used on average (busiest process's share of a core), flagged when saturated."""
    cores = _cpu(record, "generator_cores")
    if cores is None:
        return "—"
    peak = _cpu(record, "generator_peak_process")
    procs = _cpu(record, "generator_processes")
    text = f"{cores:.2f}"
    if procs and procs > 1 and peak is not None:
        text += f" ({int(procs)} proc, max {peak:.2f})"
    if _cpu(record, "generator_bound"):
        text += f" **gen-bound {_cpu(record, 'generator_bound_repeats')}/{record['repeats']}**"
    return text


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
    groups = [g for g in _groups(records, "connect-per-request") if "direct" in g or "proxied" in g]
    if not groups:
        return None
    groups.sort(key=lambda g: _order(next(iter(g.values()))))
    rows = []
    for g in groups:
        d, p, ideal = g.get("direct"), g.get("proxied"), g.get("persistent")
        ref = d or p
        assert ref
        row = [ref["workload"], f"RESP{ref['protocol']}", str(ref["concurrency"]), f"{ref['rtt_ms']:g}",
               _ms(d, compact=compact), _ms(p, compact=compact), _ms(ideal, compact=compact),
               _x(_ratio(d and d["p50_ms"], p and p["p50_ms"]))]
        if compact:
            rows.append(row + _evidence_pair(d, p) + [f"{_gen(d)} / {_gen(p)}"])
        else:
            rows.append(row + [_ms(d, "p99_ms"), _ms(p, "p99_ms"), _evidence(d), _evidence(p),
                               _num(_cpu(p, "proxy_us_per_command")), _gen(d), _gen(p)])
    headers = ["workload", "protocol", "conc.", "RTT ms", "direct p50", "proxied p50", "persistent p50", "speedup"]
    read = ("How to read: each request builds a fresh redis-py client (connect, handshake, the commands, close); "
            "speedup is direct p50 / proxied p50 (above 1: the sidecar is faster). 'persistent' is the same "
            "commands on connections opened beforehand, in the same RESP version: the floor no proxy can beat. "
            "The generator column is the CPU of the generator's processes in cores (1.00 = one core busy all the "
            "time) with the busiest process's share of a core; 'gen-bound' marks a row where the generator itself "
            "was the limit, so its latency is mostly the generator's own queueing.")
    if compact:
        return TableSpec("Connect-per-request (redis-py defaults): p50 latency per request, ms",
                         headers + ["upstream conns", "AUTH+HELLO", "generator cores d / p"], rows,
                         "upstream counts: direct → proxied, from the upstream's INFO")
    return TableSpec("Connect-per-request (redis-py defaults): latency per request, ms",
                     headers + ["direct p99", "proxied p99", "upstream direct", "upstream proxied",
                                "sidecar µs/cmd", "generator direct", "generator proxied"], rows,
                     read + " p50/p99: median over repeats (min–max). upstream: connections received / AUTH+HELLO "
                     "calls / peak connected clients, summed over repeats (the sidecar's standing pool counted in "
                     "its peak). sidecar µs/cmd: the sidecar's CPU (user + system, /proc) per command; at a few "
                     "requests a second (long RTTs, one client) it includes the sidecar's own idle work (its timers) "
                     "spread over few commands. 'gen-bound k/n': saturated in k of the n repeats.")


def _order(record: dict) -> tuple:
    return (record.get("workload", ""), -record.get("protocol", 0), record.get("concurrency", 0), record["rtt_ms"])


def _rps(record: dict | None, compact: bool = False) -> str:
    if not record or record.get("throughput_rps") is None:
        return "—" if not record or not record.get("error") else "error"
    lo, hi = record["throughput_rps_spread"]
    spread = f" ({lo / 1000:.1f}k–{hi / 1000:.1f}k)" if record["repeats"] > 1 and not compact else ""
    return f"{record['throughput_rps'] / 1000:.1f}k{spread}"


def _rate_rows(groups: list[dict[str, dict]], compact: bool, per_connection: bool) -> list[list[str]]:
    rows = []
    for g in groups:
        ref = next(iter(g.values()))
        d, p, t = g.get("direct"), g.get("proxied"), g.get("twemproxy")
        unit = "proxy_us_per_connection" if per_connection else "proxy_us_per_command"
        rows.append([ref["test"], str(ref["pipeline"]), str(ref["concurrency"]), _rps(d, compact), _rps(p, compact),
                     _rps(t, compact), _x(_ratio(p and p["throughput_rps"], d and d["throughput_rps"])),
                     _x(_ratio(p and p["throughput_rps"], t and t["throughput_rps"])),
                     _num(_cpu(p, unit)), _num(_cpu(t, unit)), _gen(d), _gen(p), _gen(t)])
    return rows


RATE_HEADERS = ["test", "-P", "-c", "direct", "sidecar", "twemproxy", "sidecar/direct", "sidecar/twemproxy"]


def connrate_table(records: list[dict], compact: bool = False) -> TableSpec | None:
    groups = [g for g in _groups(records, "connection-rate") if {"direct", "proxied", "twemproxy"} & set(g)]
    if not groups:
        return None
    groups.sort(key=lambda g: -next(iter(g.values()))["concurrency"])
    return TableSpec("Connection rate (redis-benchmark -k 0 -a PASSWORD -t get, RTT 0): requests per second",
                     RATE_HEADERS + ["sidecar µs/conn", "twemproxy µs/conn", "generator direct", "generator sidecar",
                                     "generator twemproxy"], _rate_rows(groups, compact, True),
                     "How to read: every request is a new TCP connection, an AUTH, one GET and a close, so requests/s "
                     "is connections/s. Direct, the upstream checks each AUTH; the sidecar answers it itself once it "
                     "has checked the password upstream (passthrough); twemproxy answers it itself too, against the "
                     "redis_auth password in its own config (it authenticates to the upstream with it, and refuses "
                     "any other password with NOAUTH). µs/conn: the proxy's own CPU (user + system, /proc) per "
                     "connection, all of its work for it included. generator: redis-benchmark's own CPU in cores "
                     "(wait4 rusage) over its measured period; 'gen-bound k/n': above 0.9 in k of the n repeats. "
                     "Median over repeats (min–max).")


def throughput_table(records: list[dict], compact: bool = False) -> TableSpec | None:
    groups = [g for g in _groups(records, "redis-benchmark") if {"direct", "proxied", "twemproxy"} & set(g)]
    if not groups:
        return None
    groups.sort(key=lambda g: (next(iter(g.values()))["pipeline"], next(iter(g.values()))["test"]))
    return TableSpec("Persistent clients (redis-benchmark, RTT 0): requests per second",
                     RATE_HEADERS + ["sidecar µs/cmd", "twemproxy µs/cmd", "generator direct", "generator sidecar",
                                     "generator twemproxy"], _rate_rows(groups, compact, False),
                     "How to read: 50 clients on persistent connections, each with -P requests in flight; every "
                     "request crosses the proxy and there is no handshake to save, so this is what the sidecar costs "
                     "an app that already pools. µs/cmd: the proxy's own CPU per command. A direct row whose "
                     "generator is 'gen-bound' measured redis-benchmark, not the server: its ratio is a lower bound. "
                     "Median over repeats (min–max).")


def cpu_table(records: list[dict]) -> TableSpec | None:
    """Every rate row and mode: who spent how much CPU per command."""
    rows = []
    for scenario in ("connection-rate", "redis-benchmark"):
        groups = _groups(records, scenario)
        groups.sort(key=lambda g: (next(iter(g.values()))["pipeline"], -next(iter(g.values()))["concurrency"],
                                   next(iter(g.values()))["test"]))
        for g in groups:
            for mode in ("direct", "proxied", *sorted(m for m in g if m.startswith("proxied-w")), "twemproxy"):
                r = _ok(g.get(mode))
                if not r:
                    continue
                label = f"{r['test']} {'-k 0 ' if scenario == 'connection-rate' else ''}-P {r['pipeline']} " \
                        f"-c {r['concurrency']}"
                rows.append([label, mode, _k(r), _num(_cpu(r, "proxy_us_per_command")),
                             _num(_cpu(r, "proxy_cores"), "{:.2f}"), _num(_cpu(r, "upstream_us_per_command")),
                             _num(_cpu(r, "upstream_cores"), "{:.2f}"), _num(_cpu(r, "generator_us_per_command")),
                             _gen(r), _num(_cpu(r, "machine_cores"), "{:.2f}"), _num(_cpu(r, "other_cores"), "{:.2f}")])
    if not rows:
        return None
    return TableSpec("CPU accounting per row (RTT 0)",
                     ["row", "mode", "req/s", "proxy µs/cmd", "proxy cores", "upstream µs/cmd", "upstream cores",
                      "generator µs/cmd", "generator cores", "machine cores", "others' cores"], rows,
                     "How to read: CPU seconds (user + system) each party used during the measured run, divided by "
                     "the commands it served; 'cores' is the same CPU divided by the run's wall time (1.00 = one "
                     "core busy throughout). proxy: the sidecar's processes (all workers and the supervisor for "
                     "proxied-wN) or twemproxy, from /proc/<pid>/stat; upstream: its INFO cpu; generator: "
                     "redis-benchmark's rusage. machine: every core's busy time (/proc/stat, steal included) over the "
                     "run; others: what none of the three accounts for (the benchmark's own process, other programs "
                     "on the machine, a hypervisor's steal). Where machine cores approach the core count, the row "
                     "measured a full machine, and where 'others' is large, someone else's work was in it.")


def big_reply_extra(records: list[dict], mode: str) -> dict | None:
    without = _find(records, "big-reply", mode, big_reply=False)
    with_ = _find(records, "big-reply", mode, big_reply=True)
    if not without or not with_:
        return None
    return {"without_p50_ms": without["p50_ms"], "without_p99_ms": without["p99_ms"], "with_p50_ms": with_["p50_ms"],
            "with_p99_ms": with_["p99_ms"], "extra_p99_ms": with_["p99_ms"] - without["p99_ms"],
            "big_reply_ms": with_.get("extra", {}).get("big_reply_ms"), "with": with_, "without": without}


def bigreply_table(records: list[dict]) -> TableSpec | None:
    rows = []
    for mode in ("direct", "proxied", "twemproxy"):
        e = big_reply_extra(records, mode)
        if not e:
            continue
        rows.append([mode, _ms(e["without"]), _ms(e["without"], "p99_ms"), _ms(e["with"]), _ms(e["with"], "p99_ms"),
                     f"{e['extra_p99_ms']:+.2f}", _num(e["big_reply_ms"], "{:.1f}"),
                     _num((e["with"].get("extra") or {}).get("big_replies"), "{:.0f}")])
    if not rows:
        return None
    elements = next(r["elements"] for r in records if r["scenario"] == "big-reply")
    clients = next(r["concurrency"] for r in records if r["scenario"] == "big-reply")
    period = next(r["period_ms"] for r in records if r["scenario"] == "big-reply")
    return TableSpec(f"One big reply in flight: {clients} clients' GET latency, ms, with and without a client "
                     f"fetching a {elements}-element SMEMBERS",
                     ["mode", "GET p50 without", "GET p99 without", "GET p50 with", "GET p99 with", "extra p99",
                      "ms per SMEMBERS", "SMEMBERS done"], rows,
                     f"How to read: {clients} clients each send a GET every {period:g} ms on their own connection "
                     "(open loop: a GET's latency counts from when it was due, so waiting behind a stall is counted "
                     "in full). 'with': another client fetches the big set back to back all the while, on its own "
                     "connection, in another process. extra p99 = p99 with − p99 without, in the same repeats: what "
                     "one big reply in flight costs everybody else. Direct, the upstream itself serializes the "
                     "reply; through a proxy, the proxy also has to scan it. ms per SMEMBERS: the big client's own "
                     "median round trip.")


def idle_table(records: list[dict]) -> TableSpec | None:
    rows = []
    for r in records:
        if r["scenario"] != "idle-clients" or not _ok(r):
            continue
        x = r.get("extra", {})
        rows.append([r["mode"], _num(x.get("clients"), "{:.0f}"), _num(x.get("proxy_rss_kb_per_client"), "{:.2f}"),
                     _num(x.get("upstream_used_memory_kb_per_client"), "{:.2f}"),
                     _num(x.get("upstream_rss_kb_per_client"), "{:.2f}"), _ms(r), _ms(r, "p99_ms"),
                     f"{r['throughput_rps']:.0f}"])
    if not rows:
        return None
    return TableSpec("Idle clients: memory per connected, authenticated client, kB",
                     ["mode", "clients", "proxy RSS/client", "upstream used_memory/client", "upstream RSS/client",
                      "connect+AUTH p50 ms", "p99 ms", "connects/s"], rows,
                     "How to read: the clients connect (200 at a time), AUTH, and then sit idle while memory is "
                     "read; each figure is (after − before) / clients. proxy RSS: resident memory of the sidecar's "
                     "(or twemproxy's) processes; upstream used_memory: the server's own allocator count (INFO "
                     "memory), its RSS from /proc. Directly, the upstream holds the clients (its per-client buffers "
                     "are the reference); through a proxy, the proxy holds them and the upstream sees only its pool. "
                     "Kernel socket buffers are in neither.")


def workers_table(records: list[dict]) -> TableSpec | None:
    rows = []
    for scenario in ("connection-rate", "redis-benchmark"):
        for g in _groups(records, scenario):
            multi = sorted(m for m in g if m.startswith("proxied-w"))
            one = _ok(g.get("proxied"))
            for mode in multi:
                many = _ok(g[mode])
                r = one or many
                if not r:
                    continue
                label = f"{r['test']} {'-k 0 ' if scenario == 'connection-rate' else ''}-P {r['pipeline']} " \
                        f"-c {r['concurrency']}"
                rows.append([label, _rps(one), _rps(many), _x(_ratio(many and many["throughput_rps"],
                                                                        one and one["throughput_rps"])),
                             _num(_cpu(one, "proxy_cores"), "{:.2f}"), _num(_cpu(many, "proxy_cores"), "{:.2f}"),
                             _num(_cpu(one, "proxy_us_per_command")), _num(_cpu(many, "proxy_us_per_command")),
                             f"{_gen(one)} / {_gen(many)}"])
    if not rows:
        return None
    n = next(m for r in records for m in [r["mode"]] if m.startswith("proxied-w"))[len("proxied-w"):]
    return TableSpec(f"--workers 1 against --workers {n} (same block, alternating)",
                     ["row", "workers 1", f"workers {n}", "ratio", "sidecar cores (1)", f"sidecar cores ({n})",
                      "µs/cmd (1)", f"µs/cmd ({n})", "generator cores (1 / N)"], rows,
                     f"How to read: the same redis-benchmark row against the sidecar with one process and with {n} "
                     "worker processes sharing the port (SO_REUSEPORT), measured one after the other in each repeat. "
                     "ratio above 1: the extra workers paid. 'sidecar cores' is the CPU all the sidecar's processes "
                     "used: if it does not grow with the workers, there was no idle core to grow into (on 2 cores "
                     "the upstream and redis-benchmark need theirs).")


def chatroom_table(records: list[dict]) -> TableSpec | None:
    rows = [[r["mode"], f"{r['rtt_ms']:g}", str(r["users"]), _ms(r), _ms(r, "p99_ms"),
             "—" if r.get("throughput_rps") is None else f"{r['throughput_rps']:.0f}", _evidence(r)]
            for r in records if r["scenario"] == "chatroom"]
    if not rows:
        return None
    return TableSpec("The chatroom end to end (Socket.IO users joining and chatting): time to each event's answer, ms",
                     ["mode", "RTT ms", "users", "p50", "p99", "events/s", "upstream"], rows,
                     "How to read: simulated users join and chat through the real chatroom, which opens a fresh Redis "
                     "connection per event, to the upstream or to the sidecar. upstream: connections received / "
                     "AUTH+HELLO calls / peak connected clients.")


def cluster_table(records: list[dict]) -> TableSpec | None:
    order = {"direct": 0, "proxied": 1, "persistent": 2}
    shown = {"direct": "RedisCluster per request, direct", "proxied": "single-node client per request, sidecar",
             "persistent": "one RedisCluster, persistent"}
    rows = []
    for r in sorted((r for r in records if r["scenario"] == "cluster"), key=lambda r: (r["rtt_ms"], order[r["mode"]])):
        x = r.get("extra") or {}
        rows.append([f"{r['rtt_ms']:g}", shown[r["mode"]], _ms(r), _ms(r, "p99_ms"),
                     _num(x.get("cluster_connections_per_request"), "{:.2f}"),
                     _num(x.get("cluster_topology_per_request"), "{:.2f}"),
                     _num(x.get("cluster_connections"), "{:.0f}"), _num(x.get("cluster_topology_calls"), "{:.0f}"),
                     _num(x.get("cluster_auth_hello"), "{:.0f}")])
    if not rows:
        return None
    return TableSpec("Redis Cluster (3 primaries + 3 replicas): the chatroom's request (SADD + SMEMBERS), one at a "
                     "time, ms", ["RTT ms", "mode", "p50", "p99", "connections / request",
                                  "CLUSTER SLOTS+SHARDS / request", "connections", "SLOTS+SHARDS", "AUTH+HELLO"],
                     rows, "How to read: the cluster's own INFO, summed over its nodes, for each measured run "
                     "(medians over the repeats). A RedisCluster built per request asks for the topology and opens "
                     "a connection, with its handshake, to the node it needs, every time; through the sidecar the app "
                     "keeps a single-node URL and none of that reaches the cluster: the sidecar already holds the "
                     "map and the connections.")


def errors_table(records: list[dict]) -> TableSpec | None:
    rows = [[r["scenario"], r["mode"], f"{r['rtt_ms']:g}", str(r.get("errors", 0)), r.get("error") or ""]
            for r in records if r.get("error") or r.get("errors")]
    if not rows:
        return None
    return TableSpec("Failures", ["scenario", "mode", "RTT ms", "failed requests", "error"], rows)


def tables(records: list[dict], compact: bool = False, baseline: list[dict] | None = None) -> list[TableSpec]:
    """compact: the terminal's version (no spreads, fewer columns); the Markdown report has everything."""
    return [t for t in (targets_table(records, baseline), connrate_table(records, compact),
                        throughput_table(records, compact), workers_table(records), bigreply_table(records),
                        idle_table(records), cpu_table(records) if not compact else None,
                        connect_table(records, compact), chatroom_table(records), cluster_table(records),
                        errors_table(records)) if t]


# -- renderers -------------------------------------------------------------------------------------------------------

def print_tables(console: Console, records: list[dict], meta: dict, baseline: list[dict] | None = None) -> None:
    for spec in tables(records, compact=True, baseline=baseline):
        table = Table(title=spec.title, title_justify="left")
        for header in spec.headers:
            table.add_column(header, justify="left" if header in ("workload", "mode", "test", "error", "row",
                                                                  "measured", "target", "status") else "right")
        for row in spec.rows:
            table.add_row(*(cell.replace("**", "") for cell in row))
        console.print(table)
    console.print(f"[dim]{summary(meta['machine'])}; run took {meta['duration_s']:.0f} s[/]", highlight=False)


def markdown_table(spec: TableSpec) -> str:
    lines = [f"### {spec.title}", "", "| " + " | ".join(spec.headers) + " |",
             "|" + "|".join("---" for _ in spec.headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in spec.rows]
    if spec.note:
        lines += ["", f"_{spec.note}_"]
    return "\n".join(lines) + "\n"


def markdown(records: list[dict], meta: dict, plots: list[str], baseline: list[dict] | None = None) -> str:
    cfg = meta["config"]
    parts = [
        "# redis-sidecar benchmark report",
        "",
        f"Run {meta['started']} in {meta['duration_s']:.0f} s on: {summary(meta['machine'])}. Load average (1 min) "
        f"{meta['load_average_1m'][0]:g} when it started (other work on the machine), {meta['load_average_1m'][1]:g} "
        f"at its end. The sidecar ran with {meta.get('sidecar_log_level', 'its default')} log level.",
        "",
        "## How to read this report",
        "",
        "- Every table compares modes measured **side by side**: within each repeat a configuration's modes run one "
        "right after the other, against the same upstream, so whatever else the machine did hit them alike. Ratios "
        "pair such records; absolute figures belong to this machine.",
        "- Figures are medians over the repeats, with the min–max over the repeats in brackets (and as the error "
        "bars of the plots).",
        "- **direct**: the client talks to the upstream itself; **proxied** (sidecar): to the sidecar on its own "
        "host; **proxied-wN**: the sidecar with `--workers N`; **twemproxy**: nutcracker in the sidecar's place; "
        "**persistent**: the client's own connections opened beforehand (the ideal).",
        "- CPU is the kernel's account (user + system) of each process during the measured run: the proxy's from "
        "/proc/<pid>/stat (all its processes), the upstream's from its INFO cpu, the load generator's from its "
        "rusage or its processes' own clocks. Per command: divided by the commands of the run. 'gen-bound' flags a "
        "row whose generator used more than 90 % of a core in one process (or of all the cores its processes could "
        "use): there, the generator was the bottleneck and the row says little about the proxy.",
        "- The only targets stated are issue 13's, in the first table: each with the figure measured, the target, "
        "and 'met' or 'not yet'.",
        "",
        "## Method",
        "",
        "- The WAN is a loopback relay adding RTT/2 each way and one RTT to every TCP connect; RTT 0 means no relay "
        "at all. PING round trip measured across it, per setting: "
        + ", ".join(f"{k} ms → {v:.2f} ms" for k, v in meta.get("wan_ping_ms", {}).items()) + ".",
        f"- Each cell ran {cfg['repeats']} times after a warm-up; connect-per-request cells for {cfg['seconds']:g} s "
        f"(at most {cfg['max_requests']} requests), redis-benchmark cells for a fixed number of requests.",
        "- The connection-rate, persistent-client, big-reply and --workers rows share one block at RTT 0 in which "
        "the sidecar, twemproxy and the multi-worker sidecar all stand; only the mode being measured has traffic.",
        "- Upstream evidence comes from the upstream's own INFO (stats, commandstats, clients). Connections and "
        "calls are counted exactly; the peak of connected clients is sampled every "
        f"{SAMPLE_EVERY * 1000:g} ms, so a connection that opens and closes between two samples is not in it. "
        "A proxy's pool is counted in its peak; connections it opened outside the measured stretches (at start, "
        "while warming up) are counted in the upstream-work plot.",
        f"- The Python load generator runs in {cfg.get('generator_processes', 1)} processes beside the benchmark, "
        f"on the same {meta['machine']['cores']} cores as the upstream and the proxies.",
        "",
        "## Results",
        "",
    ]
    parts += [markdown_table(spec) for spec in tables(records, baseline=baseline)]
    if plots:
        parts += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})\n" for p in plots]
    return "\n".join(parts)


def write(out: Path, records: list[dict], meta: dict, plots: list[str], baseline: list[dict] | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "records": records, "comparisons": comparisons(records),
                "targets": targets(records, baseline)}
    (out / "results.json").write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    (out / "report.md").write_text(markdown(records, meta, plots, baseline))
