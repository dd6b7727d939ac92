"""The benchmark harness runs, and what it writes has the expected shape and sane values.

No timing is judged here: a tiny configuration runs through the real command line (real upstream, relay, sidecar,
redis-benchmark, twemproxy when installed, the chatroom when present), then the files are checked for structure and
for facts that hold on any machine (a direct connect-per-request opens one upstream connection per request; through
the sidecar it opens none).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from benchmarks import report
from benchmarks.config import BenchConfig
from benchmarks.scenarios.throughput import parse_csv
from benchmarks.stats import Sample, percentile, summarize

RECORD_KEYS = {"scenario", "mode", "rtt_ms", "concurrency", "client", "repeats", "requests", "errors", "p50_ms",
               "p50_ms_spread", "p99_ms", "p99_ms_spread", "throughput_rps", "throughput_rps_spread", "upstream",
               "error"}
UPSTREAM_KEYS = {"connections_received", "peak_clients", "auth_calls", "hello_calls", "handshake_calls"}
TINY = ["--quick", "--rtts", "0,1", "--protocols", "3", "--concurrency", "1,4", "--repeats", "1", "--seconds", "0.2",
        "--max-requests", "40", "--pipelines", "16", "--chat-users", "2", "--chat-rtt", "1", "--quiet",
        "--scenarios", "connect,chatroom,throughput"]  # the PHP scenario has its own test (test_php_clients.py)


def _python_m(*args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-out")
    done = _python_m("benchmarks", *TINY, "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text())


def test_results_json_has_one_record_per_scenario_mode_and_rtt(tiny_run):
    _, results = tiny_run
    assert set(results) == {"meta", "records", "comparisons"}
    records = results["records"]
    for r in records:
        assert RECORD_KEYS <= set(r), set(RECORD_KEYS) - set(r)
        assert set(r["upstream"]) == UPSTREAM_KEYS
    keys = [(r["scenario"], r["mode"], r["rtt_ms"], r.get("workload"), r.get("protocol"), r["concurrency"],
             r.get("test"), r.get("pipeline")) for r in records]
    assert len(keys) == len(set(keys))
    cpr = {(r["mode"], r["rtt_ms"], r["concurrency"]) for r in records if r["scenario"] == "connect-per-request"}
    assert cpr == {(m, rtt, c) for m in ("direct", "proxied", "persistent") for rtt in (0.0, 1.0) for c in (1, 4)}
    bench_modes = {r["mode"] for r in records if r["scenario"] == "redis-benchmark"}
    assert {"direct", "proxied"} <= bench_modes
    if shutil.which("nutcracker"):
        assert "twemproxy" in bench_modes
    meta = results["meta"]
    assert meta["machine"]["cores"] and meta["machine"]["upstream_server"]
    assert meta["config"]["rtts_ms"] == [0.0, 1.0]


def test_measured_values_are_sane(tiny_run):
    _, results = tiny_run
    for r in results["records"]:
        where = f"{r['scenario']} {r['mode']} RTT {r['rtt_ms']}: {r['error']}"
        assert r["error"] is None and r["errors"] == 0, where
        assert r["requests"] > 0 and r["repeats"] == 1, where
        assert 0 < r["p50_ms"] <= r["p99_ms"], where
        assert r["throughput_rps"] > 0, where
        lo, hi = r["p50_ms_spread"]
        assert lo <= r["p50_ms"] <= hi, where


def test_upstream_evidence_tells_direct_from_proxied(tiny_run):
    """The article's dashboard: a connection and a handshake per direct request; through the sidecar, only the
    pool's own few."""
    _, results = tiny_run
    for r in results["records"]:
        if r["scenario"] != "connect-per-request":
            continue
        up = r["upstream"]
        if r["mode"] == "direct":
            assert up["connections_received"] >= r["requests"]
            assert up["hello_calls"] >= r["requests"]  # redis-py 8's default handshake is HELLO 3 AUTH
            assert up["peak_clients"] >= 1
        elif r["mode"] == "proxied":  # at most the pool growing to its size (a pool per RESP version)
            bound = 2 * BenchConfig().pool_size
            assert up["connections_received"] <= bound and up["auth_calls"] + up["hello_calls"] <= bound
            assert up["peak_clients"] <= bound
        else:  # persistent: connections opened before measuring
            assert up["connections_received"] == 0
            assert up["peak_clients"] >= r["concurrency"]


