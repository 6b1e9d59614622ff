"""Logging set-up, and the redaction of secrets wherever text leaves the agent.

A webhook URL is a secret (ilert's IXON source carries its key in the path; other URLs carry
tokens in the query or a password in the userinfo) and so is an integration key. The code
names webhooks instead of showing URLs; ``Redactor`` is the net under that: it replaces every
part of a secret that could identify it, in every encoding a log line, an HTTP answer or an
exception may carry it in (raw, percent-encoded either way, JSON- or HTML-escaped, and the
base64 of a Basic ``Authorization`` header). It is applied to log records, to what delivery
stores (errors, answers of receivers) and so to what commands and the status page show.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import ipaddress
import json
import logging
import re
import sys
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit

from agent.common.retry import Throttle
from agent.common.times import iso_from_timestamp

REDACTED = "***"
_WORD = re.compile(r"^[a-z-]+$")  # "receiver", "webhooks": a path word, not a key


def _key_like(text: str) -> bool:
    return len(text) >= 20 or (len(text) >= 8 and not _WORD.match(text))


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def secret_parts(secret: str) -> set[str]:
    """The parts of a secret that identify it: the whole, and for a URL its host name (not
    an address), its password, its key-like path segments, its query values and fragment."""
    parts = {secret}
    try:
        url = urlsplit(secret)
    except ValueError:
        return parts
    if not (url.scheme and url.netloc):
        return parts
    host = url.hostname or ""
    if "." in host and not _is_address(host):  # a receiver may put a key in a subdomain
        parts.add(host)
    if url.username and _key_like(url.username):
        parts.add(url.username)
    if url.password:
        parts.add(url.password)
        userinfo = url.netloc.rpartition("@")[0]
        for pair in {userinfo, unquote(userinfo)}:
            parts.add(base64.b64encode(pair.encode()).decode())  # Authorization: Basic ...
    for segment in url.path.split("/"):
        pieces = {segment, *unquote(segment).split("/")}  # Key%2FPart: also a path once decoded
        parts.update(piece for piece in pieces if _key_like(piece))
    for pair in filter(None, re.split(r"[&;]", url.query)):
        value = pair.partition("=")[2] or pair
        if len(value) >= 6:
            parts.add(value)
    if len(url.fragment) >= 6:
        parts.add(url.fragment)
    return parts


def encodings(part: str) -> set[str]:
    """``part`` as it may appear in text: decoded, encoded, escaped."""
    forms = {part, unquote(part), unquote_plus(part)}
    for form in list(forms):
        forms |= {quote(form, safe=""), quote(form), quote_plus(form), html.escape(form)}
        forms |= {json.dumps(form)[1:-1], form.replace("/", "\\/")}
    if len(part) >= 8:
        forms.add(base64.b64encode(part.encode()).decode().rstrip("="))
    return {f for f in forms if len(f) >= 4}


class Redactor:
    """Replaces every part of the secrets it knows, in every encoding, with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        self.secrets |= {s for s in secrets if s}
        forms = {f for s in self.secrets for part in secret_parts(s) for f in encodings(part)}
        alternatives = sorted(forms, key=len, reverse=True)  # a URL before its parts
        self._pattern = (
            re.compile("|".join(map(re.escape, alternatives)), re.IGNORECASE)
            if alternatives
            else None
        )

    def __call__(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub(REDACTED, text)


class RedactSecrets(logging.Filter):
    """Redacts every record's final text, traceback included: the code already logs
    webhooks by name only, this catches a library or an exception message that echoes one."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redactor = Redactor(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        self.redactor.add(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redactor.secrets:
            return True
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self.redactor(record.getMessage()), None
        if record.exc_text:
            record.exc_text, record.exc_info = self.redactor(record.exc_text), None
        if record.stack_info:
            record.stack_info = self.redactor(record.stack_info)
        return True


#: what a log line can be about; JSON lines carry them as fields (``extra=`` in the call)
SUBJECTS = ("source", "variable", "alarm", "occurrence", "webhook")


class JsonLines(logging.Formatter):
    """One JSON object per line, for journald, Loki or any log shipper."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": iso_from_timestamp(record.created),
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


class OneLine(logging.Filter):
    """aiohttp logs a traceback for every malformed request (a port scan, a TLS hello on a
    plain port, a body that does not decompress): make it one warning line, now and then."""

    def __init__(self) -> None:
        super().__init__()
        self.throttle = Throttle()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            problem = " ".join(str(record.exc_info[1]).split())[:160]
            record.msg, record.args = "%s (%s)", (record.getMessage(), problem)
            record.exc_info, record.exc_text = None, None
        if record.levelno >= logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            return self.throttle.hit()
        return True


def one_line_logger(name: str) -> logging.Logger:
    """A logger for an aiohttp server (``AppRunner(logger=...)``) that writes ``OneLine``s."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, OneLine) for f in logger.filters):
        logger.addFilter(OneLine())
    return logger


def quiet_loop_errors(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio reports some errors once per event (``socket.accept() out of system
    resource`` on every connection attempt while file descriptors run out): log each kind
    with its traceback the first time, then one line now and then."""
    throttles: dict[str, Throttle] = {}
    logger = logging.getLogger("asyncio")

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message") or "unhandled error in the event loop")
        throttle = throttles.setdefault(message, Throttle())
        if not throttle.hit():
            return
        exc = context.get("exception")
        if throttle.count == 1:
            loop.default_exception_handler(context)
        else:
            logger.error(
                "%s (%s: %s), %d times so far", message, type(exc).__name__, exc, throttle.count
            )

    loop.set_exception_handler(handle)


def raise_file_limit() -> None:
    """Use the hard limit of open files, not the soft one (1024 under systemd): a burst of
    connections must not leave delivery without a socket."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, 1 << 20), hard))


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
    # asyncua warns of a closed connection on every teardown, and logs what the OPC UA
    # poller says in one line of its own
    logging.getLogger("asyncua").setLevel(logging.DEBUG if verbose else logging.ERROR)
    logging.getLogger("snap7").setLevel(logging.DEBUG if verbose else logging.ERROR)
    # APScheduler warns of every skipped run; the agent counts them and warns now and then
    logging.getLogger("apscheduler").setLevel(logging.INFO if verbose else logging.ERROR)
    return redact
