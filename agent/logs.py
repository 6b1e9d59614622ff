"""Logging set-up, with a last line of defence against leaking webhook secrets."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

REDACTED = "***"


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced (longest first, so a URL goes before its key)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


class RedactSecrets(logging.Filter):
    """Replaces every known secret in a record's final text; the code already logs webhooks
    by name only, this catches a library or an exception message that echoes a URL."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = redact(record.getMessage(), self.secrets), None
        if record.exc_text:
            record.exc_text, record.exc_info = redact(record.exc_text, self.secrets), None
        return True


def setup_logging(verbose: bool = False, secrets: Iterable[str] = ()) -> RedactSecrets:
    """Human-readable lines on stderr; libraries kept quiet unless ``verbose``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    redact = RedactSecrets(secrets)
    handler.addFilter(redact)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # httpx logs every request URL at INFO; pymodbus logs connect failures we report ourselves.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    # APScheduler warns of every skipped run; the agent counts them and warns now and then
    logging.getLogger("apscheduler").setLevel(logging.INFO if verbose else logging.ERROR)
    return redact
