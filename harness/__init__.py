"""Test and benchmark harness: real servers and the sidecar as processes. The sidecar itself never imports this."""
