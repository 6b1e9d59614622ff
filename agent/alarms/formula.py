"""IXON alarm formulas: postfix (RPN) expressions over variables, checked at config load.

    $plc.oil_temp 80 > $plc.pump_on true == &&

Tokens are variables (``$<source>.<variable>``), literals (numbers, ``true``, ``false``,
``"strings"``) and the operators ``> >= < <= == != && || + - * /``. A formula is type-checked
with a stack of types when the config loads, so a typo, a missing operand or a comparison
of a number with a string is reported with the alarm and the token; it compiles to nested
closures (no ``eval``) that take the input values in the order of ``Formula.inputs``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.common.hints import did_you_mean

Expr = Callable[[Sequence[Any]], Any]


def _constant(value: Any) -> Expr:
    return lambda _values: value


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")

_COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_EQUAL = {"==": operator.eq, "!=": operator.ne}
_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
_LOGIC = frozenset({"&&", "||"})
OPERATORS = frozenset(_COMPARE) | frozenset(_EQUAL) | frozenset(_ARITH) | _LOGIC

#: variable type in the config -> formula type
KINDS = {"int": "number", "float": "number", "bool": "bool", "str": "string"}


class FormulaError(ValueError):
    """A formula that cannot work, naming the token (1-based) where it fails."""


@dataclass(frozen=True)
class Formula:
    text: str
    inputs: tuple[str, ...]  # variable keys, in order of first appearance
    evaluate: Expr  # values aligned with ``inputs`` -> result

    def __call__(self, values: Sequence[Any]) -> Any:
        return self.evaluate(values)


def _literal(token: str) -> tuple[str, Any] | None:
    if token in ("true", "false"):
        return "bool", token == "true"
    if token.startswith('"') and token.endswith('"') and len(token) >= 2:
        return "string", re.sub(r"\\(.)", r"\1", token[1:-1])
    if _NUMBER.match(token):
        number = float(token)
        return "number", int(number) if number.is_integer() and "." not in token else number
    return None


def compile_formula(text: str, variable_types: Mapping[str, str]) -> Formula:
    """Parse and type-check; ``variable_types`` maps ``source.variable`` to bool/int/float/str."""
    tokens = _TOKEN.findall(text)
    if not tokens:
        raise FormulaError("the formula is empty")
    inputs: list[str] = []
    stack: list[tuple[str, Expr]] = []  # (type, closure)
    for position, token in enumerate(tokens, start=1):
        where = f"token {position} {token!r}"
        if token.startswith("$"):
            key = token[1:]
            if key not in variable_types:
                hint = did_you_mean(f"${key}", (f"${k}" for k in variable_types), listed=6)
                raise FormulaError(f"{where}: no variable {key!r}{hint}")
            if key not in inputs:
                inputs.append(key)
            index = inputs.index(key)
            stack.append((KINDS[variable_types[key]], operator.itemgetter(index)))
            continue
        if token in OPERATORS:
            if len(stack) < 2:
                raise FormulaError(f"{where}: needs two operands, the stack has {len(stack)}")
            (left_kind, left), (right_kind, right) = stack[-2], stack[-1]
            del stack[-2:]
            stack.append(_apply(where, token, left_kind, left, right_kind, right))
            continue
        literal = _literal(token)
        if literal is None:
            raise FormulaError(f"{where}: not a variable ($source.name), literal or operator")
        kind, value = literal
        stack.append((kind, _constant(value)))
    if len(stack) != 1:
        raise FormulaError(f"leaves {len(stack)} values on the stack; it must end in one result")
    kind, expr = stack[0]
    if kind != "bool":
        raise FormulaError(f"the result is a {kind}; an alarm formula must end in true/false")
    return Formula(text, tuple(inputs), expr)


def _apply(
    where: str, token: str, left_kind: str, left: Expr, right_kind: str, right: Expr
) -> tuple[str, Expr]:
    def needs(expected: str) -> None:
        if left_kind != expected or right_kind != expected:
            raise FormulaError(f"{where}: needs two {expected}s, got {left_kind} and {right_kind}")

    if token in _COMPARE:
        needs("number")
        op = _COMPARE[token]
        return "bool", lambda v: op(left(v), right(v))
    if token in _ARITH:
        needs("number")
        op = _ARITH[token]
        return "number", lambda v: op(left(v), right(v))
    if token in _LOGIC:
        needs("bool")
        if token == "&&":
            return "bool", lambda v: bool(left(v) and right(v))
        return "bool", lambda v: bool(left(v) or right(v))
    if left_kind != right_kind:
        raise FormulaError(f"{where}: compares a {left_kind} with a {right_kind}")
    op = _EQUAL[token]
    return "bool", lambda v: op(left(v), right(v))
