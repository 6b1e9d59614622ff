"""What every command shares: exit codes, the log, loading the config."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from agent.config import Config, config_path, load_config

log = logging.getLogger("agent")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Commands = argparse._SubParsersAction
#: ``command(name, help)``: a subcommand with the options every command takes
Command = Callable[[str, str], argparse.ArgumentParser]


def load_from(path_arg: str | None) -> Config:
    """The config of ``--config``, else ``$AGENT_CONFIG``, else ``./agent.toml``."""
    return load_config(config_path(path_arg))
