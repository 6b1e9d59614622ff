"""Hints for people who mistyped a name: "did you mean 'oil_temp'?"."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(wrong: str, known: Iterable[str], listed: int = 8) -> str:
    """``"; did you mean 'x'?"`` for a close name, else ``" (known: a, b, c)"``."""
    known = sorted(set(known))
    close = difflib.get_close_matches(wrong, known, n=1, cutoff=0.6)
    if not close:  # a wrong case or separator is still close: compare normalised too
        folded = {k.lower().replace("-", "_"): k for k in known}
        match = difflib.get_close_matches(wrong.lower().replace("-", "_"), folded, n=1, cutoff=0.6)
        close = [folded[match[0]]] if match else []
    if close:
        return f"; did you mean {close[0]!r}?"
    shown = ", ".join(known[:listed]) + (", ..." if len(known) > listed else "")
    return f" (known: {shown or 'none'})"
