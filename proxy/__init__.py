"""redis-sidecar: a local Redis-protocol proxy; many short-lived clients share a few persistent upstream connections."""

__version__ = "0.1.0"
