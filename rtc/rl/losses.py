"""Policy-gradient losses: clipped surrogate, KL to a reference, PPO's value loss; all chosen by name.

Per-token arrays are `[B, T]` over the (prompt + completion) sequence, with `mask: f32[B, T]` set on the
completion tokens the loss counts. Names and formulas:
- importance ratio `"token"`: `r_t = pi(o_t) / pi_old(o_t)` (PPO, Schulman et al. 2017; GRPO);
  `"sequence"`: `s = exp(mean_t log r_t)`, one ratio per completion (GSPO, Zheng et al. 2025).
- clipping: `min(r A, clip(r, 1 - epsilon, 1 + epsilon_high) A)`; `epsilon_high > epsilon` is DAPO's
  clip-higher (Yu et al. 2025). Dual clip (Ye et al. 2020) bounds the loss of a negative advantage by
  `-dual_clip * A`.
- aggregation: `"sequence_mean"`, the mean over tokens of each completion then over completions (GRPO,
  eq. 3); `"token_mean"`, over every token of the batch (DAPO); `"constant"`, the sum divided by a
  constant `rows * max_tokens` (Dr. GRPO, Liu et al. 2025).
- KL to the reference policy (Schulman 2020, "Approximating KL divergence"), with `d = log pi_ref - log pi`:
  `k1 = -d`, `k2 = d^2 / 2`, `k3 = exp(d) - d - 1` (DeepSeekMath eq. 4 uses k3).
"""

import dataclasses

import jax
import jax.numpy as jnp

from rtc.errors import ConfigError

RATIO_LEVELS = ("token", "sequence")
AGGREGATIONS = ("sequence_mean", "token_mean", "constant")
KL_ESTIMATORS = ("k1", "k2", "k3")


@dataclasses.dataclass(frozen=True)
class PolicyLossConfig:
    epsilon: float = 0.2
    epsilon_high: float | None = None  # None: = epsilon (symmetric clip)
    dual_clip: float | None = None  # e.g. 3.0; must exceed 1
    ratio_level: str = "token"
    aggregation: str = "sequence_mean"
    kl_coef: float = 0.0  # beta; 0 skips the reference policy
    kl_estimator: str = "k3"

    def __post_init__(self):
        for value, known, name in (
            (self.ratio_level, RATIO_LEVELS, "ratio_level"),
            (self.aggregation, AGGREGATIONS, "aggregation"),
            (self.kl_estimator, KL_ESTIMATORS, "kl_estimator"),
        ):
            if value not in known:
                raise ConfigError(f"unknown {name} {value!r}; known: {', '.join(known)}")
        if self.dual_clip is not None and self.dual_clip <= 1.0:
            raise ConfigError(f"dual_clip must be > 1 (got {self.dual_clip})")

    @property
    def clip_high(self) -> float:
        return self.epsilon if self.epsilon_high is None else self.epsilon_high


def kl_penalty(logp: jax.Array, ref_logp: jax.Array, estimator: str) -> jax.Array:
    """f32[B, T]: the per-token estimate of KL(pi || pi_ref) from samples of pi."""
    d = ref_logp - logp
    if estimator == "k1":
        return -d
    if estimator == "k2":
        return 0.5 * d**2
    if estimator == "k3":
        return jnp.exp(d) - d - 1.0
    raise ConfigError(f"unknown kl_estimator {estimator!r}; known: {', '.join(KL_ESTIMATORS)}")


def aggregate(per_token: jax.Array, mask: jax.Array, mode: str, max_tokens: int | None = None) -> jax.Array:
    """f32[]: the loss of `per_token: f32[B, T]` over `mask: f32[B, T]` by the named aggregation.

    A row with an empty mask (e.g. a zero-variance group masked out) adds nothing; for
    `sequence_mean` it is also left out of the count of completions.
    """
    if mode == "token_mean":
        return (per_token * mask).sum() / jnp.maximum(mask.sum(), 1.0)
    if mode == "sequence_mean":
        lengths = mask.sum(axis=-1)  # [B]
        per_row = (per_token * mask).sum(axis=-1) / jnp.maximum(lengths, 1.0)
        return per_row.sum() / jnp.maximum((lengths > 0).sum(), 1)
    if mode == "constant":
        return (per_token * mask).sum() / (mask.shape[0] * (max_tokens or mask.shape[1]))
    raise ConfigError(f"unknown aggregation {mode!r}; known: {', '.join(AGGREGATIONS)}")


