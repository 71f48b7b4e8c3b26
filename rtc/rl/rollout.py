"""Rollouts as training sequences: G completions per prompt, laid out for one teacher-forced forward pass.

Rows are grouped: row `p * G + g` is completion g of prompt p. The sampler sees prompt `p` right-padded
to a bucket and writes its completion from slot `prompt_length`; `sequences` rebuilds the same
contiguous text `prompt[:length] + completion` per row, so log-probabilities recomputed by a plain
forward pass match the sampler's.
"""

import jax
import jax.numpy as jnp
import numpy as np


def repeat_groups(prompt_tokens: np.ndarray, prompt_lengths: np.ndarray, group_size: int):
    """`(i32[P * G, Pp], i32[P * G])`: each prompt repeated G times, group members adjacent."""
    return np.repeat(prompt_tokens, group_size, axis=0), np.repeat(prompt_lengths, group_size, axis=0)


def sequences(
    prompt_tokens: jax.Array,
    prompt_lengths: jax.Array,
    completion: jax.Array,
    completion_lengths: jax.Array,
    pad_id: int,
) -> dict:
    """The rollout as `{tokens, positions: i32[B, L], mask: f32[B, L - 1]}` with L = Pp + N.

    prompt_tokens: i32[B, Pp] right-padded; completion: i32[B, N]. `mask[:, t]` is 1 where target
    `tokens[:, t + 1]` is a completion token (the loss is on the completion only).
    """
    b, pp = prompt_tokens.shape
    n = completion.shape[1]
    t = jnp.arange(pp + n)[None, :]  # [1, L]
    start = prompt_lengths[:, None]  # [B, 1]
    from_prompt = jnp.take_along_axis(prompt_tokens, jnp.minimum(t, pp - 1).repeat(b, 0), axis=1)
    from_completion = jnp.take_along_axis(completion, jnp.clip(t - start, 0, n - 1), axis=1)
    in_completion = (t >= start) & (t < start + completion_lengths[:, None])
    tokens = jnp.where(t < start, from_prompt, jnp.where(in_completion, from_completion, pad_id))
    positions = jnp.broadcast_to(t, tokens.shape).astype(jnp.int32)
    return {"tokens": tokens, "positions": positions, "mask": in_completion[:, 1:].astype(jnp.float32)}


def last_token_rewards(rewards: jax.Array, mask: jax.Array) -> jax.Array:
    """f32[B, T]: each sequence's reward `f32[B]` placed on its last completion token (PPO's sparse reward)."""
    t = jnp.arange(mask.shape[1])[None, :]
    last = jnp.max(jnp.where(mask > 0, t, -1), axis=1, keepdims=True)  # [B, 1]
    return jnp.where(t == last, rewards[:, None], 0.0)


def on_targets(values: jax.Array, prompt_lengths: jax.Array, num_targets: int) -> jax.Array:
    """f32[B, T]: per-completion-token `values: f32[B, N]` (e.g. the sampler's log-probs) moved onto the
    target indices of `sequences` (completion token j of a row is target `prompt_length + j - 1`); 0 elsewhere.
    """
    n = values.shape[1]
    j = jnp.arange(num_targets)[None, :] + 1 - prompt_lengths[:, None]  # [B, T]
    moved = jnp.take_along_axis(values, jnp.clip(j, 0, n - 1), axis=1)
    return jnp.where((j >= 0) & (j < n), moved, 0.0)
