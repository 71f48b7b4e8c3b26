"""MATH answer checking: math-verify accepts the equivalent-pair table and rejects the wrong pairs; the
rule-based fallback keeps its known verdicts when math-verify is missing or raises; never raises on garbage."""

import json
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.math_answers import EQUIVALENT, WRONG, math500_table, pair_table
from rtc.data import answers, math_verify_check

needs_math_verify = pytest.mark.skipif(not math_verify_check.available(), reason="math-verify not installed")

GARBAGE = [
    "",
    " ",
    "garbage",
    "\\frac{",
    "}}}}",
    "$$$",
    "\\\\" * 200,
    "(" * 2000,
    "\\frac{1}{0}",
    "1/0",
    "\\begin{pmatrix}",
    "^^^_",
    "\x00\x01",
    "\N{SLIGHTLY SMILING FACE}",
    "<answer>5</answer>",
]

# what `normalized_equal` (no math-verify) accepts and rejects
FALLBACK = [
    ("(3,\\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("\\dfrac{1}{2}", "\\frac{1}{2}", True),
    ("\\tfrac{1}{3}", "\\frac13", False),
    ("90", "90^\\circ", True),
    ("864", "864 \\mbox{ inches}^2", True),
    ("1,000", "1000", True),
    ("18.00", "18", True),
    ("0.5", "1/2", True),
    ("\\$18.90", "18.90", True),
    ("5.", "5", True),
    ("0.5", "\\frac12", False),
    ("x=5", "5", False),
    ("C", "\\text{(C)}", False),
    ("2\\sqrt{2}", "\\sqrt{8}", False),
    ("2", "3", False),
]


def test_tables_are_large_enough():
    assert len(EQUIVALENT) >= 28 and len(WRONG) >= 15


@needs_math_verify
@pytest.mark.parametrize("predicted, gold", EQUIVALENT)
def test_math_verify_accepts_equivalent_answers(predicted, gold):
    assert math_verify_check.equivalent(predicted, gold) is True
    assert answers.math_equal(predicted, gold)


@needs_math_verify
@pytest.mark.parametrize("predicted, gold", WRONG)
def test_math_verify_rejects_wrong_answers(predicted, gold):
    assert math_verify_check.equivalent(predicted, gold) is False
    assert not answers.math_equal(predicted, gold)


@pytest.mark.parametrize("predicted", GARBAGE)
def test_garbage_is_rejected_without_raising(predicted):
    assert answers.math_equal(predicted, "5") is False
    assert answers.math_equal(None, "5") is False


@pytest.mark.parametrize("predicted, gold, equal", FALLBACK)
def test_fallback_without_math_verify(monkeypatch, predicted, gold, equal):
    monkeypatch.setattr(math_verify_check, "math_verify", None)
    assert not math_verify_check.available()
    assert math_verify_check.equivalent(predicted, gold) is None
    assert answers.math_equal(predicted, gold) == equal


@needs_math_verify
def test_fallback_when_math_verify_raises(monkeypatch):
    def broken(text):
        raise RuntimeError("parser failure")

    monkeypatch.setattr(math_verify_check, "_parse_predicted", broken)
    assert math_verify_check.equivalent("0.5", "\\frac12") is None
    assert answers.math_equal("0.5", "\\frac12") is False  # the normaliser's verdict
    assert answers.math_equal("\\dfrac{1}{2}", "\\frac{1}{2}") is True


def test_long_answers_skip_math_verify():
    long_sum = "+".join(["1"] * 600)  # 1199 characters, over MAX_CHARS
    assert math_verify_check.equivalent(long_sum, "600") is None
    assert answers.math_equal(long_sum, "600") is False


@needs_math_verify
def test_off_the_main_thread_runs_without_signals():
    results = []

    def check():
        results.append((math_verify_check._timeout_seconds(), answers.math_equal("0.5", "\\frac12")))

    worker = threading.Thread(target=check)
    worker.start()
    worker.join()
    assert results == [(None, True)]
    assert math_verify_check._timeout_seconds() == math_verify_check.TIMEOUT_SECONDS


@needs_math_verify
@settings(max_examples=60, deadline=None)
@given(st.integers(-(10**6), 10**6), st.integers(1, 10**4))
def test_fractions_equal_their_decimals_and_not_neighbours(numerator, denominator):
    value = numerator / denominator
    fraction = f"\\frac{{{numerator}}}{{{denominator}}}"
    if value == round(value, 6):  # math-verify compares floats to 6 decimals
        assert answers.math_equal(f"{value:.6f}", fraction)
    assert not answers.math_equal(f"\\frac{{{numerator + 1}}}{{{denominator}}}", fraction)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="0123456789+-/_{}()[]\\,.=x $%", max_size=24))
def test_any_short_text_gives_a_bool(predicted):
    assert isinstance(answers.math_equal(predicted, "\\frac{1}{2}"), bool)


@needs_math_verify
def test_experiment_tables_on_the_committed_math500_copy():
    path = Path(__file__).parent / "data" / "math500" / "test.jsonl"
    records = [json.loads(line) for line in path.open()]
    assert (
        pair_table()[-1]
        == f"| math_equal | {len(EQUIVALENT)}/{len(EQUIVALENT)} | {len(WRONG)}/{len(WRONG)} |"
    )
    counts, speed = math500_table(records)
    assert counts[2:4] == ["| gold vs gold | 40 | 40 | 40 | 40 |", "| boxed vs gold | 40 | 40 | 40 | 40 |"]
    assert len(speed) == 2 + 3 * 3
