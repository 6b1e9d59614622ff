"""Observing the agent: log lines (redacted), Prometheus metrics and the status page, all
reading a ``Snapshot`` of the running agent rather than its objects."""
