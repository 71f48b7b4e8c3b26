"""Multi-step integer arithmetic, the warm-up task for the SFT cold start.

Difficulty grows with both knobs, the number of operations and the operand size (`LEVEL_SPECS`):
level 1 is one operation on single digits, level 5 four operations on numbers up to 99. Operations
are drawn from `+ - *` with the usual precedence. The gold chain applies
one operation per step in evaluation order (products left to right, then sums left to right):
`Compute 37+8*4-12.` -> `8*4=32`, `37+32=69`, `69-12=57`; answer `57`.
Splits are assigned by hashing the question text (see `rtc.data.splits`).
"""

import dataclasses
import json
import re
from collections.abc import Iterator, Sequence

import numpy as np

from rtc.data import splits

LEVELS = (1, 2, 3, 4, 5)
# level -> (number of operations, largest operand); levels above 5 add operations on 0..99.
LEVEL_SPECS = {1: (1, 9), 2: (2, 9), 3: (2, 99), 4: (3, 99), 5: (4, 99)}
_OPERATORS = ("+", "-", "*")
_INTEGER = re.compile(r"[+-]?\d+")


def level_spec(level: int, max_operand: int | None = None) -> tuple[int, int]:
    """`(operations, largest operand)` of `level`; `max_operand` overrides the level's operand size."""
    operations, largest = LEVEL_SPECS.get(level, (level - 1, 99))
    return operations, largest if max_operand is None else max_operand


def sample_problem(
    rng: np.random.Generator, level: int, max_operand: int | None = None, max_multiplier: int = 9
) -> tuple[list[int], list[str]]:
    """The operators and operands of a `level` problem; the right operand of `*` is at most `max_multiplier`."""
    num_operations, max_operand = level_spec(level, max_operand)
    operators = [_OPERATORS[int(rng.integers(len(_OPERATORS)))] for _ in range(num_operations)]
    operands = [int(rng.integers(max_operand + 1))]
    for operator in operators:
        high = min(max_multiplier, max_operand) if operator == "*" else max_operand
        operands.append(int(rng.integers(high + 1)))
    return operands, operators


def expression_text(operands: Sequence[int], operators: Sequence[str]) -> str:
    """`[37, 8, 4, 12], ['+', '*', '-']` -> `'37+8*4-12'`."""
    pieces = [str(operands[0])]
    for operator, operand in zip(operators, operands[1:]):
        pieces += [operator, str(operand)]
    return "".join(pieces)


@dataclasses.dataclass(frozen=True)
class Mistake:
    """One slip in a chain: at step `step` (0-based, evaluation order) either the result is off by `delta`
    (`kind="value"`: `16*9=154`) or the right operand is misread as itself plus `delta` and the step is then
    computed correctly (`kind="operand"`: `90*5=450` for `90*1`). Later steps carry the wrong value."""

    step: int
    kind: str
    delta: int


MISTAKE_KINDS = ("value", "operand")


def chain_steps(
    operands: Sequence[int], operators: Sequence[str], mistake: Mistake | None = None
) -> list[tuple[str, int]]:
    """`(step_text, value)` per operation in evaluation order, e.g. `('8*4=32', 32)`; with `mistake`, the
    chain a solver writes who slips once at that step and carries the slip through."""

    def apply(left: int, operator: str, right: int) -> tuple[str, int]:
        index = len(steps)
        slip = mistake is not None and mistake.step == index
        if slip and mistake.kind == "operand":
            right += mistake.delta
        result = left * right if operator == "*" else left + right if operator == "+" else left - right
        if slip and mistake.kind == "value":
            result += mistake.delta
        return f"{left}{operator}{right}={result}", result

    steps = []
    terms = [operands[0]]
    signs = []
    for operator, operand in zip(operators, operands[1:]):
        if operator == "*":
            steps.append(apply(terms[-1], "*", operand))
            terms[-1] = steps[-1][1]
        else:
            signs.append(operator)
            terms.append(operand)
    value = terms[0]
    for sign, term in zip(signs, terms[1:]):
        steps.append(apply(value, sign, term))
        value = steps[-1][1]
    return steps


def gold_steps(operands: Sequence[int], operators: Sequence[str]) -> list[tuple[str, int]]:
    """`(step_text, value)` per operation in evaluation order, e.g. `('8*4=32', 32)`."""
    return chain_steps(operands, operators)


def make_record(operands: Sequence[int], operators: Sequence[str], level: int | None = None) -> dict:
    """The common task record for one problem."""
    steps = gold_steps(operands, operators)
    return {
        "question": f"Compute {expression_text(operands, operators)}.",
        "steps": [text for text, _ in steps],
        "step_values": [str(value) for _, value in steps],
        "answer": str(steps[-1][1]),
        "difficulty": len(operators) if level is None else level,
        "meta": json.dumps({"operands": list(operands), "operators": list(operators)}),
    }


def example(
    split: str,
    index: int,
    seed: int,
    levels: Sequence[int] = LEVELS,
    max_operand: int | None = None,
    max_multiplier: int = 9,
) -> dict:
    """Example `index` of `split`; its level is `levels[index % len(levels)]`."""
    level = levels[index % len(levels)]

    def sample(rng):
        record = make_record(*sample_problem(rng, level, max_operand, max_multiplier), level)
        return record["question"], record

    return splits.draw_in_split(sample, split, seed, index)


def generate(
    split: str,
    num_examples: int,
    seed: int,
    levels: Sequence[int] = LEVELS,
    max_operand: int | None = None,
    max_multiplier: int = 9,
) -> Iterator[dict]:
    """`num_examples` records of `split`, spread evenly over `levels` (round robin)."""
    splits.check_split(split)
    splits.check_levels(levels, "a level is a row of LEVEL_SPECS")
    for index in range(num_examples):
        yield example(split, index, seed, levels, max_operand, max_multiplier)


def is_correct(predicted: str | None, example_record: dict) -> bool:
    """Exact integer match of the predicted answer with the gold answer."""
    if predicted is None or not _INTEGER.fullmatch(predicted.strip()):
        return False
    return int(predicted.strip()) == int(example_record["answer"])
