"""The runtime: wires the stages for one config, runs them on APScheduler (one job per
source, never overlapping itself), watches the clocks, and reloads the config on SIGHUP."""
