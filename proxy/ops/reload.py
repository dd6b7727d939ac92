"""Hot reload: build a new ``Runtime`` from a new, validated ``Config`` and swap it in, dropping nobody.

Triggered by SIGHUP and ``SIDECAR RELOAD``. The file (and environment, and the original flags) are read again; a
configuration that does not validate is refused with one log line and the running one stays in force. Otherwise a
new runtime is built and swapped whole; each session reads it at its next command:

- pool sizes, lease bounds, timeouts and limits apply at once (surplus shared connections close once idle);
- client users, passwords and the auth mode apply to the next AUTH; authenticated clients stay authenticated;
- the command deny-list applies to the next command; log level and format at once;
- a new upstream address or login gets new connections: each client moves over once its in-flight commands are
  answered (the rule that keeps its order), subscribers are closed so they reconnect and subscribe there, and the
  old connections close once given back, or after ``shutdown_timeout``; a Sentinel failover moves the upstream the
  same way (``follow_master``). Behind Sentinel, the master found stays; other sentinels or another master name
  need a restart;
- ``listen``, ``unix_socket``, ``tls`` (the listeners'), ``metrics.listen`` and ``workers`` need a restart.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from ..config import Config, ConfigError
from ..runtime import Runtime, RuntimeHandle
from . import logs

log = logging.getLogger("sidecar.reload")

RESTART_ONLY = ("listen", "unix_socket", "metrics.listen", "workers", "tls.cert_file", "tls.key_file", "tls.ca_file",
                "tls.require_client_cert")


class ReloadError(Exception):
    """The new configuration was refused; ``str()`` says why (the running one stays in force)."""


def changed_keys(old: object, new: object, path: str = "") -> list[str]:
    """Dotted paths of the keys that differ (values are never returned: some are secrets)."""
    if dataclasses.is_dataclass(old) and dataclasses.is_dataclass(new) and type(old) is type(new):
        out: list[str] = []
        for f in dataclasses.fields(old):
            sub = f"{path}.{f.name}" if path else f.name
            out += changed_keys(getattr(old, f.name), getattr(new, f.name), sub)
        return out
    return [path] if old != new else []


def reload(handle: RuntimeHandle, loader: Callable[[], Config] | None, log_static: dict[str, object]) -> list[str]:
    """Read the configuration again and apply it; the changed keys. ``ReloadError`` if refused."""
    old_rt = handle.current
    if loader is None:
        raise ReloadError("this sidecar has no configuration source to read again")
    try:
        new = loader()
    except ConfigError as exc:
        old_rt.stats.reloads_failed += 1
        log.error("configuration reload refused, the running configuration stays in force: %s", exc,
                  extra={"event": "reload_refused"})
        raise ReloadError(str(exc)) from None
    old = old_rt.cfg
    new = _keep_sentinel_master(old, new)
    changed = changed_keys(old, new)
    ignored = [k for k in changed if k in RESTART_ONLY]
    if ignored:
        log.warning("configuration reload: %s changed but needs a restart; keeping the running value",
                    ", ".join(ignored), extra={"event": "reload_needs_restart"})
    new = dataclasses.replace(new, listen=old.listen, unix_socket=old.unix_socket, workers=old.workers, tls=old.tls,
                              metrics=dataclasses.replace(new.metrics, listen=old.metrics.listen))
    changed = [k for k in changed if k not in RESTART_ONLY]
    old_rt.stats.reloads_ok += 1
    if not changed:
        log.info("configuration reloaded: no changes", extra={"event": "config_reloaded"})
        return []
    rt = Runtime.build(new, old_rt.loop, previous=old_rt)
    if rt.manager is not old_rt.manager or rt.cluster is not old_rt.cluster:
        switch_upstream(handle, rt, "a configuration reload")
    else:
        handle.current = rt
    if old.log != new.log:
        logs.setup(new.log.level, new.log.format, log_static)
    log.info("configuration reloaded: %s", ", ".join(changed), extra={"event": "config_reloaded"})
    return changed


def switch_upstream(handle: RuntimeHandle, rt: Runtime, why: str) -> None:
    """Put ``rt``, whose upstream is another one, in force: each client moves over once its in-flight commands are
    answered, subscribers are closed (they subscribe again there), the old connections close once given back."""
    old_rt = handle.current
    handle.current = rt
    rt.start_upstream()
    old_rt.loop.create_task(rt.learn_upstream())
    log.info("upstream changing from %s to %s (%s): clients move over as they go idle", old_rt.manager.address,
             rt.manager.address, why, extra={"event": "upstream_switch"})
    old_rt.hub.close_all(f"the upstream changed ({why})")
    if old_rt.shard_hubs is not None:
        old_rt.shard_hubs.close_all(f"the upstream changed ({why})")
    old_rt.retire_upstream(rt.cfg.shutdown_timeout)


def follow_master(handle: RuntimeHandle, address: tuple[str, int], why: str) -> None:
    """Sentinel named another master: move the upstream there, as a reload to its address would."""
    old = handle.current.cfg
    if (old.upstream.host, old.upstream.port) == address:
        return
    upstream = dataclasses.replace(old.upstream, host=address[0], port=address[1])
    switch_upstream(handle, Runtime.build(dataclasses.replace(old, upstream=upstream), handle.current.loop,
                                          previous=handle.current), why)


_SENTINEL_KEYS = ("url", "mode", "seeds", "sentinel_master", "host", "port")


def _keep_sentinel_master(old: Config, new: Config) -> Config:
    """Behind Sentinel, the master in use is what the sentinels said, not the file's first address: it stays. A new
    list of sentinels or master name (or a move to or from Sentinel) needs a restart, as the sentinels are asked
    once at start and then followed."""
    if "sentinel" not in (old.upstream.mode, new.upstream.mode):
        return new
    same = all(getattr(old.upstream, k) == getattr(new.upstream, k) for k in ("mode", "seeds", "sentinel_master"))
    if not same:
        log.warning("configuration reload: the Sentinel upstream (upstream.url) changed but needs a restart; keeping "
                    "the running one", extra={"event": "reload_needs_restart"})
    return dataclasses.replace(new, upstream=dataclasses.replace(
        new.upstream, **{k: getattr(old.upstream, k) for k in _SENTINEL_KEYS}))
