"""Token and trace confidence, and the online stop threshold, of DeepConf.

Fu et al. 2025, "Deep Think with Confidence" (DeepConf), sec. 2-3:
- token confidence `C_i = -(1/k) sum_{j<=k} log P_i(j)`, the negative mean of the k largest log-probs of
  the distribution token i was drawn from: high when the distribution is peaked;
- group confidence `C_G = (1/|G|) sum_{t in G} C_t` over a sliding window G of the last `window` tokens;
- per trace: the lowest group confidence, the mean of the bottom 10% of its group confidences, and the
  tail confidence (the mean token confidence of its last tokens);
- online: a warm-up of N_init traces per problem sets the threshold `s = Percentile_{100 - eta}` of their
  lowest group confidences; a later trace stops when its current window's confidence falls below `s`
  (`eta = 10`: DeepConf-low, aggressive; `eta = 90`: DeepConf-high, conservative).

Array functions here run under `jax.jit` (the sampler calls them every step) and on numpy inputs alike.
"""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from rtc.errors import ConfigError

BOTTOM_FRACTION = 0.1  # DeepConf's "bottom 10% group confidence"


@flax.struct.dataclass
class TraceConfidence:
    """Per-trace confidences (Fu et al. 2025, sec. 2), each f32[B]."""

    lowest_group: jax.Array  # the minimum window confidence (DeepConf's default measure)
    bottom_group: jax.Array  # mean of the lowest 10% of window confidences
    tail: jax.Array  # mean token confidence over the last `tail` tokens
    mean: jax.Array  # mean token confidence over the whole trace (DeepConf's "average trace confidence")


def token_confidence(logp: jax.Array, k: int) -> jax.Array:
    """f32[B]: `C = -mean_{j<=k} log P(j)` over the k largest entries of `logp: f32[B, V]` (normalized
    log-probs), Fu et al. 2025."""
    return -jnp.mean(jax.lax.top_k(logp, k)[0], axis=-1)


def current_window(confidences: jax.Array, step: jax.Array, window: int) -> tuple[jax.Array, jax.Array]:
    """(f32[B] mean token confidence of columns `max(0, step + 1 - window) .. step`, bool[] the window is
    full): the group confidence of the window ending at the token just written at column `step`.

    confidences: f32[B, N], zero in columns not yet written (so a short prefix sums only what exists).
    """
    n = confidences.shape[1]
    w = min(window, n)
    start = jnp.clip(step + 1 - w, 0, n - w)
    recent = jax.lax.dynamic_slice_in_dim(confidences, start, w, axis=1)  # f32[B, w]
    return jnp.sum(recent, axis=1) / jnp.minimum(step + 1, w), step + 1 >= window


def stop_decision(window_confidence: jax.Array, window_full: jax.Array, threshold: jax.Array) -> jax.Array:
    """bool[B]: DeepConf's online early stop (Fu et al. 2025, sec. 3.2, Algorithm 2): a full window whose
    group confidence is below the row's threshold `f32[B]` (-inf never stops)."""
    return window_full & (window_confidence < threshold)


def group_confidences(confidences: jax.Array, lengths: jax.Array, window: int) -> tuple[jax.Array, jax.Array]:
    """(f32[B, N] the group confidence of the window ending at each column, bool[B, N] it is a group):
    every full window of `window` tokens inside a trace, or the whole trace as one group when it is
    shorter than `window` (Fu et al. 2025). confidences: f32[B, N], zero after `lengths: i[B]`."""
    xp = jnp if isinstance(confidences, jax.Array) else np
    n = confidences.shape[1]
    sums = xp.cumsum(confidences, axis=1)  # f32[B, N]
    before = xp.concatenate([xp.zeros_like(sums[:, :window]), sums[:, :-window]], axis=1)[:, :n]
    columns = xp.arange(n)[None, :]
    groups = (sums - before) / xp.minimum(columns + 1, window)
    lengths = xp.asarray(lengths)[:, None]
    valid = (columns < lengths) & ((columns >= window - 1) | ((columns == lengths - 1) & (lengths < window)))
    return groups, valid


def trace_confidence(
    confidences: jax.Array, lengths: jax.Array, window: int, tail: int | None = None
) -> TraceConfidence:
    """The per-trace confidences of `confidences: f32[B, N]` (zero after `lengths: i[B]`); `tail`
    tokens for the tail confidence (default `window`). An empty trace has confidence 0."""
    xp = jnp if isinstance(confidences, jax.Array) else np
    tail = window if tail is None else tail
    lengths = xp.asarray(lengths)
    groups, valid = group_confidences(confidences, lengths, window)
    count = xp.sum(valid, axis=1)  # i[B]
    lowest = xp.where(count > 0, xp.min(xp.where(valid, groups, xp.inf), axis=1), 0.0)
    ranked = xp.sort(xp.where(valid, groups, xp.inf), axis=1)  # f32[B, N], groups first, ascending
    keep = xp.maximum(xp.ceil(BOTTOM_FRACTION * count), 1)[:, None]  # at least the lowest group
    in_bottom = xp.arange(groups.shape[1])[None, :] < keep
    bottom = xp.sum(xp.where(in_bottom & (count[:, None] > 0), ranked, 0.0), axis=1) / keep[:, 0]
    columns = xp.arange(confidences.shape[1])[None, :]
    in_tail = (columns < lengths[:, None]) & (columns >= lengths[:, None] - tail)
    tail_mean = xp.sum(xp.where(in_tail, confidences, 0.0), axis=1) / xp.maximum(xp.minimum(lengths, tail), 1)
    mean = xp.sum(confidences, axis=1) / xp.maximum(lengths, 1)
    return TraceConfidence(lowest_group=lowest, bottom_group=bottom, tail=tail_mean, mean=mean)


def online_threshold(warmup_confidence: np.ndarray, eta: float) -> np.ndarray:
    """f64[P]: DeepConf's stop threshold per problem, `s = Percentile_{100 - eta}` of the warm-up traces'
    lowest group confidences `f[P, N_init]` (Fu et al. 2025, sec. 3.2): about eta% of the warm-up traces
    lie at or above it. `eta` is a percentage in (0, 100]."""
    if not 0.0 < eta <= 100.0:
        raise ConfigError(f"eta is the percentage of traces kept, in (0, 100], got {eta}")
    return np.percentile(np.asarray(warmup_confidence, np.float64), 100.0 - eta, axis=1)
