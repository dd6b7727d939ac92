"""Process accounting from /proc: CPU seconds and resident memory of a process and its descendants, and the rusage of a
child command (redis-benchmark) from ``wait4``.

Every figure here is the kernel's own bookkeeping, read before and after a measurement: the CPU time of every thread of
the process (user + system: the scheduler's nanosecond count in ``/proc/<pid>/task/*/schedstat``, or utime + stime of
``/proc/<pid>/stat`` in clock ticks where schedstat is missing), VmRSS of ``/proc/<pid>/status``. A process tree is the
root and every live descendant (the ``--workers`` supervisor and its workers); a process gone between the two readings
simply drops out. Off Linux every reading is ``None``.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

TICK = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after its closing one
    return text[text.rindex(")") + 2:].split()


def cpu_seconds(pid: int) -> float | None:
    """user + system CPU of one process (all its live threads) so far: the scheduler's own nanosecond count
    (``/proc/<pid>/task/<tid>/schedstat``) where the kernel keeps it, else utime + stime of ``/proc/<pid>/stat``
    (whole clock ticks: too coarse for a run of a second)."""
    try:
        total = 0
        for tid in os.listdir(PROC / str(pid) / "task"):
            total += int((PROC / str(pid) / "task" / tid / "schedstat").read_text().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) * TICK  # utime, stime (fields 14 and 15 of stat)


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (by parent pid), found by one scan of /proc."""
    parents: dict[int, list[int]] = {}
    try:
        entries = [int(e) for e in os.listdir(PROC) if e.isdigit()]
    except OSError:
        return [root]
    for pid in entries:
        fields = _stat_fields(pid)
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += parents.get(pid, [])
    return tree


def tree_cpu(root: int | None) -> dict[int, float]:
    """CPU seconds of every process of the tree, by pid (a dict, so two readings subtract per process)."""
    if root is None:
        return {}
    out = {}
    for pid in descendants(root):
        cpu = cpu_seconds(pid)
        if cpu is not None:
            out[pid] = cpu
    return out


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float | None:
    """CPU used between two readings of a tree; a process born in between counts from zero."""
    if not after:
        return None
    return round(sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items()), 4)


def rss_kb(pid: int) -> int | None:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def tree_rss_kb(root: int | None) -> int | None:
    if root is None:
        return None
    values = [rss_kb(pid) for pid in descendants(root)]
    values = [v for v in values if v is not None]
    return sum(values) if values else None


@dataclass(frozen=True)
class Finished:
    """A child command that ran to its end: its output and the kernel's account of its own CPU."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float  # ru_utime + ru_stime of the child (and of any children it waited for)


def run_with_rusage(argv: list[str], timeout: float) -> Finished:
    """Run ``argv`` to its end and reap it with ``wait4``, which returns its resource usage (blocking: call it in a
    thread). Output is collected into temporary files, so a child that writes a lot never blocks on a pipe."""
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        timer = threading.Timer(timeout, proc.kill)  # wait4 below blocks; this ends a hung child
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
        if wall >= timeout and proc.returncode < 0:
            raise TimeoutError(f"{argv[0]} took longer than {timeout:.0f}s")
        out.seek(0)
        err.seek(0)
        return Finished(proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                        wall, usage.ru_utime + usage.ru_stime)


def outbound_connections(root: int | None, listen_port: int) -> int | None:
    """Established TCP connections of the process tree other than its clients' (whose local port is
    ``listen_port``): for a proxy, its connections to the upstream (its pool)."""
    if root is None:
        return None
    inodes: set[str] = set()
    for pid in descendants(root):
        try:
            for fd in os.listdir(PROC / str(pid) / "fd"):
                try:
                    target = os.readlink(PROC / str(pid) / "fd" / fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    count = 0
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "01" and cols[9] in inodes:  # 01: ESTABLISHED
                if int(cols[1].rsplit(":", 1)[1], 16) != listen_port:
                    count += 1
    return count


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine spent busy so far, all cores (user, nice, system, irq, softirq, and steal:
    time a hypervisor gave to someone else), from the first line of /proc/stat."""
    try:
        with open(PROC / "stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) * TICK
