"""Where a Config comes from: the YAML file, then ``REDIS_SIDECAR_*`` environment variables, then the flags."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .coerce import EnvText, section
from .model import Config
from .problems import ConfigError, Problems
from .upstream_url import DERIVED_FROM_URL, resolve_upstream
from .validate import validate

ENV_PREFIX = "REDIS_SIDECAR_"


def load(path: str | None = None, overrides: Mapping[str, Any] | None = None,
         environ: Mapping[str, str] | None = None) -> Config:
    """Build the Config: file, then ``REDIS_SIDECAR_*`` environment variables, then ``overrides`` (the flags)."""
    b = Problems(os.environ if environ is None else environ)
    raw = _read_file(path) if path else {}
    for name, value in b.environ.items():
        dotted = _env_key(name)
        if dotted is not None:
            with b.collect():
                _set_path(raw, dotted, EnvText(value))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            with b.collect():
                _set_path(raw, dotted, value)
    cfg = _build(raw, b)
    b.done()
    return cfg


def _read_file(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML{_yaml_problem(exc)}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return loaded


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where the parser stopped and why, without the snippet of the line it quotes: that line may hold a password."""
    mark = getattr(exc, "problem_mark", None)
    if not isinstance(exc, yaml.MarkedYAMLError) or mark is None:
        return ""
    problem, context = exc.problem or "", exc.context or ""
    if "scalar" in context:  # inside a value: a character the parser names may be part of a password
        problem = re.sub(r"'[^']*'", "(not shown)", problem)
    return f" at line {mark.line + 1}, column {mark.column + 1}: {f'{context}: ' if context else ''}{problem}"


def _env_key(name: str) -> str | None:
    """The key a variable sets: ``REDIS_SIDECAR_UPSTREAM`` the upstream URL, ``REDIS_SIDECAR_LISTEN`` the listen
    addresses, ``REDIS_SIDECAR_POOL__SIZE`` ``pool.size``; None for any other (REDIS_SIDECAR_NO_EXTENSIONS ...)."""
    if not name.startswith(ENV_PREFIX):
        return None
    key = name[len(ENV_PREFIX):].lower()
    if key == "upstream":
        return "upstream.url"
    return key.replace("__", ".") if key == "listen" or "__" in key else None


def _set_path(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {part} is not a section")
    node[parts[-1]] = value


def build(raw: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """The Config for ``raw`` (a parsed file); ``ConfigError`` lists every problem, one per line."""
    b = Problems(os.environ if environ is None else environ)
    cfg = _build(raw, b)
    b.done()
    return cfg


def _build(raw: Mapping[str, Any], b: Problems) -> Config:
    raw = dict(raw)
    upstream = raw.get("upstream")
    if isinstance(upstream, dict):
        for key in DERIVED_FROM_URL:
            if key in upstream:
                b.add(f"upstream.{key}: set it in upstream.url (redis://host:port/db, "
                      "redis-cluster://host:port,host:port or redis-sentinel://host:port,host:port#master)")
        raw["upstream"] = {k: v for k, v in upstream.items() if k not in DERIVED_FROM_URL}
    cfg = section(Config, raw, "", b) or Config()
    cfg = dataclasses.replace(cfg, upstream=resolve_upstream(cfg.upstream, b))
    validate(cfg, b)
    return cfg
