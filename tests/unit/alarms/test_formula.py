"""IXON postfix formulas: compiled against the variables' types, evaluated on values."""

from __future__ import annotations

from typing import Any

import pytest

from agent.alarms.formula import FormulaError, compile_formula

TYPES = {"plc.temp": "float", "plc.run": "bool", "plc.mode": "str", "plc.count": "int"}


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("$plc.temp 80 > $plc.run true == &&", (85.0, True), True),
        ("$plc.temp 80 > $plc.run true == &&", (85.0, False), False),
        ("$plc.temp 80 > $plc.run true == ||", (70.0, True), True),
        ('$plc.mode "AUTO MODE" !=', ("AUTO MODE",), False),
        ("$plc.count 2 * 10 - 0 >=", (5,), True),
        ("$plc.temp $plc.temp / 1 ==", (4.0,), True),
        ("$plc.temp 1.5e1 <", (14.9,), True),
        ("$plc.run false !=", (True,), True),
    ],
)
def test_formula_evaluation(text: str, values: tuple[Any, ...], expected: bool) -> None:
    assert compile_formula(text, TYPES)(values) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("$plc.tmp 80 >", "token 1 '$plc.tmp': no variable 'plc.tmp'; did you mean '$plc.temp'?"),
        ("$plc.temp >", "token 2 '>': needs two operands, the stack has 1"),
        ("$plc.temp 80 > &&", "token 4 '&&': needs two operands, the stack has 1"),
        ("$plc.temp true >", "token 3 '>': needs two numbers, got number and bool"),
        ('$plc.mode 3 ==', "token 3 '==': compares a string with a number"),
        ("$plc.temp 80 > 5 &&", "token 5 '&&': needs two bools, got bool and number"),
        ("$plc.temp 80", "leaves 2 values on the stack; it must end in one result"),
        ("$plc.temp 80 +", "the result is a number; an alarm formula must end in true/false"),
        ("$plc.temp 80 >> ", "token 3 '>>': not a variable ($source.name), literal or operator"),
        ("", "the formula is empty"),
    ],
)  # fmt: skip
def test_formula_errors_name_the_token(text: str, message: str) -> None:
    with pytest.raises(FormulaError) as info:
        compile_formula(text, TYPES)
    assert str(info.value) == message


def test_a_formula_reads_its_variables_in_order_of_first_use() -> None:
    formula = compile_formula("$plc.run true == $plc.temp 80 > &&", TYPES)
    assert formula.inputs == ("plc.run", "plc.temp")
    assert formula((True, 85.0)) is True and formula((True, 70.0)) is False
