"""The rule rewards computed on device from token ids, so sampling, reward and update fuse into one program.

They mirror `rtc.rewards.rule` for tasks whose answer is an integer (arithmetic): the answer block must
hold an optional sign and 1-9 digit tokens, the canonical way the tokenizer writes an integer; the
host verifier also accepts spaces around it. `tests/test_rewards.py` checks both agree.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

MAX_DIGITS = 9  # fits int32


class AnswerTables(NamedTuple):
    """Per-token-id lookups: `digit: i32[V]` (0-9, or -1), `sign: i32[V]` (+1 for '+', -1 for '-', else 0)."""

    digit: jax.Array
    sign: jax.Array


class SpecialIds(NamedTuple):
    think_start: int
    think_end: int
    answer_start: int
    answer_end: int

    @classmethod
    def of(cls, tokenizer) -> "SpecialIds":
        return cls(
            tokenizer.think_start_id,
            tokenizer.think_end_id,
            tokenizer.answer_start_id,
            tokenizer.answer_end_id,
        )


def answer_tables(tokenizer) -> AnswerTables:
    """The lookups from each id's decoded text (a token that decodes to exactly one digit or sign)."""
    digit = np.full(tokenizer.vocab_size, -1, np.int32)
    sign = np.zeros(tokenizer.vocab_size, np.int32)
    for i in range(tokenizer.vocab_size):
        text = tokenizer.decode([i])
        if len(text) == 1 and text.isdigit() and text.isascii():
            digit[i] = int(text)
        elif text in ("+", "-"):
            sign[i] = 1 if text == "+" else -1
    return AnswerTables(jnp.asarray(digit), jnp.asarray(sign))


def _first(mask: jax.Array, default: int) -> jax.Array:
    """i32[B]: the first index where `mask: bool[B, N]` is set, else `default`."""
    return jnp.where(mask.any(axis=1), jnp.argmax(mask, axis=1), default)


def parse_integer_answer(
    tokens: jax.Array, lengths: jax.Array, tables: AnswerTables, ids: SpecialIds
) -> tuple[jax.Array, jax.Array]:
    """`(value i32[B], valid bool[B])` of the first `<answer>` block, which must end the completion.

    tokens: i32[B, N] completions; lengths: i32[B]. Valid means the completion ends with `</answer>` and
    the block holds `[sign] digit{1,9}` and nothing else.
    """
    t = jnp.arange(tokens.shape[1])[None, :]  # [1, N]
    live = t < lengths[:, None]
    end = lengths - 1  # [B]: index of the last token
    ends_block = jnp.take_along_axis(tokens, jnp.maximum(end, 0)[:, None], axis=1)[:, 0] == ids.answer_end
    start = _first(live & (tokens == ids.answer_start), -1)  # [B]
    content = (t > start[:, None]) & (t < end[:, None])  # [B, N]
    digit = tables.digit[tokens]  # [B, N]
    sign = tables.sign[tokens]
    leading_sign = content & (t == start[:, None] + 1) & (sign != 0)
    digits = content & ~leading_sign
    num_digits = digits.sum(axis=1)
    valid = ends_block & (start >= 0) & (num_digits >= 1) & (num_digits <= MAX_DIGITS)
    valid = valid & jnp.all(~digits | (digit >= 0), axis=1)
    power = jnp.clip(end[:, None] - 1 - t, 0, MAX_DIGITS - 1)  # the last digit sits at end - 1
    value = jnp.where(digits & (digit >= 0), digit * (10**power), 0).sum(axis=1)
    sign_value = jnp.where(leading_sign.any(axis=1), jnp.sum(jnp.where(leading_sign, sign, 0), axis=1), 1)
    return jnp.where(valid, sign_value * value, 0), valid


def well_formed(tokens: jax.Array, lengths: jax.Array, ids: SpecialIds) -> jax.Array:
    """bool[B]: `<think>T</think><answer>A</answer>`, T and A non-empty, each tag once (as `rule.well_formed`)."""
    t = jnp.arange(tokens.shape[1])[None, :]
    live = t < lengths[:, None]
    count = {tag: (live & (tokens == tag)).sum(axis=1) for tag in ids}
    once = jnp.all(jnp.stack([count[tag] == 1 for tag in ids]), axis=0)
    think_end = _first(live & (tokens == ids.think_end), -1)
    answer_start = _first(live & (tokens == ids.answer_start), -1)
    last = jnp.take_along_axis(tokens, jnp.maximum(lengths - 1, 0)[:, None], axis=1)[:, 0]
    return (
        once
        & (tokens[:, 0] == ids.think_start)
        & (last == ids.answer_end)
        & (think_end >= 2)  # non-empty thinking
        & (answer_start == think_end + 1)
        & (lengths - 1 > answer_start + 1)  # non-empty answer
    )


def overlong_penalty(lengths: jax.Array, max_tokens: int, cache: int) -> jax.Array:
    """f32[B]: DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), as `rule.overlong_penalty`."""
    lengths = lengths.astype(jnp.float32)
    if cache <= 0:
        return jnp.where(lengths > max_tokens, -1.0, 0.0)
    free = max_tokens - cache
    return jnp.where(lengths <= free, 0.0, jnp.where(lengths <= max_tokens, (free - lengths) / cache, -1.0))


def rewards(
    tokens: jax.Array,
    lengths: jax.Array,
    gold: jax.Array,
    tables: AnswerTables,
    ids: SpecialIds,
    weights: tuple[tuple[str, float], ...],
    max_tokens: int,
    overlong_cache: int,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`(total f32[B], {name: f32[B]})` for the rewards named in `weights` (`correct`, `format`, `overlong`)."""
    value, valid = parse_integer_answer(tokens, lengths, tables, ids)
    fns = {
        "correct": lambda: (valid & (value == gold)).astype(jnp.float32),
        "format": lambda: well_formed(tokens, lengths, ids).astype(jnp.float32),
        "overlong": lambda: overlong_penalty(lengths, max_tokens, overlong_cache),
    }
    per_fn = {name: fns[name]() for name, _ in weights}
    total = sum(weight * per_fn[name] for name, weight in weights)
    return jnp.asarray(total, jnp.float32), per_fn


DEVICE_REWARDS = ("correct", "format", "overlong")


def supports(tokenizer) -> bool:
    """Whether `tokenizer` writes integers the way the device parser reads them (one token per digit,
    nothing else inside the answer block): checked on sample answers, not assumed."""
    ids = SpecialIds.of(tokenizer)
    tables = answer_tables(tokenizer)
    for value in (7, -305, 123456789):
        tokens = tokenizer.encode(f"<answer>{value}</answer>")
        tokens = tokens[tokens.index(ids.answer_start) :] if ids.answer_start in tokens else tokens
        parsed, valid = parse_integer_answer(
            jnp.array([tokens], jnp.int32), jnp.array([len(tokens)], jnp.int32), tables, ids
        )
        if not (bool(valid[0]) and int(parsed[0]) == value):
            return False
    return True