def test_comparisons_pair_direct_and_proxied(tiny_run):
    _, results = tiny_run
    comps = [c for c in results["comparisons"] if c["scenario"] == "connect-per-request"]
    assert len(comps) == 4
    for c in comps:
        assert c["speedup_p50"] > 0 and c["ideal_speedup_p50"] > 0
        assert c["connections_received"][0] > c["connections_received"][1]


def test_report_and_plots_are_written(tiny_run):
    out, _ = tiny_run
    text = (out / "report.md").read_text()
    for heading in ("# redis-sidecar benchmark report", "## Goals", "## Method", "## Results", "Connect-per-request",
                    "redis-benchmark", "## Plots"):
        assert heading in text
    for name in ("latency_vs_rtt.png", "speedup_vs_rtt.png", "throughput.png", "upstream_work.png"):
        png = (out / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
        assert f"]({name})" in text


def test_demo_runs_once_and_prints_the_comparison():
    done = _python_m("benchmarks", "demo", "--once", "--rtt-ms", "1", "--seconds", "0.2", "--concurrency", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "direct vs proxied" in done.stdout and "upstream conns" in done.stdout
    assert "http://" not in done.stdout, "--once must not print a chatroom link that is dead once it exits"


def test_bad_options_are_refused_before_anything_starts():
    done = _python_m("benchmarks", "--rtts", "-1", timeout=30)
    assert done.returncode == 2 and "RTT" in done.stderr
    done = _python_m("benchmarks", "--scenarios", "nope", timeout=30)
    assert done.returncode == 2 and "unknown scenarios" in done.stderr


def test_micro_benchmarks_still_run():
    done = _python_m("pytest", "benchmarks/micro", "-q", "-p", "no:cacheprovider", "--benchmark-disable", timeout=60)
    assert done.returncode == 0, done.stdout[-3000:]


def test_redis_benchmark_csv_is_parsed():
    text = ('"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms",'
            '"max_latency_ms"\n"GET","341296.91","1.887","0.296","1.743","3.631","6.703","10.495"\n')
    sample = parse_csv(text, "get", 100000)
    assert sample.throughput_rps == pytest.approx(341296.91)
    assert (sample.p50_ms, sample.p99_ms) == (1.743, 6.703)
    with pytest.raises(RuntimeError):
        parse_csv(text, "set", 10)


def test_percentiles_and_summaries():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    samples = [Sample(10, 0, 1.0, p50, p50 * 2, 10 / 1.0) for p50 in (3.0, 1.0, 2.0)]
    summary = summarize(samples)
    assert summary["p50_ms"] == 2.0 and summary["p50_ms_spread"] == [1.0, 3.0]
    assert summary["requests"] == 30
    empty = summarize([])
    assert empty["p50_ms"] is None and empty["requests"] == 0


def test_comparisons_are_ratios_of_the_same_configuration():
    def rec(mode: str, p50: float, rps: float) -> dict:
        return {"scenario": "connect-per-request", "mode": mode, "rtt_ms": 2.0, "workload": "chat", "protocol": 3,
                "concurrency": 1, "client": "x", "p50_ms": p50, "p99_ms": p50, "throughput_rps": rps,
                "upstream": {"connections_received": 0, "auth_calls": 0, "hello_calls": 0}}
    records = [rec("direct", 14.0, 70), rec("proxied", 4.0, 250), rec("persistent", 4.0, 250)]
    (comp,) = report.comparisons(records)
    assert comp["speedup_p50"] == 3.5 and comp["ideal_speedup_p50"] == 3.5
    assert any("met" in line and "NOT" not in line for line in report.verdicts([comp]))
