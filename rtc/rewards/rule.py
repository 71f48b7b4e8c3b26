"""Rule rewards on the host: answer correctness by the task's verifier, format, and DAPO's overlong penalty.

A reward function is `fn(text, record, length) -> float`: the decoded completion, the task record it
answers, and its length in tokens. `score` runs a weighted set of them over a batch and never lets one
kill the run: a function that raises or returns a non-finite value is counted and scored `on_error`.
"""

import dataclasses
import logging
import math
from typing import Callable, Sequence

import numpy as np

from rtc.data.answers import extract_answer
from rtc.errors import ConfigError
from rtc.data.special import ANSWER_END, ANSWER_START, THINK_END, THINK_START

RewardFn = Callable[[str, dict, int], float]
_TAGS = (THINK_START, THINK_END, ANSWER_START, ANSWER_END)


def well_formed(text: str) -> bool:
    """`<think>T</think><answer>A</answer>` with T and A non-empty and each tag exactly once."""
    if any(text.count(tag) != 1 for tag in _TAGS):
        return False
    if not (text.startswith(THINK_START) and text.endswith(ANSWER_END)):
        return False
    thinking, _, rest = text[len(THINK_START) :].partition(THINK_END)
    return rest.startswith(ANSWER_START) and bool(thinking) and len(rest) > len(ANSWER_START + ANSWER_END)


def overlong_penalty(length: int, max_tokens: int, cache: int) -> float:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13).

    0 up to `max_tokens - cache` tokens, then falling linearly to -1 at `max_tokens`, and -1 beyond.
    """
    if cache <= 0:
        return -1.0 if length > max_tokens else 0.0
    free = max_tokens - cache
    if length <= free:
        return 0.0
    if length <= max_tokens:
        return (free - length) / cache
    return -1.0


def make_reward_fns(task, max_tokens: int, overlong_cache: int) -> dict[str, RewardFn]:
    """The built-in rewards for `task`: `correct` (1 or 0 by the verifier), `format` (1 or 0), `overlong`."""
    return {
        "correct": lambda text, record, length: float(task.is_correct(extract_answer(text), record)),
        "format": lambda text, record, length: float(well_formed(text)),
        "overlong": lambda text, record, length: overlong_penalty(length, max_tokens, overlong_cache),
    }


@dataclasses.dataclass(frozen=True)
class RewardSpec:
    """Which reward functions count, with their weights; `on_error` scores a failed call."""

    weights: tuple[tuple[str, float], ...]
    on_error: float = 0.0

    @classmethod
    def from_dict(cls, weights: dict, on_error: float = 0.0) -> "RewardSpec":
        return cls(tuple((str(k), float(v)) for k, v in weights.items()), on_error)

    def check(self, known: Sequence[str]) -> None:
        unknown = [name for name, _ in self.weights if name not in known]
        if unknown:
            raise ConfigError(f"unknown reward function {unknown[0]!r}; known: {', '.join(known)}")


def _call(fn: RewardFn, text: str, record: dict, length: int) -> float | None:
    """The reward, or None when the function raised or returned a non-finite value."""
    try:
        value = float(fn(text, record, length))
    except Exception as error:  # a user's reward function may fail in any way; the run goes on
        logging.debug("reward function failed: %r", error)
        return None
    return value if math.isfinite(value) else None


def score(
    fns: dict[str, RewardFn],
    spec: RewardSpec,
    texts: Sequence[str],
    records: Sequence[dict],
    lengths: Sequence[int],
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, int]]:
    """`(total f32[N], {name: f32[N]}, {name: failures})` for N completions.

    `total` is the weighted sum over `spec.weights`; each failed call scores `spec.on_error`.
    """
    spec.check(list(fns))
    per_fn, failures = {}, {}
    for name, _ in spec.weights:
        values = [_call(fns[name], t, r, int(n)) for t, r, n in zip(texts, records, lengths)]
        failures[name] = sum(v is None for v in values)
        per_fn[name] = np.array([spec.on_error if v is None else v for v in values], np.float32)
    total = np.zeros(len(texts), np.float32)
    for name, weight in spec.weights:
        total += weight * per_fn[name]
    return total, per_fn, failures
