"""Symbolic equivalence of MATH answers with `math-verify` (Hugging Face), the checker TRL and Tunix use.

`equivalent(predicted, gold)` gives math-verify's verdict, or None when it has none (the package is not
installed, the gold answer does not parse, or the library raised), so that the caller can fall back to
a rule-based check. math-verify parses LaTeX into SymPy and compares numerically, symbolically and as
sets, intervals, tuples, matrices and equations (`x=5` against `5`).

Timeouts: math-verify bounds each parse and comparison with `signal.alarm`, which only the main thread
may set. Off the main thread the checks run without a bound, so an answer that SymPy cannot settle
(`9^{9^{9^{9}}}`) can take unbounded time there; answers longer than `MAX_CHARS` skip math-verify.
"""

import functools
import threading

try:
    import math_verify
    from math_verify.errors import TimeoutException
except ImportError:
    math_verify = None

TIMEOUT_SECONDS = 5
MAX_CHARS = 1000


def available() -> bool:
    """True when the `math-verify` package can be imported."""
    return math_verify is not None


def _timeout_seconds() -> int | None:
    """math-verify's signal-based timeout on the main thread; none elsewhere, where signals fail."""
    return TIMEOUT_SECONDS if threading.current_thread() is threading.main_thread() else None


def _parse_latex(text: str) -> list:
    """`text` read as inline LaTeX: `[sympy_object, normalised_string]`, `[string]`, or `[]`."""
    config = [math_verify.LatexExtractionConfig()]
    return math_verify.parse(f"${text}$", extraction_config=config, parsing_timeout=_timeout_seconds())


def _parse_expression(text: str) -> list:
    """`text` read as a plain expression (`2**3`, `5.`), the same list form as `_parse_latex`."""
    config = [math_verify.ExprExtractionConfig()]
    return math_verify.parse(text, extraction_config=config, parsing_timeout=_timeout_seconds())


@functools.lru_cache(maxsize=4096)
def _parse_gold(gold: str) -> tuple:
    """Gold answers repeat across samples, so each is parsed once."""
    return tuple(_parse_latex(gold))


def clear_cache() -> None:
    """Forgets the parsed gold answers (for timing first parses)."""
    _parse_gold.cache_clear()


def _parse_predicted(predicted: str) -> list:
    """LaTeX first; a plain expression only when LaTeX gave no SymPy object.

    The plain-expression reader takes the first number it finds (`2` from `2\\sqrt{2}`), so using it
    beside a LaTeX parse would accept a prefix of a wrong answer.
    """
    parsed = _parse_latex(predicted)
    if any(not isinstance(item, str) for item in parsed):
        return parsed
    return parsed + _parse_expression(predicted)


def equivalent(predicted: str, gold: str) -> bool | None:
    """math-verify's verdict on `predicted` against `gold`, or None when it gives none."""
    if math_verify is None or len(predicted) > MAX_CHARS or len(gold) > MAX_CHARS:
        return None
    try:
        gold_parsed = _parse_gold(gold.strip())
        if not gold_parsed:
            return None
        predicted_parsed = _parse_predicted(predicted.strip().rstrip("."))
        return bool(
            math_verify.verify(list(gold_parsed), predicted_parsed, timeout_seconds=_timeout_seconds())
        )
    except (Exception, TimeoutException):
        return None
