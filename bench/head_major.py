"""A what-if KV-cache layout for the decode benchmarks: k, v stored `[B, Hkv, S, D]`, not `[B, S, Hkv, D]`.

rtc's attention contracts q `[B, T, Hkv, G, D]` with k `[B, S, Hkv, D]` in dots batched over
(B, Hkv). XLA's CPU dots want batch dimensions major, so with the `[B, S, Hkv, D]` cache it copies
both k and v of every layer into a transposed layout at every decode step: the whole cache, read
and written, to do a few FLOPs per byte. Storing the cache head-major makes those copies vanish.
These functions mirror `rtc.model.kv_cache.init_cache` / `write` and `rtc.model.transformer.attention`
/ `_attention_mask` with that one change, so a benchmark can swap them in at trace time.
"""

import jax
import jax.numpy as jnp


def init_cache(config, batch_size: int, max_len: int, dtype=jnp.float32) -> dict:
    """Like `kv_cache.init_cache`, with k, v: f[B, Hkv, S, D]."""
    shape = (batch_size, config.num_kv_heads, max_len, config.head_dim)
    layers = [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)} for _ in range(config.num_layers)]
    return {"layers": layers, "index": jnp.zeros((batch_size,), jnp.int32)}


def write(buffer: jax.Array, new: jax.Array, index: jax.Array) -> jax.Array:
    """Writes `new: [B, T, Hkv, D]` into `buffer: [B, Hkv, S, D]` at per-row slot `index: [B]`."""

    def write_row(row_buffer, row_new, row_index):
        return jax.lax.dynamic_update_slice(row_buffer, row_new.astype(row_buffer.dtype), (0, row_index, 0))

    return jax.vmap(write_row)(buffer, new.transpose(0, 2, 1, 3), index)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """q: [B, T, H, D]; k, v: [B, Hkv, S, D]; mask: bool[B, T, S]. Returns [B, T, H, D]."""
    b, t, h, d = q.shape
    hkv = k.shape[1]
    q = q.reshape(b, t, hkv, h // hkv, d)
    scores = jnp.einsum("btkgd,bksd->bkgts", q, k) / jnp.sqrt(d).astype(q.dtype)  # [B, Hkv, G, T, S]
    scores = jnp.where(mask[:, None, None], scores.astype(jnp.float32), -1e30)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    return jnp.einsum("bkgts,bksd->btkgd", probs, v).reshape(b, t, h, d)


def attention_mask(positions: jax.Array, cache) -> jax.Array:
    """Like `transformer._attention_mask(positions: i32[B, T], cache)` with a cache, reading S from axis 2."""
    t = positions.shape[1]
    s = cache["layers"][0]["k"].shape[2]
    query_slots = cache["index"][:, None] + jnp.arange(t)[None, :]  # [B, T]
    return jnp.arange(s)[None, None, :] <= query_slots[:, :, None]
