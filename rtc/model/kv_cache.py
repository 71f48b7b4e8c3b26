"""The KV cache: an explicit pytree passed into and returned from `apply`.

Layout (DESIGN.md): `{"layers": [{"k": f[B, S, Hkv, D], "v": f[B, S, Hkv, D]}, ...], "index": i32[B]}`.
`index[b]` is the next slot row b writes; slots are positions, so a query at slot `q` attends to
keys at slots `<= q`. Rows advance independently (right-padded prompts, ragged search steps).
"""

import jax
import jax.numpy as jnp

from rtc.model.config import ModelConfig


def init_cache(config: ModelConfig, batch_size: int, max_len: int, dtype=jnp.float32) -> dict:
    """An empty cache of `max_len` slots for `batch_size` rows."""
    if max_len > config.max_seq_len:
        raise ValueError(f"cache length {max_len} exceeds the model's context {config.max_seq_len}")
    shape = (batch_size, max_len, config.num_kv_heads, config.head_dim)
    layers = [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)} for _ in range(config.num_layers)]
    return {"layers": layers, "index": jnp.zeros((batch_size,), jnp.int32)}


def write(buffer: jax.Array, new: jax.Array, index: jax.Array) -> jax.Array:
    """Writes `new: [B, T, H, D]` into `buffer: [B, S, H, D]` at per-row slot `index: [B]`."""

    def write_row(row_buffer, row_new, row_index):
        return jax.lax.dynamic_update_slice(row_buffer, row_new.astype(row_buffer.dtype), (row_index, 0, 0))

    return jax.vmap(write_row)(buffer, new, index)


def reorder(cache: dict, rows: jax.Array) -> dict:
    """Gathers cache rows (`rows: i32[B']`), e.g. to keep the surviving branches of a search."""
    return jax.tree.map(lambda x: jnp.take(x, rows, axis=0), cache)
