"""redis-sidecar: a local Redis-protocol proxy that multiplexes short-lived clients onto persistent upstream connections."""

__version__ = "0.1.0"
