"""KV-cache layout: the old `[B, S, Hkv, D]` (slots before heads) against rtc's `[B, Hkv, S, D]`.

Run: `python bench/kv_write.py` (about 10 s on 2 CPU cores). The evidence for the library's
heads-before-slots layout (`rtc.model.kv_cache`, `rtc.model.transformer.attention`). Each layout
writes one decode token into every layer's k and v buffer (the sampler's demo shape: batch 32, 160
slots, cpu-small) for `STEPS` steps inside one `lax.fori_loop`, as the sampler does, and reports
microseconds per step (median of several calls after a warmup call), for the writes alone and with
each step's attention of one query token over every layer's cache. Layouts:
  slots-major [B, S, Hkv, D]   the layout before the change, defined here: the same per-row vmap
                               write, and attention contracting q `[B, T, Hkv, G, D]` with k, v in
                               dots batched over (B, Hkv), which XLA's CPU dots want major, so it
                               copies every layer's whole k and v into that layout at every step
  heads-major [B, Hkv, S, D]   rtc as it is: `kv_cache.write`, `transformer.attention`
"""

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from rtc.model import kv_cache, model_config, transformer

BATCH, SLOTS, STEPS, REPS = 32, 160, 128, 7


def slots_major_init_cache(config, batch_size: int, max_len: int, dtype=jnp.float32) -> dict:
    """The old `kv_cache.init_cache`: k, v f[B, S, Hkv, D]."""
    shape = (batch_size, max_len, config.num_kv_heads, config.head_dim)
    layers = [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)} for _ in range(config.num_layers)]
    return {"layers": layers, "index": jnp.zeros((batch_size,), jnp.int32)}


def slots_major_write(buffer: jax.Array, new: jax.Array, index: jax.Array) -> jax.Array:
    """The old `kv_cache.write`: `new: [B, T, H, D]` into `buffer: [B, S, H, D]` at slot `index: [B]`."""

    def write_row(row_buffer, row_new, row_index):
        return jax.lax.dynamic_update_slice(row_buffer, row_new.astype(row_buffer.dtype), (row_index, 0, 0))

    return jax.vmap(write_row)(buffer, new, index)


def slots_major_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """The old `transformer.attention`: q [B, T, H, D]; k, v [B, S, Hkv, D]; returns [B, T, H, D]."""
    b, t, h, d = q.shape
    hkv = k.shape[2]
    q = q.reshape(b, t, hkv, h // hkv, d)
    scores = jnp.einsum("btkgd,bskd->bkgts", q, k) / jnp.sqrt(d).astype(q.dtype)  # [B, Hkv, G, T, S]
    scores = jnp.where(mask[:, None, None], scores.astype(jnp.float32), -1e30)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bskd->btkgd", probs, v)  # [B, T, Hkv, G, D]
    return out.reshape(b, t, h, d)


# name: (init_cache, write, attention, heads_axis): heads_axis is where [B, ?, ?, D] arrays keep heads
VARIANTS = {
    "slots-major [B, S, Hkv, D] (old)": (slots_major_init_cache, slots_major_write, slots_major_attention, 2),
    "heads-major [B, Hkv, S, D] (rtc)": (kv_cache.init_cache, kv_cache.write, transformer.attention, 1),
}


def decode_steps(write, attention, layers, new, query, with_attention: bool):
    """`STEPS` decode-token writes into every buffer of `layers`, each step optionally followed by
    attention of one query token over each layer's cache, as the sampler's decode step does.

    new, query: one token's k and q in the variant's layout. Returns (layers, sum of attention outputs).
    """

    def step(i, carry):
        layers, total = carry
        index = jnp.full((BATCH,), i, jnp.int32)
        layers = jax.tree.map(lambda buffer: write(buffer, new + i.astype(new.dtype), index), layers)
        if with_attention:
            mask = jnp.broadcast_to(jnp.arange(SLOTS) <= i, (BATCH, 1, SLOTS))
            for layer in layers:
                total = total + attention(query, layer["k"], layer["v"], mask)
        return layers, total

    return jax.lax.fori_loop(0, STEPS, step, (layers, jnp.zeros_like(query)))


def time_variant(init_cache, write, attention, heads_axis: int, config, with_attention: bool):
    """(median us per decode step, attention output `[B, H, 1, D]` after one call from an empty cache)."""
    layers = init_cache(config, BATCH, SLOTS)["layers"]
    new = jnp.ones((BATCH, config.num_kv_heads, 1, config.head_dim), jnp.float32)  # [B, Hkv, 1, D]
    new = new * jnp.arange(1, config.num_kv_heads + 1, dtype=jnp.float32)[:, None, None]  # heads differ
    query = jnp.ones((BATCH, config.num_heads, 1, config.head_dim), jnp.float32) / config.head_dim
    if heads_axis == 2:  # [B, 1, H, D]
        new, query = new.transpose(0, 2, 1, 3), query.transpose(0, 2, 1, 3)
    run = jax.jit(
        lambda layers: decode_steps(write, attention, layers, new, query, with_attention), donate_argnums=0
    )
    layers, total = jax.block_until_ready(run(layers))
    first_total = np.asarray(total).transpose(0, 2, 1, 3) if heads_axis == 2 else np.asarray(total)
    times = []
    for _ in range(REPS):
        start = time.perf_counter()
        layers, _ = jax.block_until_ready(run(layers))
        times.append(time.perf_counter() - start)
    return statistics.median(times) / STEPS * 1e6, first_total


def main():
    config = model_config("cpu-small", vocab_size=1024)
    buffers = 2 * config.num_layers
    megabytes = buffers * BATCH * SLOTS * config.num_kv_heads * config.head_dim * 4 / 2**20
    print(
        f"KV cache per decode step: {buffers} buffers of {BATCH} rows x {SLOTS} slots x "
        f"{config.num_kv_heads} heads x {config.head_dim} ({megabytes:.0f} MiB in all), {STEPS} steps in one "
        f"fori_loop; median of {REPS} calls; shared machine, so noisy"
    )
    print(f"{'layout':<34} {'write us/step':>14} {'write+attention us/step':>24} {'same output':>12}")
    reference, rows = None, {}
    for name, (init_cache, write, attention, heads_axis) in VARIANTS.items():
        write_only, _ = time_variant(init_cache, write, attention, heads_axis, config, with_attention=False)
        with_attention, total = time_variant(
            init_cache, write, attention, heads_axis, config, with_attention=True
        )
        reference = total if reference is None else reference
        same = "yes" if np.allclose(total, reference, rtol=1e-5) else "NO"
        rows[name] = with_attention
        print(f"{name:<34} {write_only:>14.1f} {with_attention:>24.1f} {same:>12}")
    old, new = rows.values()
    print(
        f"heads-major write+attention speedup: {old / new:.2f}x; same output: attention outputs after one "
        f"call equal the old layout's"
    )


if __name__ == "__main__":
    main()
