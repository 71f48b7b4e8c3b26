"""Hard negatives for verifiers: a problem's gold chain beside copies with one slip carried through.

A sampled solution that is wrong usually differs from a right one of the same problem in one step's
value (`16*9=154`) or one misread operand (`90*5=450` for `90*1`), and every later step inherits it. A
verifier trained only on sampled solutions can score them well overall by learning which problems are
hard, without ever checking a step: that ranks problems, not one problem's candidates. Pairs that differ
only in a slip put the difference where the check must look (hard negatives; as in the "wrong step"
negatives of Lightman et al. 2023's active learning and the perturbed chains of Math-Shepherd-style
data). Arithmetic chains are regenerated with `rtc.data.arithmetic.chain_steps`, so every step after
the slip is computed correctly from the wrong value, as a solver who slips once would write it.

The solutions carry the original record: exact step labels then mark the slipped step and every later
one wrong, and outcome labels mark the answer wrong unless the slip cancels out (e.g. a later `*0`).
"""

import json
import re
from collections.abc import Sequence

import numpy as np

from rtc.data import arithmetic
from rtc.data.format import completion_text, prompt_tokens
from rtc.errors import ConfigError
from rtc.rewards.rm_data import Solution

VALUE_DELTAS = (-10, -2, -1, 1, 2, 10)  # carry and last-digit slips
_STEP = re.compile(r"(-?\d+)([+*-])(\d+)=(-?\d+)")


def right_operand(step_text: str) -> int:
    """`'90*1=90'` -> `1`: the operand a misreading replaces."""
    match = _STEP.fullmatch(step_text)
    if match is None:
        raise ValueError(f"not an arithmetic step: {step_text!r}")
    return int(match.group(3))


def sample_mistake(rng: np.random.Generator, operands: Sequence[int], operators: Sequence[str]):
    """A random `arithmetic.Mistake`: a step, a kind, and a nonzero delta. An operand is misread as
    another number of the problem (half the time, when one differs) or as itself +-1, +-2 or +-10,
    never below 0; a value is off by one of `VALUE_DELTAS`."""
    steps = arithmetic.gold_steps(operands, operators)
    step = int(rng.integers(len(steps)))
    kind = arithmetic.MISTAKE_KINDS[int(rng.integers(len(arithmetic.MISTAKE_KINDS)))]
    if kind == "value":
        return arithmetic.Mistake(step, kind, int(rng.choice(VALUE_DELTAS)))
    true = right_operand(steps[step][0])
    others = sorted({o for o in operands if o != true})
    if others and rng.random() < 0.5:
        misread = int(rng.choice(others))
    else:
        delta = int(rng.choice(VALUE_DELTAS))
        misread = true + delta if true + delta >= 0 else true - delta
    return arithmetic.Mistake(step, kind, misread - true)


def slipped_record(record: dict, mistake) -> dict:
    """`record` with its steps and answer rewritten as the chain with `mistake` (the gold fields other
    solutions are labelled against stay in the original record)."""
    meta = json.loads(record["meta"])
    steps = arithmetic.chain_steps(meta["operands"], meta["operators"], mistake)
    return {**record, "steps": [text for text, _ in steps], "answer": str(steps[-1][1])}


def chain_solution(tokenizer, record: dict, written: dict) -> Solution:
    """The solution whose completion is `written`'s chain in the SFT format (eos included, as sampled
    completions include their stop token), labelled against `record`."""
    completion = tokenizer.encode(completion_text(written)) + [tokenizer.eos_id]
    return Solution(record, tuple(prompt_tokens(tokenizer, record)), tuple(completion))


def hard_negative_solutions(
    tokenizer, records: Sequence[dict], per_problem: int, rng: np.random.Generator
) -> list[Solution]:
    """For each record, its gold chain then `per_problem` copies with one slip each (record-major)."""
    solutions = []
    for record in records:
        if "meta" not in record or "operands" not in json.loads(record["meta"]):
            raise ConfigError(
                f"hard negatives rewrite arithmetic chains; {record['question']!r} has no operands "
                "(set rm_data.hard_negatives=0 for this task)"
            )
        meta = json.loads(record["meta"])
        solutions.append(chain_solution(tokenizer, record, record))
        for _ in range(per_problem):
            mistake = sample_mistake(rng, meta["operands"], meta["operators"])
            solutions.append(chain_solution(tokenizer, record, slipped_record(record, mistake)))
    return solutions
