"""A safe evaluator for arithmetic expressions (never Python `eval`).

Grammar (recursive descent, usual precedence, left associative):

    expr    := term (('+' | '-') term)*
    term    := unary (('*' | '/') unary)*
    unary   := '-' unary | primary
    primary := NUMBER | '(' expr ')'
    NUMBER  := digits ['.' digits]

Results are exact `fractions.Fraction`s. Everything else (names, `**`, calls, brackets, strings,
input over `MAX_LENGTH` characters, nesting over `MAX_DEPTH`) raises `UnsafeExpressionError`.
"""

import dataclasses
from fractions import Fraction

MAX_LENGTH = 200
MAX_DEPTH = 32

_OPERATORS = "+-*/()"


class UnsafeExpressionError(ValueError):
    """The text is not a plain arithmetic expression this evaluator accepts."""


class DivisionByZeroError(UnsafeExpressionError, ZeroDivisionError):
    """The expression divides by zero."""


@dataclasses.dataclass(frozen=True)
class Token:
    """One lexical token: `kind` is 'number' or the operator character itself."""

    kind: str
    text: str
    position: int  # 0-based character offset in the expression


def _scan_number(expr: str, start: int) -> int:
    """Returns the end offset of the number literal starting at `start`."""
    end = start
    while end < len(expr) and expr[end].isascii() and expr[end].isdigit():
        end += 1
    if end < len(expr) and expr[end] == ".":
        fraction_end = end + 1
        while fraction_end < len(expr) and expr[fraction_end].isascii() and expr[fraction_end].isdigit():
            fraction_end += 1
        if fraction_end == end + 1:
            raise UnsafeExpressionError(f"malformed number at position {start}: {expr[start:fraction_end]!r}")
        end = fraction_end
    return end


def _reject(expr: str, position: int) -> UnsafeExpressionError:
    char = expr[position]
    if char.isalpha() or char == "_":
        return UnsafeExpressionError(f"names are not allowed (position {position}): {expr!r}")
    return UnsafeExpressionError(f"character {char!r} at position {position} is not allowed: {expr!r}")


def tokenize(expr: str) -> list[Token]:
    """Splits `expr` into number and operator tokens; rejects any other character."""
    if len(expr) > MAX_LENGTH:
        raise UnsafeExpressionError(f"expression longer than {MAX_LENGTH} characters ({len(expr)})")
    tokens = []
    position = 0
    while position < len(expr):
        char = expr[position]
        if char in " \t\r\n":
            position += 1
        elif char.isascii() and char.isdigit():
            end = _scan_number(expr, position)
            tokens.append(Token("number", expr[position:end], position))
            position = end
        elif expr.startswith("**", position):
            raise UnsafeExpressionError(f"the power operator '**' is not allowed (position {position})")
        elif char in _OPERATORS:
            tokens.append(Token(char, char, position))
            position += 1
        else:
            raise _reject(expr, position)
    return tokens


class _Parser:
    """Recursive-descent evaluation over a token list; one instance per expression."""

    def __init__(self, tokens: list[Token], expr: str):
        self._tokens = tokens
        self._expr = expr
        self._index = 0
        self._depth = 0

    def _peek(self) -> Token | None:
        return self._tokens[self._index] if self._index < len(self._tokens) else None

    def _advance(self) -> Token:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def _error(self, message: str) -> UnsafeExpressionError:
        token = self._peek()
        where = f"position {token.position}" if token else "end of input"
        return UnsafeExpressionError(f"{message} at {where}: {self._expr!r}")

    def parse(self) -> Fraction:
        if not self._tokens:
            raise UnsafeExpressionError("empty expression")
        value = self._expression()
        if self._peek() is not None:
            raise self._error(f"unexpected {self._peek().text!r}")
        return value

    def _expression(self) -> Fraction:
        value = self._term()
        while (token := self._peek()) is not None and token.kind in "+-":
            self._advance()
            right = self._term()
            value = value + right if token.kind == "+" else value - right
        return value

    def _term(self) -> Fraction:
        value = self._unary()
        while (token := self._peek()) is not None and token.kind in "*/":
            self._advance()
            right = self._unary()
            if token.kind == "*":
                value = value * right
            elif right == 0:
                raise DivisionByZeroError(f"division by zero at position {token.position}: {self._expr!r}")
            else:
                value = value / right
        return value

    def _nested(self, parse):
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise self._error(f"nesting deeper than {MAX_DEPTH}")
        value = parse()
        self._depth -= 1
        return value

    def _unary(self) -> Fraction:
        token = self._peek()
        if token is not None and token.kind == "-":
            self._advance()
            return -self._nested(self._unary)
        return self._primary()

    def _primary(self) -> Fraction:
        token = self._peek()
        if token is None:
            raise self._error("expected a number or '('")
        if token.kind == "number":
            self._advance()
            return Fraction(token.text)
        if token.kind == "(":
            self._advance()
            value = self._nested(self._expression)
            if (closing := self._peek()) is None or closing.kind != ")":
                raise self._error("expected ')'")
            self._advance()
            return value
        raise self._error(f"unexpected {token.text!r}")


def evaluate(expr: str) -> Fraction:
    """Exact value of an arithmetic expression such as `(25+75)/4` or `1.5*-2`."""
    return _Parser(tokenize(expr), expr).parse()


def numbers_used(expr: str) -> list[int]:
    """The integer literals of `expr` in order of appearance (Countdown: which numbers were used).

    Decimal literals raise `UnsafeExpressionError`: they cannot be one of the given integers.
    """
    numbers = []
    for token in tokenize(expr):
        if token.kind != "number":
            continue
        if "." in token.text:
            raise UnsafeExpressionError(
                f"decimal literal {token.text!r} where integers are expected: {expr!r}"
            )
        numbers.append(int(token.text))
    return numbers
