"""Micro-benchmarks of the sidecar's hot path (pytest-benchmark): ``python -m benchmarks micro``."""
