"""What-ifs for the sampler's decode step, measured without editing rtc/.

Run: `python bench/decode_ideas.py` (about 45 s on 2 CPU cores). At the demo shape of
bench/decode_profile.py (cpu-small, vocab 1024, batch 32, prompt 32, 128 new tokens):
  A. `generate` as it is against swaps made at trace time (calls interleaved round-robin;
     tokens compared with the baseline's, same key):
       jnp.argmax       the sampling rule picks its token with `jnp.argmax`, whose variadic
                        (value, index) reduce XLA:CPU runs as a slow scalar loop, instead of the
                        library's `rules.first_argmax` (a max, then a min over matching indices)
       rope, stacked    `apply_rope` splitting the pairs and `jnp.stack`ing them back (two copy
                        fusions in XLA) instead of the library's rotation on the flat head axis,
                        `x * cos + pair_swap(x) * sign * sin` (the same rotation, bit for bit)
       both             the two above together: the sampler as it was before both changes
       fused qkv, g|u   each layer multiplies by [w_q | w_k | w_v] and by [w_gate | w_up] in one
                        matmul each (4 matmuls a layer, not 7); XLA hoists the weight concatenation
                        out of the decode loop, so this measures the matmuls alone
  B. the decode loop alone (`model.apply` one token a step, greedy feedback, in one `fori_loop`)
     with every step attending over all `PROMPT + NEW` cache slots, as the sampler does, against
     the same steps run in phases whose cache holds only the slots reachable by the phase's end
     (the cache grows between phases). Attention reads the whole cache each step, so its cost is
     linear in the slots allocated, not the slots used.
Times are medians after a warmup call; the machine is shared, so they are noisy.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

try:
    from bench.decode_profile import interleaved_median_seconds
except ImportError:  # run as `python bench/decode_ideas.py`: bench/ itself is on sys.path
    from decode_profile import interleaved_median_seconds

from rtc.model import Model, kv_cache, model_config, transformer
from rtc.sampling import sampler
from rtc.sampling.rules import SamplingRule

BATCH, PROMPT_LEN, NEW_TOKENS, REPS, PHASE = 32, 32, 128, 5, 32


class ArgmaxRule(SamplingRule):
    """`SamplingRule` picking with `jnp.argmax` (the library's rule takes `rules.first_argmax`, a max then
    the first matching index); no top-k / top-p: the demo's rule."""

    def get_next_tokens(self, logits, rng):
        if self.greedy:
            return jnp.argmax(logits, axis=-1).astype(jnp.int32)
        gumbel = jax.random.gumbel(rng, logits.shape, logits.dtype)  # as jax.random.categorical draws it
        return jnp.argmax(gumbel + logits / self.temperature, axis=-1).astype(jnp.int32)


