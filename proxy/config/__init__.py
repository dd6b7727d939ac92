"""Configuration: YAML file, then environment, then command-line flags -> one validated, immutable ``Config``.

Every key is checked once at start; an unknown key or a bad value is refused with its path (``pool.size: ...``) so a
typo never silently falls back to a default, and every problem is reported at once, one line each. A value keeps the
type its key declares: an environment variable's text is parsed for numeric and boolean keys only (``0123`` stays the
string ``"0123"`` for a password), and a YAML number or boolean where a string belongs is refused, not converted.
Secrets (upstream password, client passwords) can come from the URL, an environment variable or a file; they are
never part of ``repr`` nor of any error message.
"""

from .addresses import listen_address, metrics_address, parse_hostport
from .coerce import LIST_KEYS, PORT_KEYS
from .load import ENV_PREFIX, build, load
from .model import (
    ClientAuthConfig,
    ClientUser,
    CommandsConfig,
    Config,
    LimitsConfig,
    ListenTLSConfig,
    LogConfig,
    MetricsConfig,
    PoolConfig,
    TLSConfig,
    UpstreamConfig,
)
from .problems import ConfigError
from .upstream_url import DERIVED_FROM_URL, TOPOLOGY_SCHEMES
from .validate import listener_ssl_context

__all__ = ["DERIVED_FROM_URL", "ENV_PREFIX", "LIST_KEYS", "PORT_KEYS", "TOPOLOGY_SCHEMES", "ClientAuthConfig",
           "ClientUser", "CommandsConfig", "Config", "ConfigError", "LimitsConfig", "ListenTLSConfig", "LogConfig",
           "MetricsConfig", "PoolConfig", "TLSConfig", "UpstreamConfig", "build", "listen_address",
           "listener_ssl_context", "load", "metrics_address", "parse_hostport"]
