"""Routing easy queries to a fast path: a cheap difficulty predictor and the rule that reads it.

A predictor is any callable `predictor(question: str, prompt_ids: list[int]) -> float`, a difficulty
in [0, 1]; a query whose difficulty is below the router's `threshold` is served on the fast path (the
`low` effort preset, or no thinking at all), the rest on the full path the request asked for. Adaptive
compute by predicted difficulty is Snell et al. 2024 ("Scaling LLM Test-Time Compute Optimally",
sec. 3.2), who bin questions by difficulty and spend more on hard ones.

The default predictor, `prompt_length`, takes a longer prompt to be a harder one (a question with
more operands has more steps). `learned` reads the served policy's states of the prompt through the
ridge head `experiments/router.py` fits to sampled pass rates (`rtc.analysis.difficulty`; `head` names its
`difficulty_head.json`), at the cost of one prefill per request. Any other is named in the config as
`module:function` (a factory called with the router's config block, returning the predictor).
"""

import dataclasses
import importlib
from typing import Callable

from rtc.errors import ConfigError

FAST_PATHS = ("low", "no_thinking")
Predictor = Callable[[str, list[int]], float]


def prompt_length(length_scale: int) -> Predictor:
    """Difficulty `min(1, prompt tokens / length_scale)`."""
    if length_scale < 1:
        raise ConfigError(f"router.length_scale must be >= 1, got {length_scale}")
    return lambda question, ids: min(1.0, len(ids) / length_scale)


@dataclasses.dataclass(frozen=True)
class Route:
    """Which path serves a request; `difficulty` is None when the router was off."""

    path: str  # "full" or "fast"
    difficulty: float | None = None

    def body(self) -> dict:
        return {"path": self.path, "difficulty": self.difficulty}


class Router:
    """`route(question, ids)`: the fast path for a predicted-easy query, the full path otherwise."""

    def __init__(self, predictor: Predictor, threshold: float, fast_path: str):
        if fast_path not in FAST_PATHS:
            raise ConfigError(f"router.fast_path must be one of {list(FAST_PATHS)}, got {fast_path!r}")
        self.predictor, self.threshold, self.fast_path = predictor, threshold, fast_path

    @classmethod
    def from_config(cls, block, reasoner=None) -> "Router":
        """The router of a config block: `predictor` (`prompt_length`, `learned` or `module:function`),
        `threshold`, `fast_path`, `length_scale`, `head` (for `learned`: a `difficulty_head.json` fitted
        for the served policy `reasoner`)."""
        if block.predictor == "prompt_length":
            predictor = prompt_length(block.length_scale)
        elif block.predictor == "learned":
            if reasoner is None or not block.get("head"):
                raise ConfigError("router.predictor='learned' needs router.head: a difficulty_head.json")
            from rtc.analysis import difficulty

            head = difficulty.load_head(block.head)
            predictor = difficulty.difficulty_predictor(reasoner.model, reasoner.params, head)
        elif ":" in block.predictor:
            module, name = block.predictor.split(":", 1)
            try:
                predictor = getattr(importlib.import_module(module), name)(block)
            except (ImportError, AttributeError) as error:
                raise ConfigError(f"router.predictor {block.predictor!r} cannot be loaded: {error}") from None
        else:
            raise ConfigError(
                f"router.predictor must be 'prompt_length', 'learned' or 'module:function', "
                f"got {block.predictor!r}"
            )
        return cls(predictor, block.threshold, block.fast_path)

    def route(self, question: str, ids: list[int]) -> Route:
        difficulty = float(self.predictor(question, ids))
        return Route("fast" if difficulty < self.threshold else "full", round(difficulty, 4))

    def fast_limit(self, limit: int | None, new_tokens: int, low_limit: int) -> int:
        """The thinking limit on the fast path: no thinking, or the low preset (never above `limit`)."""
        fast = 0 if self.fast_path == "no_thinking" else low_limit
        return fast if limit is None else min(limit, fast)
