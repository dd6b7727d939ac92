"""The machine a run happened on, for the report: numbers without their machine are not worth reading."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from proxy.wire import resp


def describe(server: str) -> dict:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis_py": _version("redis"),
        "hiredis": _version("hiredis"),
        "uvloop": _version("uvloop"),
        "wire_speedups": resp.SPEEDUPS,  # the sidecar's parser and framer in C (else pure Python)
        "upstream_server": server,
        "redis_benchmark": _first_line(["redis-benchmark", "--version"]),
        "nutcracker": _first_line(["nutcracker", "--version"]),
        "sidecar_commit": _first_line(["git", "-C", str(Path(__file__).resolve().parents[1]), "rev-parse", "--short",
                                       "HEAD"]),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _first_line(argv: list[str]) -> str | None:
    if not shutil.which(argv[0]):
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if done.returncode == 0 and lines else None


def summary(machine: dict) -> str:
    """One line: 'Intel Xeon ..., 2 cores, 7.8 GB, Linux 6.1, Python 3.11.7, valkey 9.1.2, sidecar wire layer in C'."""
    return (f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB RAM, {machine['os']}, "
            f"Python {machine['python']}, redis-py {machine['redis_py']}, upstream {machine['upstream_server']}, "
            f"sidecar wire layer in {'C' if machine.get('wire_speedups') else 'Python'}")
