"""The state database's file and folder: transactions on it, which process holds it (a
boot's id, a live pid), and whether a folder can hold it at all."""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
from pathlib import Path


def state_dir_problem(directory: Path, probe: bool = True) -> str | None:
    """Why ``directory`` cannot hold the state database, found without leaving anything
    behind; ``check`` probes by creating (and removing) a directory where ``run`` would
    create its own, so both reject the same places (under a file, in /proc, read-only)."""
    try:  # whatever the OS refuses (a name too long, no permission, a loop) is located
        existing = directory
        while True:  # the nearest folder that exists; any answer but "no such file" counts
            try:
                os.stat(existing)
                break
            except FileNotFoundError:
                if existing == existing.parent:
                    break
                existing = existing.parent
        if not existing.is_dir():
            return f"agent.state_dir: cannot use {directory}: {existing} is not a directory"
        if probe:
            os.rmdir(tempfile.mkdtemp(prefix=".ixon-agent-probe-", dir=existing))
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):  # full: not a config problem
            return f"agent.state_dir: cannot use {directory}: {exc.strerror or exc}"
    return None


def boot_id() -> str | None:
    """This boot's id (Linux); monotonic clocks of different boots cannot be compared."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on an exception); nests flatly.
    A failed COMMIT (a full disk) rolls back what SQLite has not already rolled back."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> sqlite3.Connection:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.outer = True
        return self.db

    def __exit__(self, kind: object, *_: object) -> None:
        if not self.outer:
            return
        if kind is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