def rope_with_stack(
    x: jax.Array, positions: jax.Array, theta: float, inv_freq: jax.Array | None = None
) -> jax.Array:
    """`transformer.apply_rope` as it was written before: the pairs split, rotated and `jnp.stack`ed back."""
    d = x.shape[-1]
    if inv_freq is None:
        inv_freq = theta ** (-jnp.arange(0, d, 2, dtype=jnp.float32) / d)  # [D/2]
    angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B, T, D/2]
    cos, sin = jnp.cos(angles)[:, None], jnp.sin(angles)[:, None]  # [B, 1, T, D/2]
    pairs = x.astype(jnp.float32).reshape(*x.shape[:-1], d // 2, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    rotated = jnp.stack([a * cos - b * sin, a * sin + b * cos], axis=-1)
    return rotated.reshape(x.shape).astype(x.dtype)


class FusedBlock(transformer.Block):
    """`transformer.Block` (same parameters) with the q|k|v and gate|up projections as one matmul each."""

    @nn.compact
    def __call__(self, x, positions, mask, layer_cache, cache_index, paged=None):
        assert paged is None, "the what-if covers the dense cache only"
        c = self.config
        e, h, hkv, d, f = c.embed_dim, c.num_heads, c.num_kv_heads, c.head_dim, c.mlp_dim
        dtype = jnp.dtype(c.dtype)
        init = transformer._init
        w_q = self.param("w_q", init, (e, h, d))
        w_k = self.param("w_k", init, (e, hkv, d))
        w_v = self.param("w_v", init, (e, hkv, d))
        w_o = self.param("w_o", init, (h, d, e))
        w_gate = self.param("w_gate", init, (e, f))
        w_up = self.param("w_up", init, (e, f))
        w_down = self.param("w_down", init, (f, e))
        attn_norm = self.param("attn_norm", nn.initializers.ones, (e,))
        mlp_norm = self.param("mlp_norm", nn.initializers.ones, (e,))

        y = transformer.rms_norm(x, attn_norm, c.norm_eps)
        w_qkv = jnp.concatenate([w.reshape(e, -1) for w in (w_q, w_k, w_v)], axis=1).astype(dtype)
        qkv = transformer.dense(y, w_qkv)  # [B, T, (H + 2 Hkv) D]
        q, k, v = jnp.split(qkv, [h * d, (h + hkv) * d], axis=-1)
        q = q.reshape(*x.shape[:2], h, d).transpose(0, 2, 1, 3)
        k = k.reshape(*x.shape[:2], hkv, d).transpose(0, 2, 1, 3)
        v = v.reshape(*x.shape[:2], hkv, d).transpose(0, 2, 1, 3)
        q = transformer.apply_rope(q, positions, c.rope_theta)
        k = transformer.apply_rope(k, positions, c.rope_theta)
        if layer_cache is not None:
            layer_cache = {
                "k": kv_cache.write(layer_cache["k"], k, cache_index),
                "v": kv_cache.write(layer_cache["v"], v, cache_index),
            }
            k, v = layer_cache["k"].astype(dtype), layer_cache["v"].astype(dtype)
        out = transformer.attention(q, k, v, mask)
        x = x + transformer.dense(
            out.transpose(0, 2, 1, 3).reshape(*x.shape[:2], h * d), w_o.reshape(h * d, e).astype(dtype)
        )
        y = transformer.rms_norm(x, mlp_norm, c.norm_eps)
        gate, up = jnp.split(
            transformer.dense(y, jnp.concatenate([w_gate, w_up], axis=1).astype(dtype)), 2, -1
        )
        x = x + transformer.dense(nn.silu(gate) * up, w_down.astype(dtype))
        return x, layer_cache


def sampler_variants(config, params, prompts):
    """A: `{name: (seconds per generate call, fraction of tokens equal to the baseline's)}`."""
    rule, argmax = SamplingRule(temperature=1.0), ArgmaxRule(temperature=1.0)
    rope = (transformer, "apply_rope", rope_with_stack)
    variants = {  # name: (rule, (module, attribute, value) swaps while tracing)
        "baseline": (rule, ()),
        "jnp.argmax": (argmax, ()),
        "rope, stacked": (rule, (rope,)),
        "both": (argmax, (rope,)),
        "fused qkv, g|u": (rule, ((transformer, "Block", FusedBlock),)),
    }
    calls, tokens = {}, {}
    for name, (rule, swaps) in variants.items():
        cfg = sampler.SamplerConfig(max_new_tokens=NEW_TOKENS, stop_ids=(), rule=rule)
        # A `Model` class of its own: `sample`'s jit keys on the model, so each variant is traced
        # anew under its swaps rather than served from another variant's cached trace.
        model = type(f"Model_{len(calls)}", (Model,), {})(config)
        calls[name] = lambda model=model, cfg=cfg: sampler.generate(
            model, params, prompts, jax.random.key(0), cfg
        )
        saved = [(module, attribute, getattr(module, attribute)) for module, attribute, _ in swaps]
        for module, attribute, value in swaps:
            setattr(module, attribute, value)
        try:
            tokens[name] = np.asarray(calls[name]().tokens)  # traces and compiles under the swaps
        finally:
            for module, attribute, value in saved:
                setattr(module, attribute, value)
    seconds = interleaved_median_seconds(calls)
    return {name: (seconds[name], np.mean(tokens[name] == tokens["baseline"])) for name in variants}


def grow(cache: dict, slots: int) -> dict:
    """The cache with its slot axis (2, `[B, Hkv, S, D]`) zero-padded to `slots`."""
    pad = lambda x: jnp.pad(x, ((0, 0), (0, 0), (0, slots - x.shape[2]), (0, 0)))
    return {"layers": jax.tree.map(pad, cache["layers"]), "index": cache["index"]}


def decode_loop(model, params, tokens, phases: tuple[int, ...]):
    """Prefill, then `NEW_TOKENS` greedy decode steps in `len(phases)` fori_loops; phase i's cache
    holds `phases[i]` slots. Returns (i32[B, NEW] tokens, f32[B, V] last logits)."""
    positions = jnp.broadcast_to(jnp.arange(PROMPT_LEN), tokens.shape)
    logits, _, cache = model.apply(params, tokens, positions, model.init_cache(BATCH, phases[0]))
    token = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)
    out = jnp.zeros((BATCH, NEW_TOKENS), jnp.int32)
    start, last = 0, logits[:, -1]
    for slots in phases:
        cache = grow(cache, slots)
        stop = slots - PROMPT_LEN

        def step(i, carry):
            token, cache, out, _ = carry
            logits, _, cache = model.apply(params, token[:, None], cache["index"][:, None], cache)
            out = out.at[:, i].set(token)
            return jnp.argmax(logits[:, 0], axis=-1).astype(jnp.int32), cache, out, logits[:, 0]

        token, cache, out, last = jax.lax.fori_loop(start, stop, step, (token, cache, out, last))
        start = stop
    return out, last


