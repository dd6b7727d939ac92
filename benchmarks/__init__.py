"""Benchmarks of redis-sidecar: direct versus proxied over a simulated WAN, the demo, and hot-path micro-benchmarks.

``python -m benchmarks`` runs the comparison and writes results.json, report.md and PNG plots; ``python -m benchmarks
demo`` runs the chatroom demo; ``python -m benchmarks.wan`` is the WAN relay on its own.
"""
