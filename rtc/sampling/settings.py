"""Sampler settings from a config block: the stop tokens, sampling rule and reasoning budget of a run."""

from rtc.sampling.budget import ThinkingBudget, thinking_limit
from rtc.sampling.rules import SamplingRule
from rtc.sampling.sampler import SamplerConfig


def from_block(block, tokenizer, temperature: float) -> SamplerConfig:
    """Decoding for evaluation and verifier data: stop at the tokenizer's `stop_ids` (`</answer>`, eos,
    a chat template's turn end), with the block's reasoning budget (`max_new_tokens`, `reasoning_effort`,
    `budget_tokens`, `min_thinking_tokens` + `cue`, `top_p`, `cache_phases`) at `temperature`."""
    limit = thinking_limit(
        block.max_new_tokens,
        reasoning_effort=block.reasoning_effort or None,
        budget_tokens=block.budget_tokens,
    )
    budget = ThinkingBudget(
        tokenizer.think_start_id,
        tokenizer.think_end_id,
        max_thinking_tokens=limit,
        min_thinking_tokens=block.min_thinking_tokens,
        cue_ids=tuple(tokenizer.encode(block.cue)) if block.min_thinking_tokens else (),
    )
    return SamplerConfig(
        max_new_tokens=block.max_new_tokens,
        stop_ids=tuple(tokenizer.stop_ids),
        pad_id=tokenizer.pad_id,
        rule=SamplingRule(temperature=temperature, top_p=block.top_p if temperature else 1.0),
        budget=budget,
        cache_phases=block.cache_phases,
    )