def main():
    config = model_config("cpu-small", vocab_size=1024)
    model = Model(config)
    params = model.init_params(jax.random.key(0))
    prompts = np.random.default_rng(0).integers(5, 1024, (BATCH, PROMPT_LEN)).tolist()
    print(
        f"cpu-small (4L x 256, vocab 1024), batch {BATCH}, prompt {PROMPT_LEN}, {NEW_TOKENS} new tokens; "
        f"medians of {REPS} calls after warmup (shared machine: noisy)\n"
    )

    print("A. generate, temperature 1, with changes swapped in at trace time (interleaved)")
    results = sampler_variants(config, params, prompts)
    base = results["baseline"][0]
    print(f"   {'variant':<16} {'call ms':>8} {'ms/token':>8} {'vs base':>8} {'tokens = base':>14}")
    for name, (seconds, same) in results.items():
        print(
            f"   {name:<16} {seconds * 1e3:>8.0f} {seconds * 1e3 / NEW_TOKENS:>8.2f} {base / seconds:>7.2f}x "
            f"{same:>14.1%}"
        )

    full = PROMPT_LEN + NEW_TOKENS
    phased = tuple(range(PROMPT_LEN + PHASE, full + 1, PHASE))
    print(f"\nB. decode loop alone (model.apply + greedy feedback), {NEW_TOKENS} steps after the prefill")
    tokens = jnp.asarray(prompts, jnp.int32)
    runs = {
        name: jax.jit(lambda p, t, s=slots: decode_loop(model, p, t, s))
        for name, slots in ((f"one phase, {full} slots", (full,)), (f"phases {phased}", phased))
    }
    outputs = {name: jax.block_until_ready(run(params, tokens)) for name, run in runs.items()}
    seconds = interleaved_median_seconds(
        {name: (lambda r=run: r(params, tokens)) for name, run in runs.items()}
    )
    (name_a, (tok_a, log_a)), (name_b, (tok_b, log_b)) = outputs.items()
    for name in runs:
        print(
            f"   {name:<32} {seconds[name] * 1e3:>6.0f} ms  {seconds[name] * 1e3 / NEW_TOKENS:>5.2f} ms/token"
        )
    print(
        f"   phased / one phase: {seconds[name_b] / seconds[name_a]:.2f}; tokens equal: "
        f"{np.mean(np.asarray(tok_a) == np.asarray(tok_b)):.1%}; last logits max |diff| "
        f"{np.abs(np.asarray(log_a) - np.asarray(log_b)).max():.1e}; mean slots attended per step "
        f"{full} vs {np.mean([s for s in phased for _ in range(PHASE)]):.0f}"
    )


if __name__ == "__main__":
    main()
