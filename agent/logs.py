"""Logging set-up, with a last line of defence against leaking webhook secrets."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

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


#: what a log line can be about; JSON lines carry them as fields (``extra=`` in the call)
SUBJECTS = ("source", "variable", "alarm", "occurrence", "webhook")


class JsonLines(logging.Formatter):
    """One JSON object per line, for journald, Loki or any log shipper."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update({k: getattr(record, k) for k in SUBJECTS if hasattr(record, k)})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, default=str)


def setup_logging(
    verbose: bool = False, secrets: Iterable[str] = (), fmt: str = "text"
) -> RedactSecrets:
    """Human-readable lines (or JSON lines) on stderr; libraries quiet unless ``verbose``."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonLines())
    else:
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
