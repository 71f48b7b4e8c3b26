"""Reading final answers out of model text and comparing them with gold answers.

MATH answers are compared with `math-verify`'s symbolic equivalence when that package is installed
(`math_verify_check`); `normalize_latex` is the light rule-based fallback (in the spirit of Hendrycks
et al. 2021's `is_equiv`).
"""

import re
from fractions import Fraction

from rtc.data import math_verify_check
from rtc.data.special import ANSWER_END, ANSWER_START

_ANSWER_BLOCK = re.compile(re.escape(ANSWER_START) + "(.*?)" + re.escape(ANSWER_END), re.DOTALL)
_GSM8K_FINAL = re.compile(r"####\s*([^\n]*)")
_MBOX_UNIT = re.compile(r"\\mbox\{[^{}]*\}(\^\{?\d\}?)?")
_DEGREES = re.compile(r"\^\{?\\circ\}?")


def extract_answer(completion: str) -> str | None:
    """Stripped text inside the last complete `<answer>...</answer>` block, or None."""
    blocks = _ANSWER_BLOCK.findall(completion)
    return blocks[-1].strip() if blocks else None


def extract_gsm8k_final(text: str) -> str | None:
    """The number after the last `#### ` (GSM8K's final-answer mark), commas removed, or None."""
    finals = _GSM8K_FINAL.findall(text)
    if not finals:
        return None
    final = finals[-1].strip().replace(",", "")
    return final or None


def parse_number(text: str) -> Fraction | None:
    """`" $1,000. "` -> `Fraction(1000)`; `"3/4"` -> `Fraction(3, 4)`; None if not a plain number."""
    cleaned = text.strip().replace(",", "").replace("\\$", "").replace("$", "").strip().rstrip(".")
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)(/\d+)?", cleaned):
        return None
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def numbers_equal(predicted: str | None, gold: str) -> bool:
    """Numeric equality when both parse as numbers, else equality of the stripped strings."""
    if predicted is None:
        return False
    predicted_value, gold_value = parse_number(predicted), parse_number(gold)
    if predicted_value is not None and gold_value is not None:
        return predicted_value == gold_value
    return predicted.strip() == gold.strip()


def normalize_latex(text: str) -> str:
    """Drops spacing and presentation-only LaTeX: `\\left( 3, \\dfrac{\\pi}{2} \\right)` -> `(3,\\frac{\\pi}{2})`."""
    text = _MBOX_UNIT.sub("", text)
    text = _DEGREES.sub("", text)
    for token in ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\$", "$"):
        text = text.replace(token, "")
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = re.sub(r"\s+", "", text)
    return text.rstrip(".")


def normalized_equal(predicted: str, gold: str) -> bool:
    """Equal after `normalize_latex`, or numerically equal: the check used without math-verify."""
    predicted, gold = normalize_latex(predicted), normalize_latex(gold)
    return predicted == gold or numbers_equal(predicted, gold)


def math_equal(predicted: str | None, gold: str) -> bool:
    """MATH answer check: math-verify's verdict when it gives one, else `normalized_equal`.

    `0.5` equals `\\frac12`, `x=5` equals `5`, `\\text{(C)}` equals `C`; never raises on model output.
    math-verify's False stands even where the normaliser would accept: the normaliser's one known false
    accept (`1,2` for `12`, commas dropped) is what it would add.
    """
    if predicted is None:
        return False
    verdict = math_verify_check.equivalent(predicted, gold)
    if verdict is not None:
        return verdict
    return normalized_equal(predicted, gold)
