"""What every client session shares: the pub/sub hub, the counters, the client registry."""
