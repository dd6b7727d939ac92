"""Raw values (parsed YAML, environment text, flags) into the sections' declared types: each key keeps the type it
declares, a bad value is refused with its path and never converted silently, and a secret is never quoted."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import typing
from collections.abc import Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .model import ClientUser, TLSConfig
from .problems import ConfigError, Problems

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    Section = TypeVar("Section", bound=DataclassInstance)


LIST_KEYS = ("listen", "commands.deny", "commands.allow")  # a string or a list; comma-separated in the environment
PORT_KEYS = ("listen", "metrics.listen")  # where a YAML integer is a port
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class EnvText(str):
    """A value from a ``REDIS_SIDECAR_*`` variable: text, to be read as its key's type (``_from_env``)."""


def section(cls: type[Section], raw: Any, path: str, b: Problems) -> Section | None:
    """``raw`` as a ``cls``: each unknown key and bad value is recorded (the key keeps its default meanwhile);
    None when there is nothing to build it from."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        b.add(f"{path or 'config'}: expected a section (a mapping of keys), got {_kind(raw)}")
        return None
    known = {f.name: f for f in fields(cls)}
    declared = _declared(cls)
    values: dict[str, Any] = {}
    for name, value in raw.items():
        where = f"{path}.{name}" if path else str(name)
        if name not in known:
            close = difflib.get_close_matches(str(name), known, 1)
            b.add(f"{where}: unknown key ({f'did you mean {close[0]}?' if close else 'known: ' + ', '.join(known)})")
            continue
        with b.collect():
            values[name] = _coerce(known[name], declared[name], value, where, b)
    for f in known.values():
        if f.default is MISSING and f.default_factory is MISSING and f.name not in raw:
            b.add(f"{path}.{f.name}: required")
    try:
        return cls(**values)
    except TypeError:  # a required key is missing or was refused: recorded above
        return None


@functools.cache
def _declared(cls: type[Any]) -> dict[str, Any]:
    """Each field's declared type, resolved: a field whose type is a dataclass is a nested section."""
    return typing.get_type_hints(cls)


def _type_name(f: dataclasses.Field[Any]) -> str:
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")


def _coerce(f: dataclasses.Field[Any], declared: Any, value: Any, path: str, b: Problems) -> Any:
    """One key's value as its field declares it; ``ConfigError`` when it is not one (never converted silently)."""
    if isinstance(value, EnvText):
        value = _from_env(f, str(value), path)
    if declared is TLSConfig and isinstance(value, bool):  # upstream.tls: true
        return TLSConfig(enabled=value)
    if isinstance(declared, type) and dataclasses.is_dataclass(declared):
        return section(declared, value, path, b) or declared()
    if f.name == "users":
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list of users")
        users = (_user(u, f"{path}[{i}]", b) for i, u in enumerate(value))
        return tuple(u for u in users if u is not None)
    if path in PORT_KEYS and type(value) is int:  # listen: 6380
        value = str(value)
    if path in LIST_KEYS:
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) or (path in PORT_KEYS and type(v) is int) for v in items):
            raise ConfigError(f"{path}: expected a string or a list of strings")
        return tuple(str(v) for v in items)
    kind = _type_name(f)
    if kind.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {_got(value, path)}")
    elif kind.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {_got(value, path)}")
    elif kind.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {_got(value, path)}")
        if not math.isfinite(value):
            raise ConfigError(f"{path}: expected a finite number, got {value}")
        value = float(value)
    elif kind.startswith("str") and value is not None and not isinstance(value, str):
        quote = "" if isinstance(value, (list, dict)) else \
            " (put it in quotes: unquoted, YAML reads 0123 as the octal number 83, and yes as true)"
        raise ConfigError(f"{path}: expected a string, got {_got(value, path)}{quote}")
    return value


def _from_env(f: dataclasses.Field[Any], text: str, path: str) -> Any:
    """An environment variable's text as its key's type: the exact text for a string (``0123``, ``yes`` and ``1e3``
    stay strings; empty unsets an optional key), a number or a boolean where the key takes one, a list split at
    commas."""
    kind = _type_name(f)
    if path in LIST_KEYS:
        return [item.strip() for item in text.split(",") if item.strip()]
    if kind.startswith("bool") or path == "upstream.tls":
        word = text.strip().lower()
        if word not in _TRUE + _FALSE:
            raise ConfigError(f"{path}: expected true or false (or yes/no, on/off, 1/0), got {_got(text, path)}")
        return word in _TRUE
    if kind.startswith(("int", "float")):
        try:
            return int(text) if kind.startswith("int") else float(text)
        except ValueError:
            what = "an integer" if kind.startswith("int") else "a number"
            raise ConfigError(f"{path}: expected {what}, got {_got(text, path)}") from None
    return None if text == "" and "None" in kind else text


def _secret(path: str) -> bool:
    """Keys whose values never appear in an error: the passwords and where they come from, and the upstream URL
    (which may carry one)."""
    return path.rpartition(".")[2].startswith(("password", "sentinel_password")) or path == "upstream.url"


def _kind(value: Any) -> str:
    """A value's type, in YAML's words."""
    if value is None:
        return "null"
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a mapping"}
    return kinds.get(type(value), f"a {type(value).__name__}")


def _got(value: Any, path: str) -> str:
    """What was given, for an error: its type, and the value itself only for a scalar of a key that is no secret."""
    if _secret(path) or not isinstance(value, (str, int, float)):
        return _kind(value)
    if isinstance(value, str):
        return repr(value)
    return f"{_kind(value)} {str(value).lower() if isinstance(value, bool) else value}"


def read_secret(value: str | None, env: str | None, file: str | None, path: str,
                 environ: Mapping[str, str]) -> str | None:
    if env:
        if env not in environ:
            raise ConfigError(f"{path}_env: environment variable {env} is not set")
        return environ[env]
    if file:
        try:
            return Path(file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{path}_file: cannot read {file}: {exc.strerror}") from None
    return value


def _user(raw: Any, path: str, b: Problems) -> ClientUser | None:
    """One ``client_auth.users`` entry, its password read from wherever it comes from."""
    user = section(ClientUser, raw, path, b)
    if user is None:
        return None
    password = None
    with b.collect():
        password = read_secret(user.password, user.password_env, user.password_file, f"{path}.password",
                                b.environ)
        if not password and not b.failed(f"{path}.password"):
            raise ConfigError(f"{path}.password: every sidecar user needs a password")
    return dataclasses.replace(user, password=password)
