"""Token selection: greedy, temperature, top-k and top-p (nucleus) sampling.

Each rule maps `logits: f32[B, V]` to `f32[B, V]` with excluded tokens set to -inf; the sampler then
draws from the result (or takes its argmax when greedy).
"""

import dataclasses

import jax
import jax.numpy as jnp
from rtc.errors import ConfigError

NEG_INF = -jnp.inf


@dataclasses.dataclass(frozen=True)
class SamplingRule:
    """`temperature == 0` is greedy; `top_k == 0` and `top_p == 1` disable those filters."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self):
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def get_next_tokens(self, logits: jax.Array, rng: jax.Array) -> jax.Array:
        """Draws `i32[B]` from `logits: f32[B, V]`."""
        if self.greedy:
            return first_argmax(logits)
        filtered = top_p_filter(top_k_filter(logits / self.temperature, self.top_k), self.top_p)
        # The Gumbel-max trick, as jax.random.categorical does, with the argmax below.
        return first_argmax(filtered + jax.random.gumbel(rng, filtered.shape, filtered.dtype))


def first_argmax(x: jax.Array) -> jax.Array:
    """`i32[B]`: the first index of each row's maximum of `x: f32[B, V]` (as `jnp.argmax`, but a row
    holding NaN gives an arbitrary index rather than the NaN's: logits are checked finite elsewhere).

    Written as max, then min index at the max: XLA:CPU runs `argmax`'s variadic reduce as a scalar
    loop, 10x slower than these two reductions (1.07x on a whole sampler call, bench/decode_ideas.py).
    """
    v = x.shape[-1]
    at_max = x == jnp.max(x, axis=-1, keepdims=True)
    return jnp.minimum(jnp.min(jnp.where(at_max, jnp.arange(v), v), axis=-1), v - 1).astype(jnp.int32)


def top_k_filter(logits: jax.Array, k: int) -> jax.Array:
    """Keeps the `k` largest logits per row, ties at the k-th value kept (Fan et al. 2018)."""
    if k == 0 or k >= logits.shape[-1]:
        return logits
    kth = jax.lax.top_k(logits, k)[0][..., -1:]  # [B, 1]
    return jnp.where(logits < kth, NEG_INF, logits)


def top_p_filter(logits: jax.Array, p: float) -> jax.Array:
    """Keeps the smallest set of tokens whose probability mass reaches `p` (Holtzman et al. 2020)."""
    if p >= 1.0:
        return logits
    sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]  # [B, V] descending
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly larger tokens
    kept = jnp.where(mass_before < p, sorted_logits, jnp.inf)
    threshold = jnp.min(kept, axis=-1, keepdims=True)  # smallest kept logit
    return jnp.where(logits < threshold, NEG_INF, logits)
