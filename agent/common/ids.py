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


#: a random byte below 248 (4 x 62) picks a character uniformly; the rest are drawn again
_PICK = ALPHABET * 4


def new_id(length: int = 12) -> str:
    """A random id, one per message or alarm occurrence: each character from one byte of
    the OS's random source (uniform: bytes past 248 are skipped), a few microseconds."""
    chars: list[str] = []
    while len(chars) < length:
        chars += [_PICK[b] for b in secrets.token_bytes(length + 4) if b < 248]
    return "".join(chars[:length])


def short_id(*parts: str) -> str:
    """A stable id derived from ``parts``: the same alarm keeps its id across restarts."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()[:10]
    return _base62(int.from_bytes(digest, "big"), 12)
