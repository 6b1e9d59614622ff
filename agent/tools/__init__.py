"""The integrator's tools that are not the running agent: ``import-ixon`` (IXON's CSV
exports to ``agent.toml``)."""
