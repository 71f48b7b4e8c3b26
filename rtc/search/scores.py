"""Path scores kept incrementally: each step adds its verifier readings, nothing is re-scored.

The running statistics (`last`, `min`, `sum`, `log_sum`, `count` of the step probabilities) give every
aggregation of `rtc.rewards.reward_model.AGGREGATIONS` exactly as re-scoring the whole path would:
last (Snell et al. 2024), min (Wang et al. 2024, Math-Shepherd), product (Lightman et al. 2023) and
mean. A path with no scored step scores 0, as in `reward_model.aggregate`.
"""

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class StepScores:
    last: jax.Array  # f32[R]
    min: jax.Array  # f32[R]
    sum: jax.Array  # f32[R]
    log_sum: jax.Array  # f32[R]
    count: jax.Array  # i32[R]
    nan: jax.Array  # i32[R]: readings that were not finite (skipped, counted)


def empty(rows: int) -> StepScores:
    zeros = jnp.zeros((rows,), jnp.float32)
    return StepScores(
        zeros,
        jnp.full((rows,), jnp.inf),
        zeros,
        zeros,
        jnp.zeros((rows,), jnp.int32),
        jnp.zeros((rows,), jnp.int32),
    )


def add(scores: StepScores, probs: jax.Array, read: jax.Array) -> StepScores:
    """Adds the readings `probs: f32[R, S]` where `read: bool[R, S]` (in order along S).

    A non-finite reading (a verifier returning NaN) is skipped and counted in `nan`, so the path keeps
    the score of its finite steps.
    """
    finite = jnp.isfinite(probs)
    ok = read & finite
    s = probs.shape[1]
    last_index = jnp.max(jnp.where(ok, jnp.arange(s)[None, :], -1), axis=1)  # [R]
    last = jnp.take_along_axis(probs, jnp.maximum(last_index, 0)[:, None], axis=1)[:, 0]
    return StepScores(
        last=jnp.where(last_index >= 0, last, scores.last),
        min=jnp.minimum(scores.min, jnp.min(jnp.where(ok, probs, jnp.inf), axis=1)),
        sum=scores.sum + jnp.sum(jnp.where(ok, probs, 0.0), axis=1),
        log_sum=scores.log_sum + jnp.sum(jnp.where(ok, jnp.log(jnp.maximum(probs, 1e-30)), 0.0), axis=1),
        count=scores.count + ok.sum(axis=1),
        nan=scores.nan + (read & ~finite).sum(axis=1),
    )


def aggregate(scores: StepScores, name: str) -> jax.Array:
    """f32[R]: the path score under aggregation `name`; 0 for a path with no scored step."""
    has = scores.count > 0
    value = {
        "last": scores.last,
        "min": scores.min,
        "product": jnp.exp(scores.log_sum),
        "mean": scores.sum / jnp.maximum(scores.count, 1),
    }[name]
    return jnp.where(has, value, 0.0)
