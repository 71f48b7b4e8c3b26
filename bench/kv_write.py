"""KV-cache write cost: the vmap'd per-row write of `rtc.model.kv_cache` against alternatives.

Run: `python bench/kv_write.py` (about 20 s on 2 CPU cores). Each variant writes one decode token
into every layer's k and v buffer (the sampler's demo shape: batch 32, 160 slots, cpu-small) for
`STEPS` steps inside one `lax.fori_loop`, as the sampler does, and reports microseconds per step
(median of several calls after a warmup call), for the writes alone and with each step's attention
of one query token over every layer's cache. Variants:
  per-row vmap     `kv_cache.write`: vmap of `dynamic_update_slice`, which XLA lowers to a scatter
  per-row .at[]    `buffer.at[rows, index].set(new)`: the same per-row semantics, written directly
  shared index     one `lax.dynamic_update_slice` at a scalar slot (every row at the same slot)
  head-major       per-row vmap write into a `[B, Hkv, S, D]` cache, attention to match
                   (bench/head_major.py)
"""

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from rtc.model import kv_cache, model_config, transformer

try:
    from bench import head_major
except ImportError:  # run as `python bench/kv_write.py`: bench/ itself is on sys.path
    import head_major

BATCH, SLOTS, STEPS, REPS = 32, 160, 128, 7


def per_row_at(buffer, new, index):
    """new: [B, 1, H, D]; a scatter of one slot per row."""
    return buffer.at[jnp.arange(buffer.shape[0]), index].set(new[:, 0])


def shared_index(buffer, new, index):
    return jax.lax.dynamic_update_slice(buffer, new, (0, index[0], 0, 0))


# name: (init_cache, write, attention)
VARIANTS = {
    "per-row vmap": (kv_cache.init_cache, kv_cache.write, transformer.attention),
    "per-row .at[]": (kv_cache.init_cache, per_row_at, transformer.attention),
    "shared index": (kv_cache.init_cache, shared_index, transformer.attention),
    "head-major": (head_major.init_cache, head_major.write, head_major.attention),
}


def decode_steps(write, attention, layers, new, query, with_attention: bool):
    """`STEPS` decode-token writes into every buffer of `layers`, each step optionally followed by
    attention of one query token over each layer's cache, as the sampler's decode step does.

    new: f32[B, 1, Hkv, D]; query: f32[B, 1, H, D]. Returns (layers, sum of attention outputs).
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


def time_variant(init_cache, write, attention, config, with_attention: bool):
    """(median us per decode step, attention-output sum after one call from an empty cache)."""
    layers = init_cache(config, BATCH, SLOTS)["layers"]
    new = jnp.ones((BATCH, 1, config.num_kv_heads, config.head_dim), jnp.float32)
    query = jnp.ones((BATCH, 1, config.num_heads, config.head_dim), jnp.float32) / config.head_dim
    run = jax.jit(
        lambda layers: decode_steps(write, attention, layers, new, query, with_attention), donate_argnums=0
    )
    layers, total = jax.block_until_ready(run(layers))
    first_total = np.asarray(total)
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
    print(f"{'variant':<14} {'write us/step':>14} {'write+attention us/step':>24} {'same output':>12}")
    reference = None
    for name, (init_cache, write, attention) in VARIANTS.items():
        write_only, _ = time_variant(init_cache, write, attention, config, with_attention=False)
        with_attention, total = time_variant(init_cache, write, attention, config, with_attention=True)
        reference = total if reference is None else reference
        same = "yes" if np.allclose(total, reference, rtol=1e-5) else "NO"
        print(f"{name:<14} {write_only:>14.1f} {with_attention:>24.1f} {same:>12}")
    print("same output: attention outputs after one call equal the per-row vmap variant's")


if __name__ == "__main__":
    main()
