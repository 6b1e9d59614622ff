"""IXON-style public ids: 12 characters of [A-Za-z0-9] (base 62)."""

from __future__ import annotations

import hashlib
import secrets
import string

ALPHABET = string.ascii_letters + string.digits


def _base62(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        chars.append(ALPHABET[digit])
    return "".join(chars)


def new_id(length: int = 12) -> str:
    """A random id, one per message or alarm occurrence.

    One call to the OS's random source, then base 62: a byte per character carries more
    than the 5.95 bits a character needs, so the ids are uniform for all practical purposes.
    """
    return _base62(int.from_bytes(secrets.token_bytes(length), "big"), length)


def short_id(*parts: str) -> str:
    """A stable id derived from ``parts``: the same alarm keeps its id across restarts."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()[:10]
    return _base62(int.from_bytes(digest, "big"), 12)
