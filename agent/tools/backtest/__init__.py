"""Backtests (DESIGN.md 9.2): ``record`` polls the sources into a CSV, ``replay`` runs such a
CSV through a config's alarms in simulated time (the core step ``run`` uses) and counts what
would have paged, ``--compare`` beside a second config."""
