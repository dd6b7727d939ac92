"""Operating the sidecar: admin commands, metrics and probes, reload, the HTTP endpoint, logging. It reads
snapshots of the layers below, never their private state."""
