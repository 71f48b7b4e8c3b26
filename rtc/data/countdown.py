"""Countdown: combine given numbers with + - * / to reach a target.

The task of the small-scale DeepSeek-R1-Zero reproductions (TinyZero, Pan et al. 2025; numbers in
1..99, three or four of them). Difficulty 1 has 3 numbers and difficulty 2 has 4 (count = level + 2).
The target is built from a random expression over all the numbers with positive integer
intermediate results, so every problem is solvable, and the gold answer is that expression: it uses
every given number exactly once.

An answer is correct when it is an arithmetic expression, uses each given number AT MOST once (a
subset is allowed), and equals the target exactly. This is the rule the question states ("each number
at most once") and the rule of the Countdown game; TinyZero's prompt says the same ("each number can
only be used once") but its reward (`validate_equation`) checks that the sorted numbers of the
equation equal the given ones, i.e. EXACTLY once, every number used. The checker follows the question
so that a correct answer to the stated problem is never marked wrong. The two differ only on answers
that leave a number out, possible whenever a subset reaches the target (at least in the ~1.6% of
generated problems whose target is one of the numbers), so accuracy here is >= TinyZero's exact-use
score on the same outputs; tests pin the rule (`test_countdown_checker`: "75/(4-1)" leaves 25 out).
Splits are assigned by hashing the sorted numbers and the target (see `rtc.data.splits`).
"""

import collections
import dataclasses
import json
import operator as op
from collections.abc import Iterator, Sequence

import numpy as np

from rtc.data import safe_eval, splits

LEVELS = (1, 2)
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
_LEAF_PRECEDENCE = 3
_APPLY = {"+": op.add, "-": op.sub, "*": op.mul, "/": op.floordiv}  # "/" only where exact


@dataclasses.dataclass(frozen=True)
class _Node:
    value: int
    text: str
    precedence: int


def _combine(left: _Node, operator: str, right: _Node) -> _Node:
    """`left operator right`, adding only the parentheses precedence needs."""
    precedence = _PRECEDENCE[operator]
    left_text = f"({left.text})" if left.precedence < precedence else left.text
    wrap_right = right.precedence < precedence or (right.precedence == precedence and operator in "-/")
    right_text = f"({right.text})" if wrap_right else right.text
    value = _APPLY[operator](left.value, right.value)
    return _Node(value, f"{left_text}{operator}{right_text}", precedence)


def _allowed_operators(left: int, right: int) -> list[str]:
    """Operators that keep the intermediate result a positive integer."""
    allowed = ["+", "*"]
    if left > right:
        allowed.append("-")
    if right > 0 and left % right == 0:
        allowed.append("/")
    return allowed


def sample_solution(rng: np.random.Generator, numbers: Sequence[int]) -> tuple[_Node, list[str], list[int]]:
    """A random expression over all `numbers`: (root, step texts like `25+75=100`, step values)."""
    pool = [_Node(number, str(number), _LEAF_PRECEDENCE) for number in numbers]
    steps, values = [], []
    while len(pool) > 1:
        i, j = (int(k) for k in rng.choice(len(pool), size=2, replace=False))
        left, right = pool[i], pool[j]
        allowed = _allowed_operators(left.value, right.value)
        operator = allowed[int(rng.integers(len(allowed)))]
        node = _combine(left, operator, right)
        steps.append(f"{left.value}{operator}{right.value}={node.value}")
        values.append(node.value)
        pool = [node for k, node in enumerate(pool) if k not in (i, j)] + [node]
    return pool[0], steps, values


def question_text(numbers: Sequence[int], target: int) -> str:
    """The problem statement (TinyZero wording, one line)."""
    listed = ", ".join(str(number) for number in numbers)
    return (
        f"Using the numbers [{listed}], create an expression that equals {target}. "
        "You can use + - * / and each number at most once."
    )


def sample_record(
    rng: np.random.Generator, level: int, max_number: int = 99, max_target: int = 1000
) -> tuple[str, dict]:
    """`(split_key, record)` for one solvable problem with `level + 2` numbers."""
    count = level + 2
    while True:
        numbers = [int(x) for x in rng.integers(1, max_number + 1, size=count)]
        root, steps, values = sample_solution(rng, numbers)
        if 1 <= root.value <= max_target:
            break
    shown = [int(x) for x in rng.permutation(numbers)]
    record = {
        "question": question_text(shown, root.value),
        "steps": steps,
        "step_values": [str(value) for value in values],
        "answer": root.text,
        "difficulty": level,
        "meta": json.dumps({"numbers": shown, "target": root.value}),
    }
    return f"{sorted(numbers)}->{root.value}", record


def example(
    split: str,
    index: int,
    seed: int,
    levels: Sequence[int] = LEVELS,
    max_number: int = 99,
    max_target: int = 1000,
) -> dict:
    """Example `index` of `split`; its level is `levels[index % len(levels)]`."""
    level = levels[index % len(levels)]
    return splits.draw_in_split(
        lambda rng: sample_record(rng, level, max_number, max_target), split, seed, index
    )


def generate(
    split: str,
    num_examples: int,
    seed: int,
    levels: Sequence[int] = LEVELS,
    max_number: int = 99,
    max_target: int = 1000,
) -> Iterator[dict]:
    """`num_examples` records of `split`, spread evenly over `levels` (round robin)."""
    splits.check_split(split)
    splits.check_levels(levels, "count of numbers = level + 2")
    for index in range(num_examples):
        yield example(split, index, seed, levels, max_number, max_target)


def is_correct(predicted: str | None, example_record: dict) -> bool:
    """Parsed safely, uses each given number at most once, and equals the target exactly."""
    if predicted is None:
        return False
    meta = json.loads(example_record["meta"])
    try:
        used = collections.Counter(safe_eval.numbers_used(predicted))
        value = safe_eval.evaluate(predicted)
    except safe_eval.UnsafeExpressionError:
        return False
    return used <= collections.Counter(meta["numbers"]) and value == meta["target"]


def vote_key(expression: str | None) -> str | None:
    """A Countdown answer's vote: its exact value and the sorted numbers it spends ("25 from 1,4,25"), or
    "unparsed: TEXT" when the safe evaluator rejects it. `is_correct` depends only on these two (numbers
    within the given ones, value equal to the target), so all answers of one key are graded alike."""
    if expression is None:
        return None
    try:
        value = safe_eval.evaluate(expression)
        numbers = sorted(safe_eval.numbers_used(expression))
    except safe_eval.UnsafeExpressionError:
        return f"unparsed: {expression}"
    return f"{value} from {','.join(str(x) for x in numbers)}"
