"""Hot reload: build a new ``Runtime`` from a new, validated ``Config`` and swap it in, dropping nobody.

Triggered by SIGHUP and ``SIDECAR RELOAD``. The file (and environment, and the original flags) are read again; a
configuration that does not validate is refused with one log line and the running one stays in force. Otherwise a
new runtime is built and swapped whole; each session reads it at its next command:

- pool sizes, lease bounds, timeouts and limits apply at once (surplus shared connections close once idle);
- client users, passwords and the auth mode apply to the next AUTH; authenticated clients stay authenticated;
- the command deny-list applies to the next command; log level and format at once;
- a new upstream address or login gets new connections: each client moves over once its in-flight commands are
  answered (the rule that keeps its order), subscribers are closed so they reconnect and subscribe there, and the
  old connections close once given back, or after ``shutdown_timeout``;
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
    handle.current = rt
    if rt.manager is not old_rt.manager:
        rt.manager.start_watchdog()
        rt.manager.prewarm(rt.default_key)
        old_rt.loop.create_task(rt.learn_upstream())
        log.info("upstream changing from %s to %s: clients move over as they go idle", old_rt.manager.address,
                 rt.manager.address, extra={"event": "upstream_switch"})
        old_rt.hub.close_all("the upstream changed by a configuration reload")
        old_rt.control.close()
        old_rt.loop.create_task(old_rt.manager.retire(new.shutdown_timeout))
    if old.log != new.log:
        logs.setup(new.log.level, new.log.format, log_static)
    log.info("configuration reloaded: %s", ", ".join(changed), extra={"event": "config_reloaded"})
    return changed
