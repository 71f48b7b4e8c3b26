"""The reasoning budget: how many thinking tokens a completion may (and must) spend.

- `max_thinking_tokens`: once a row has thought this long, `</think>` is forced (Anthropic's
    `budget_tokens`; s1's "budget forcing" upper bound, Muennighoff et al. 2025, sec. 3.1).
- `min_thinking_tokens`: before this many thinking tokens, an attempt to end thinking is replaced by
    a continuation cue such as "Wait" (s1's lower bound, which extends thinking).
- `reasoning_effort` low / medium / high maps to a fraction of the token budget (OpenAI's knob).
"""

import dataclasses
from rtc.errors import ConfigError

EFFORT_FRACTIONS = {"low": 0.25, "medium": 0.5, "high": 1.0}


@dataclasses.dataclass(frozen=True)
class ThinkingBudget:
    """Static budget settings (ids are the tokenizer's; `cue_ids` are the continuation cue's tokens)."""

    think_start_id: int
    think_end_id: int
    max_thinking_tokens: int | None = None
    min_thinking_tokens: int = 0
    cue_ids: tuple[int, ...] = ()

    def __post_init__(self):
        if self.min_thinking_tokens and not self.cue_ids:
            raise ConfigError("min_thinking_tokens needs a continuation cue (cue_ids)")
        if self.max_thinking_tokens is not None and self.max_thinking_tokens < self.min_thinking_tokens:
            raise ConfigError(
                f"max_thinking_tokens={self.max_thinking_tokens} < "
                f"min_thinking_tokens={self.min_thinking_tokens}"
            )


def thinking_limit(
    max_new_tokens: int,
    reasoning_effort: str | None = None,
    budget_tokens: int | None = None,
    answer_reserve: int = 16,
) -> int | None:
    """The max thinking tokens implied by `budget_tokens` (exact) or `reasoning_effort` (a fraction).

    The effort fraction applies to `max_new_tokens - answer_reserve`, leaving room for the answer.
    """
    if budget_tokens is not None and reasoning_effort is not None:
        raise ConfigError("give budget_tokens or reasoning_effort, not both")
    if budget_tokens is not None:
        if budget_tokens < 0:
            raise ConfigError(f"budget_tokens must be >= 0, got {budget_tokens}")
        return budget_tokens
    if reasoning_effort is None:
        return None
    if reasoning_effort not in EFFORT_FRACTIONS:
        raise ConfigError(f"unknown reasoning_effort {reasoning_effort!r}; known: {list(EFFORT_FRACTIONS)}")
    return max(1, int(EFFORT_FRACTIONS[reasoning_effort] * max(max_new_tokens - answer_reserve, 1)))
