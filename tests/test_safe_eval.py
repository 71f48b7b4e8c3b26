"""Tests for the safe arithmetic evaluator: hypothesis against a Fraction reference, and rejections."""

import operator as op
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtc.data import safe_eval

_APPLY = {"+": op.add, "-": op.sub, "*": op.mul, "/": op.truediv}


def _expressions(max_leaves: int = 8):
    """(text, value or None on division by zero, nesting depth) from random trees, parenthesised."""
    leaves = st.integers(0, 999).map(lambda n: (str(n), Fraction(n), 0))

    def extend(children):
        binary = st.tuples(children, st.sampled_from("+-*/"), children, st.booleans()).map(_binary)
        negated = children.map(lambda c: (f"-({c[0]})", None if c[1] is None else -c[1], c[2] + 2))
        return binary | negated

    return st.recursive(leaves, extend, max_leaves=max_leaves)


def _binary(parts):
    (left_text, left, left_depth), operator, (right_text, right, right_depth), spaced = parts
    space = " " if spaced else ""
    text = f"({left_text}){space}{operator}{space}({right_text})"
    depth = max(left_depth, right_depth) + 1
    if left is None or right is None or (operator == "/" and right == 0):
        return text, None, depth
    return text, _APPLY[operator](left, right), depth


@settings(max_examples=200, deadline=None)
@given(_expressions())
def test_matches_fraction_reference(case):
    text, expected, depth = case
    if len(text) > safe_eval.MAX_LENGTH:
        with pytest.raises(safe_eval.UnsafeExpressionError, match="longer than"):
            safe_eval.evaluate(text)
    elif expected is None or depth > safe_eval.MAX_DEPTH:
        with pytest.raises(safe_eval.UnsafeExpressionError):
            safe_eval.evaluate(text)
    else:
        assert safe_eval.evaluate(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("37+8*4-12", Fraction(57)),
        ("2-3-4", Fraction(-5)),
        ("8/4/2", Fraction(1)),
        ("(25+75)/4", Fraction(25)),
        ("7/2", Fraction(7, 2)),
        ("1.5*-2", Fraction(-3)),
        ("--3", Fraction(3)),
        (" 2 *\t(3 + 4) ", Fraction(14)),
        ("0.1+0.2", Fraction(3, 10)),
    ],
)
def test_known_values(text, expected):
    assert safe_eval.evaluate(text) == expected


def test_division_by_zero_has_its_own_error():
    with pytest.raises(safe_eval.DivisionByZeroError, match="division by zero"):
        safe_eval.evaluate("5/(3-3)")
    assert issubclass(safe_eval.DivisionByZeroError, safe_eval.UnsafeExpressionError)
    assert issubclass(safe_eval.UnsafeExpressionError, ValueError)


@pytest.mark.parametrize(
    "text, message",
    [
        ("2**3", r"\*\*"),
        ("__import__('os')", "names"),
        ("abs(3)", "names"),
        ("x+1", "names"),
        ("(1).real", "not allowed"),
        ("[1, 2]", "not allowed"),
        ("'1'+'2'", "not allowed"),
        ("1;2", "not allowed"),
        ("1,000", "not allowed"),
        ("", "empty"),
        ("1+", "expected a number"),
        ("(1+2", r"expected '\)'"),
        ("1 2", "unexpected"),
        ("3.", "malformed number"),
        ("1" * 201, "longer than"),
        ("(" * 40 + "1" + ")" * 40, "nesting deeper"),
        ("-" * 40 + "1", "nesting deeper"),
        ("\uff11+1", "not allowed"),
    ],
)
def test_rejects_unsafe_text(text, message):
    with pytest.raises(safe_eval.UnsafeExpressionError, match=message):
        safe_eval.evaluate(text)


@settings(max_examples=100, deadline=None)
@given(
    st.text(max_size=30),
    st.sampled_from(["a", "Z", "**", "__", ";", "=", "[", "'", "lambda", "%", "\\"]),
    st.text(max_size=30),
)
def test_rejects_any_text_with_forbidden_pieces(prefix, forbidden, suffix):
    with pytest.raises(safe_eval.UnsafeExpressionError):
        safe_eval.evaluate(prefix + forbidden + suffix)


def test_numbers_used():
    assert safe_eval.numbers_used("(25+75)/4-25") == [25, 75, 4, 25]
    assert safe_eval.numbers_used("-(3)") == [3]
    with pytest.raises(safe_eval.UnsafeExpressionError, match="decimal"):
        safe_eval.numbers_used("2.5+1")
    with pytest.raises(safe_eval.UnsafeExpressionError):
        safe_eval.numbers_used("a+1")
