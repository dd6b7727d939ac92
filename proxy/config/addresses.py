"""Listening addresses as written in the config (``HOST:PORT``, or ``PORT`` alone for loopback)."""

from __future__ import annotations

from .problems import ConfigError


def parse_hostport(text: str, path: str) -> tuple[str, int]:
    host, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"{path}: expected HOST:PORT or PORT, got {text!r}")
    host = host.strip("[]")
    if not 0 <= int(port) <= 65535:
        raise ConfigError(f"{path}: port out of range in {text!r}")
    return host, int(port)


def listen_address(text: str, path: str) -> tuple[str, int]:
    """A listening address as (host, port): ``PORT`` alone means loopback, as every default does."""
    text = str(text)
    if not text.isdigit():
        return parse_hostport(text, path)
    if int(text) > 65535:
        raise ConfigError(f"{path}: port out of range in {text!r}")
    return "127.0.0.1", int(text)


def metrics_address(text: str) -> tuple[str, int]:
    """``metrics.listen`` as (host, port)."""
    return listen_address(text, "metrics.listen")


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
