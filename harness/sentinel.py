"""A real Sentinel setup on loopback: one master, one replica, three ``redis-server --sentinel`` processes.

Sentinel mode has to be proven against real sentinels: their view lags, they reconfigure servers and announce
``+switch-master``. The master and replica have a password and an ACL user; the sentinels can have a password of
their own (``requirepass``, and ``sentinel-pass`` to talk to each other). Down-detection and failover timeouts are
short so a failover completes in seconds; ``failover()`` runs ``SENTINEL FAILOVER`` and waits until all agree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .cluster import HOST, Address, poll
from .servers import EmbeddedServer, TLSFiles, free_port, terminate, wait_listening


@dataclass
class SentinelNode:
    """One ``redis-server --sentinel`` process; its config file is its own (sentinels rewrite it)."""

    binary: str
    config: list[str]
    workdir: str
    port: int = 0
    tls: TLSFiles | None = None  # TLS only: clients, the other sentinels and the servers it watches
    proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> SentinelNode:
        self.port = self.port or free_port()
        conf = Path(self.workdir) / "sentinel.conf"
        listen = [f"port {self.port}"] if self.tls is None else [
            "port 0", f"tls-port {self.port}", f"tls-cert-file {self.tls.cert}", f"tls-key-file {self.tls.key}",
            f"tls-ca-cert-file {self.tls.ca}", "tls-auth-clients no", "tls-replication yes"]
        conf.write_text("\n".join([*listen, f"bind {HOST}", f"dir {self.workdir}",
                                   f"logfile {self.workdir}/sentinel.log", *self.config]) + "\n")
        os.chmod(conf, 0o600)  # it holds passwords
        self.proc = subprocess.Popen([self.binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        log = Path(self.workdir) / "sentinel.log"
        wait_listening(self.proc, self.port, timeout, "sentinel",
                       lambda: log.read_text(errors="replace")[-2000:] if log.exists() else "")
        return self

    def stop(self) -> None:
        terminate(self.proc, 5)
        self.proc = None


@dataclass
class SentinelSetup:
    """Master + replica + sentinels; ``start()`` returns once every sentinel knows the replica and the others."""

    master_name: str = "mymaster"
    password: str = "upstream-secret"
    users: dict[str, str] = field(default_factory=dict)
    sentinel_password: str | None = None
    sentinel_count: int = 3
    down_after_ms: int = 1000
    failover_timeout_ms: int = 5000
    flavour: str | None = None
    tls: TLSFiles | None = None  # TLS only, everywhere: master, replica, sentinels
    workdir: str = ""
    servers: list[EmbeddedServer] = field(default_factory=list)
    sentinels: list[SentinelNode] = field(default_factory=list)
    start_seconds: float = 0.0  # how long start() took, for the reports
    waiting: str = ""  # what the last settle check was waiting for

    def __post_init__(self) -> None:
        self.workdir = self.workdir or tempfile.mkdtemp(prefix="sidecar-sentinel-")

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> SentinelSetup:
        began = time.monotonic()
        try:
            master = self._server("master", []).start()
            self.servers.append(master)
            self.servers.append(self._server("replica", [f"replicaof {HOST} {master.port}"]).start())
            poll(lambda: self._link_up(self.servers[1].port), timeout, "the replica did not sync with the master")
            for i in range(self.sentinel_count):
                workdir = os.path.join(self.workdir, f"sentinel{i}")
                os.makedirs(workdir, exist_ok=True)
                self.sentinels.append(SentinelNode(master.binary, self._sentinel_config(master.port), workdir,
                                                   tls=self.tls).start())
            self.wait_agreed(timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def _server(self, name: str, extra: list[str]) -> EmbeddedServer:
        workdir = os.path.join(self.workdir, name)
        os.makedirs(workdir, exist_ok=True)
        tls = ["tls-replication yes"] if self.tls else []
        return EmbeddedServer(password=self.password, users=self.users, flavour=self.flavour, workdir=workdir,
                              tls=self.tls, extra_config=[f"masterauth {self.password}", "repl-diskless-sync-delay 0",
                                                          *tls, *extra])

    def _sentinel_config(self, master_port: int) -> list[str]:
        name = self.master_name
        lines = [
            f"sentinel monitor {name} {HOST} {master_port} {self.sentinel_count // 2 + 1}",
            f"sentinel auth-pass {name} {self.password}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        if self.sentinel_password:
            lines += [f"requirepass {self.sentinel_password}", f"sentinel sentinel-pass {self.sentinel_password}"]
        return lines

    def stop(self) -> None:
        for node in self.sentinels:
            node.stop()
        for server in self.servers:
            server.stop()
        self.sentinels.clear()
        self.servers.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SentinelSetup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses and clients ------------------------------------------------------------------------------------
    @property
    def sentinel_addresses(self) -> list[Address]:
        return [(HOST, s.port) for s in self.sentinels]

    def url(self, username: str | None = None, password: str | None = None, db: int = 0) -> str:
        """``redis-sentinel://[user:password@]s1,s2,s3/db#name`` (``rediss-sentinel://`` with TLS); the credentials
        are the master's."""
        password = self.password if password is None else password
        cred = f"{quote(username or '', safe='')}:{quote(password, safe='')}@" if username or password else ""
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinel_addresses)
        scheme = "rediss-sentinel" if self.tls else "redis-sentinel"
        return f"{scheme}://{cred}{hosts}/{db}#{self.master_name}"

    def server(self, address: Address) -> EmbeddedServer:
        return next(s for s in self.servers if s.port == address[1])

    def sentinel_call(self, address: Address, *args: Any) -> Any:
        import redis

        tls: dict[str, Any] = {"ssl": True, "ssl_ca_certs": self.tls.ca} if self.tls else {}
        client = redis.Redis(host=address[0], port=address[1], password=self.sentinel_password, socket_timeout=5,
                             socket_connect_timeout=2, **tls)
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    def server_call(self, address: Address, *args: Any) -> Any:
        client = self.server(address).client(socket_timeout=5, socket_connect_timeout=2)
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    def _link_up(self, port: int) -> bool:
        role = self.server_call((HOST, port), "ROLE")
        return _text(role[0]) == "slave" and _text(role[3]) == "connected"

    # -- state ----------------------------------------------------------------------------------------------------
    def reported_masters(self) -> set[Address]:
        """What each sentinel names as the master right now."""
        out = set()
        for sentinel in self.sentinel_addresses:
            host, port = self.sentinel_call(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
            out.add((_text(host), int(port)))
        return out

    def master_address(self) -> Address:
        """The master every sentinel agrees on (waits for agreement, bounded)."""
        return poll(lambda: next(iter(m)) if len(m := self.reported_masters()) == 1 else None, 30,
                    "the sentinels disagree about the master")

    def replica_address(self) -> Address:
        master = self.master_address()
        return next((HOST, s.port) for s in self.servers if s.port != master[1])

    def _settled(self) -> Address | None:
        """The master if every sentinel names it, ROLE confirms it, the replica is linked to it, and every sentinel
        knows the replica (healthy) and all other sentinels; else None, with what is missing in ``self.waiting``."""
        masters = self.reported_masters()
        self.waiting = f"sentinels name {sorted(masters)}"
        if len(masters) != 1:
            return None
        master = next(iter(masters))
        if _text(self.server_call(master, "ROLE")[0]) != "master":
            return None
        replica = next((HOST, s.port) for s in self.servers if s.port != master[1])
        if not self._link_up(replica[1]):
            self.waiting = f"replica {replica} not linked"
            return None
        for sentinel in self.sentinel_addresses:
            state = _pairs(self.sentinel_call(sentinel, "SENTINEL", "MASTER", self.master_name))
            replicas = [_pairs(r) for r in self.sentinel_call(sentinel, "SENTINEL", "REPLICAS", self.master_name)]
            good = [r for r in replicas if (r["ip"], int(r["port"])) == replica
                    and not {"s_down", "o_down", "disconnected"} & set(r["flags"].split(","))]
            self.waiting = f"sentinel {sentinel}: {state.get('flags')}, {len(good)} good replicas, " \
                           f"{state.get('num-other-sentinels')} other sentinels"
            if state["flags"] != "master" or not good or \
                    int(state["num-other-sentinels"]) != self.sentinel_count - 1:
                return None
        return master

    def wait_agreed(self, timeout: float = 30.0) -> Address:
        """Until the setup is settled (see ``_settled``); returns the master."""
        return poll(self._settled, timeout, lambda: f"sentinels not settled: {self.waiting}")

    # -- operations -----------------------------------------------------------------------------------------------
    def failover(self, timeout: float = 30.0) -> Address:
        """``SENTINEL FAILOVER``: returns the promoted replica once every sentinel names it and ROLE confirms it.

        Sentinels reconfigure the demoted master only at their next INFO of it (a fixed 10 s period), so it rejoins
        as a replica about 10 s later; a second ``failover()`` waits for that first (NOGOODSLAVE otherwise)."""
        old = self.wait_agreed(timeout)
        ask = self.sentinel_addresses[0]
        poll(lambda: self.sentinel_call(ask, "SENTINEL", "FAILOVER", self.master_name), timeout,
             "SENTINEL FAILOVER was refused")

        def switched() -> Address | None:
            masters = self.reported_masters()
            self.waiting = f"sentinels name {sorted(masters)}"
            new = next(iter(masters)) if len(masters) == 1 else old
            return new if new != old and _text(self.server_call(new, "ROLE")[0]) == "master" else None

        return poll(switched, timeout, lambda: f"the failover did not happen: {self.waiting}")


def _pairs(reply: dict | list) -> dict[str, str]:
    """A sentinel's field list (redis-py turns some into dicts already) as str -> str."""
    items = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2])
    return {_text(k): _text(v) for k, v in items}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
