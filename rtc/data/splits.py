"""Train/test assignment and per-example random streams for the synthetic tasks.

A problem belongs to `test` when the hash of its split key (a canonical text of the problem) falls
in the first `TEST_PER_MILLE` of 1000 buckets, else to `train`. The assignment ignores the seed, so
no seed's train set ever holds a test problem. Example `i` of a split draws candidates from its own
stream `default_rng((seed, split_id, i))` until one lands in that split: reproducible, independent of
generation order, and disjoint by construction. Duplicates within one split are possible.
"""

import hashlib
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from rtc.errors import ConfigError

SPLIT_IDS = {"train": 0, "test": 1}
TEST_PER_MILLE = 100
_MAX_DRAWS = 10_000

Record = TypeVar("Record")


def split_of(key: str) -> str:
    """'train' or 'test' for a problem, from the sha256 of its split key."""
    bucket = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 1000
    return "test" if bucket < TEST_PER_MILLE else "train"


def check_split(split: str) -> int:
    """The integer id of `split`; unknown names raise `ValueError`."""
    if split not in SPLIT_IDS:
        raise ConfigError(f"unknown split {split!r}; known splits: {sorted(SPLIT_IDS)}")
    return SPLIT_IDS[split]


def draw_in_split(
    sample: Callable[[np.random.Generator], tuple[str, Record]], split: str, seed: int, index: int
) -> Record:
    """Example `index` of `split`: the first draw `(key, record)` of its stream whose key is in `split`."""
    rng = np.random.default_rng((seed, check_split(split), index))
    for _ in range(_MAX_DRAWS):
        key, record = sample(rng)
        if split_of(key) == split:
            return record
    raise RuntimeError(f"no {split} problem in {_MAX_DRAWS} draws (seed={seed}, index={index})")


def check_levels(levels, meaning: str) -> None:
    """Raises `ConfigError` unless `levels` is a non-empty sequence of positive ints (`meaning` says what a level is)."""
    if not levels or any(level < 1 for level in levels):
        raise ConfigError(f"levels must be >= 1 ({meaning}), got {levels!r}")
