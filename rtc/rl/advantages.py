"""Advantage estimators, chosen by name from config (`get_advantage_fn`).

Outcome estimators take `rewards: f32[P, G]` (P prompts, a group of G completions each) and return one
advantage per completion, `f32[P, G]`; the loss broadcasts it over the completion's tokens.

- `grpo`: `(r - mean) / (std + eps)` over the group (Shao et al. 2024, DeepSeekMath, eq. 3). The paper
  does not say which std; `ddof=1` (the sample std) is what TRL and verl compute (`torch.std`), `ddof=0`
  the population std (Tunix's `jnp.std`).
- `dr_grpo`: `r - mean`, no std scaling (Liu et al. 2025, "Understanding R1-Zero-Like Training").
- `rloo`: `r_i - mean_{j != i} r_j` (Ahmadian et al. 2024, REINFORCE Leave-One-Out).
- `batch_std`: `(r - group mean) / (std over the whole batch + eps)` (Hu 2025, REINFORCE++; TRL's
  `scale_rewards="batch"`).

`process_advantages` is DeepSeekMath's process supervision (sec. 4.1.3) and `gae` PPO's generalized
advantage estimation (Schulman et al. 2016).
"""

from typing import Callable

import jax
import jax.numpy as jnp

from rtc.errors import ConfigError


def _group_std(rewards: jax.Array, ddof: int) -> jax.Array:
    """f32[P, 1]: the std of each group (0 for a group of one when ddof=1, not nan)."""
    g = rewards.shape[-1]
    if g - ddof <= 0:
        return jnp.zeros(rewards.shape[:-1] + (1,), rewards.dtype)
    return jnp.std(rewards, axis=-1, keepdims=True, ddof=ddof)


def grpo(rewards: jax.Array, eps: float = 1e-4, ddof: int = 1) -> jax.Array:
    """f32[P, G]: group-normalised rewards; a group of equal rewards gets 0 (never nan)."""
    centered = rewards - rewards.mean(axis=-1, keepdims=True)
    return centered / (_group_std(rewards, ddof) + eps)


def dr_grpo(rewards: jax.Array, eps: float = 1e-4, ddof: int = 1) -> jax.Array:
    """f32[P, G]: rewards minus the group mean (Dr. GRPO drops the std, which biases toward easy groups)."""
    del eps, ddof
    return rewards - rewards.mean(axis=-1, keepdims=True)


def rloo(rewards: jax.Array, eps: float = 1e-4, ddof: int = 1) -> jax.Array:
    """f32[P, G]: each reward minus the mean of the other G-1 rewards of its group, = G/(G-1) (r - mean)."""
    del eps, ddof
    g = rewards.shape[-1]
    if g < 2:
        raise ConfigError("rloo needs a group of at least 2 completions (rl.group_size >= 2)")
    return (rewards - rewards.mean(axis=-1, keepdims=True)) * g / (g - 1)


def batch_std(rewards: jax.Array, eps: float = 1e-4, ddof: int = 1) -> jax.Array:
    """f32[P, G]: group-centered rewards scaled by the std of all rewards in the batch."""
    centered = rewards - rewards.mean(axis=-1, keepdims=True)
    scale = jnp.std(rewards, ddof=ddof) if rewards.size > ddof else 0.0
    return centered / (scale + eps)


ADVANTAGES: dict[str, Callable] = {"grpo": grpo, "dr_grpo": dr_grpo, "rloo": rloo, "batch_std": batch_std}


def get_advantage_fn(name: str) -> Callable:
    """The outcome advantage estimator `name(rewards f32[P, G], eps, ddof) -> f32[P, G]`."""
    if name not in ADVANTAGES:
        raise ConfigError(f"unknown advantage estimator {name!r}; known: {', '.join(ADVANTAGES)}")
    return ADVANTAGES[name]


def zero_variance_groups(rewards: jax.Array) -> jax.Array:
    """bool[P]: groups whose G rewards are all equal (no learning signal; DAPO's dynamic sampling drops them)."""
    return jnp.all(rewards == rewards[..., :1], axis=-1)


def process_advantages(
    step_rewards: jax.Array, step_end: jax.Array, mask: jax.Array, eps: float = 1e-4, ddof: int = 0
) -> jax.Array:
    """Process-supervised GRPO advantages (Shao et al. 2024, DeepSeekMath sec. 4.1.3).

    step_rewards: f32[P, G, T], the PRM reward of each step at its last token (0 elsewhere);
    step_end: bool[P, G, T], marks those tokens; mask: bool[P, G, T], the completion tokens.
    Every step reward of a group is normalised by the mean and std of all step rewards of that group,
    `r~ = (r - mean(R)) / std(R)`; a token's advantage is the sum of the normalised rewards of the
    steps ending at or after it: `A_t = sum_{index(j) >= t} r~_j`. Returns f32[P, G, T].
    """
    count = jnp.maximum(step_end.sum(axis=(1, 2), keepdims=True), 1)  # [P, 1, 1]
    mean = jnp.where(step_end, step_rewards, 0.0).sum(axis=(1, 2), keepdims=True) / count
    var = jnp.where(step_end, (step_rewards - mean) ** 2, 0.0).sum(axis=(1, 2), keepdims=True)
    std = jnp.sqrt(var / jnp.maximum(count - ddof, 1))
    normalised = jnp.where(step_end, (step_rewards - mean) / (std + eps), 0.0)  # [P, G, T]
    after = jnp.flip(jnp.cumsum(jnp.flip(normalised, -1), axis=-1), -1)  # sum over steps ending at >= t
    return jnp.where(mask, after, 0.0)


def gae(
    rewards: jax.Array, values: jax.Array, mask: jax.Array, gamma: float = 1.0, lam: float = 0.95
) -> tuple[jax.Array, jax.Array]:
    """Generalized advantage estimation (Schulman et al. 2016, eq. 16), one `lax.scan(reverse=True)`.

    rewards, values: f32[B, T]; mask: bool[B, T], the completion tokens (a contiguous run per row).
    `delta_t = r_t + gamma V_{t+1} - V_t` with `V` past the last token 0, and `A_t = delta_t + gamma lam A_{t+1}`.
    Tokens outside the mask are skipped: they neither receive nor pass on advantage.
    Returns `(advantages, returns = advantages + values)`, both f32[B, T] (0 outside the mask).
    """
    mask = mask.astype(rewards.dtype)
    rewards, values = rewards * mask, values * mask

    def backward(carry, inputs):
        next_value, next_advantage = carry  # f32[B]
        reward, value, live = inputs
        delta = reward + gamma * next_value - value
        advantage = (delta + gamma * lam * next_advantage) * live
        carry = (jnp.where(live > 0, value, next_value), jnp.where(live > 0, advantage, next_advantage))
        return carry, advantage

    zeros = jnp.zeros(rewards.shape[:1], rewards.dtype)
    _, advantages = jax.lax.scan(backward, (zeros, zeros), (rewards.T, values.T, mask.T), reverse=True)
    advantages = advantages.T
    return advantages, (advantages + values) * mask