def importance_ratio(logp: jax.Array, old_logp: jax.Array, mask: jax.Array, level: str) -> jax.Array:
    """f32[B, T]: per-token ratios, or each completion's sequence ratio repeated over its tokens."""
    log_ratio = (logp - old_logp) * mask
    if level == "sequence":
        mean = log_ratio.sum(axis=-1, keepdims=True) / jnp.maximum(mask.sum(axis=-1, keepdims=True), 1.0)
        log_ratio = jnp.broadcast_to(mean, logp.shape)
    return jnp.exp(log_ratio)


def clipped_surrogate(
    ratio: jax.Array, advantages: jax.Array, cfg: PolicyLossConfig
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-token loss `-min(r A, clip(r) A)` (dual-clipped if configured), and where the clip binds.

    Returns `(loss f32[B, T], clipped_low bool[B, T], clipped_high bool[B, T])`: low where `r < 1 - eps`
    and `A < 0`, high where `r > 1 + eps_high` and `A > 0` (the tokens whose gradient the clip removes).
    """
    clipped = jnp.clip(ratio, 1.0 - cfg.epsilon, 1.0 + cfg.clip_high)
    loss = jnp.maximum(-ratio * advantages, -clipped * advantages)
    if cfg.dual_clip is not None:
        loss = jnp.where(advantages < 0, jnp.minimum(loss, -cfg.dual_clip * advantages), loss)
    low = (ratio < 1.0 - cfg.epsilon) & (advantages < 0)
    high = (ratio > 1.0 + cfg.clip_high) & (advantages > 0)
    return loss, low, high


def policy_loss(
    logp: jax.Array,
    old_logp: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    cfg: PolicyLossConfig,
    ref_logp: jax.Array | None = None,
    max_tokens: int | None = None,
) -> tuple[jax.Array, dict]:
    """The clipped policy loss plus `kl_coef * KL`, aggregated; with per-batch diagnostics.

    logp, old_logp, ref_logp: f32[B, T] log-probabilities of the sampled tokens under the current,
    rollout and reference policies; advantages: f32[B, T]; mask: f32[B, T].
    """
    ratio = importance_ratio(logp, jax.lax.stop_gradient(old_logp), mask, cfg.ratio_level)
    surrogate, low, high = clipped_surrogate(ratio, advantages, cfg)
    pg_loss = aggregate(surrogate, mask, cfg.aggregation, max_tokens)
    count = jnp.maximum(mask.sum(), 1.0)
    metrics = {
        "pg_loss": pg_loss,
        "clip_fraction_low": (low * mask).sum() / count,
        "clip_fraction_high": (high * mask).sum() / count,
        "ratio_mean": (ratio * mask).sum() / count,
    }
    loss = pg_loss
    if ref_logp is not None:
        kl = kl_penalty(logp, jax.lax.stop_gradient(ref_logp), cfg.kl_estimator)
        kl_loss = aggregate(kl, mask, cfg.aggregation, max_tokens)
        metrics["kl"] = (kl * mask).sum() / count
        loss = loss + cfg.kl_coef * kl_loss
    return loss, metrics


def value_loss(
    values: jax.Array, old_values: jax.Array, returns: jax.Array, mask: jax.Array, clip: float | None
) -> tuple[jax.Array, jax.Array]:
    """PPO's clipped value loss `0.5 max((V - R)^2, (clip(V, V_old +- c) - R)^2)`, token mean (Schulman 2017;
    the clipping is from OpenAI baselines' ppo2). Returns `(loss f32[], clip fraction f32[])`."""
    squared = (values - returns) ** 2
    count = jnp.maximum(mask.sum(), 1.0)
    if clip is None:
        return 0.5 * (squared * mask).sum() / count, jnp.float32(0.0)
    clipped_values = old_values + jnp.clip(values - old_values, -clip, clip)
    clipped_squared = (clipped_values - returns) ** 2
    loss = 0.5 * (jnp.maximum(squared, clipped_squared) * mask).sum() / count
    fraction = ((clipped_squared > squared) * mask).sum() / count
    return loss, fraction


def token_logprobs(logits: jax.Array, targets: jax.Array, temperature: float) -> tuple[jax.Array, jax.Array]:
    """`(log p(target) f32[B, T], entropy f32[B, T])` of `softmax(logits / temperature)`."""
    logp_all = jax.nn.log_softmax(logits / temperature, axis=-1)  # [B, T, V]
    logp = jnp.take_along_axis(logp_all, targets[..., None], axis=-1)[..., 0]
    entropy = -(jnp.exp(logp_all) * logp_all).sum(axis=-1)
    return logp, entropy
