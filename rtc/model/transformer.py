"""A decoder-only transformer used as a pure function.

`apply(params, tokens[B, T], positions[B, T], cache) -> (logits[B, T, V], values[B, T] | None, cache)`

Llama architecture (Touvron et al. 2023): pre-RMSNorm (Zhang & Sennrich 2019), rotary positions
(Su et al. 2021, interleaved-pair convention as in Meta's and llama2.c's code), grouped-query
attention (Ainslie et al. 2023), SwiGLU MLP (Shazeer 2020). Optional tied embeddings and an
optional scalar head (critic / ORM / PRM score per token). Config switches cover the pretrained
families loaded by `rtc.pretrained`: q/k/v biases (Qwen2), `(1 + w)` norms, embedding scaling and a
GELU-tanh gate (Gemma), and rotary frequency scaling (linear; Llama 3.1's).
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from rtc.errors import ConfigError
from rtc.parallel.logical import constrain
from rtc.model import kv_cache, paged_attention, paged_cache
from rtc.model.config import ModelConfig

_init = nn.initializers.normal(stddev=0.02)


def _norm_init(c: ModelConfig):
    """Norm scales start at an effective 1 (stored as 1 - norm_offset)."""
    return nn.initializers.constant(1.0 - c.norm_offset) if c.norm_offset else nn.initializers.ones


def rms_norm(x: jax.Array, scale: jax.Array, eps: float, offset: float = 0.0) -> jax.Array:
    """RMSNorm: `(offset + scale) * x / sqrt(mean(x^2) + eps)` (Zhang & Sennrich 2019), in float32.

    Gemma stores `scale - 1` (`offset = 1`, HF `GemmaRMSNorm`).
    """
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    if offset:
        scale = offset + scale.astype(jnp.float32)
    return (normed * scale).astype(x.dtype)


def rope_frequencies(c: ModelConfig) -> jax.Array:
    """f32[D/2]: `theta^(-2j/D)`, rescaled when `c.rope_scaling` is set.

    "linear": divided by the factor (position interpolation, Chen et al. 2023). "llama3": wavelengths
    longer than `original_max_len / low_freq_factor` are stretched by the factor, those shorter than
    `original_max_len / high_freq_factor` kept, the band between interpolated (Meta's Llama 3.1
    `apply_scaling`; HF `_compute_llama3_parameters`).
    """
    d = c.head_dim
    inv_freq = c.rope_theta ** (-jnp.arange(0, d, 2, dtype=jnp.float32) / d)
    factor = c.rope_scaling_factor
    if c.rope_scaling == "linear":
        return inv_freq / factor
    if c.rope_scaling == "llama3":
        wavelen = 2 * math.pi / inv_freq
        low, high = c.rope_low_freq_factor, c.rope_high_freq_factor
        smooth = (c.rope_original_max_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * inv_freq / factor + smooth * inv_freq
        long = wavelen > c.rope_original_max_len / low
        short = wavelen < c.rope_original_max_len / high
        return jnp.where(long, inv_freq / factor, jnp.where(short, inv_freq, smoothed))
    return inv_freq


def apply_rope(
    x: jax.Array, positions: jax.Array, theta: float, inv_freq: jax.Array | None = None
) -> jax.Array:
    """Rotates adjacent pairs `(2j, 2j+1)` of `x: [B, H, T, D]` by `pos * theta^(-2j/D)` (RoFormer, eq. 34).

    `inv_freq: f32[D/2]` replaces `theta^(-2j/D)` (scaled frequencies, `rope_frequencies`).
    """
    d = x.shape[-1]
    if inv_freq is None:
        inv_freq = theta ** (-jnp.arange(0, d, 2, dtype=jnp.float32) / d)  # [D/2]
    angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B, T, D/2]
    cos = jnp.repeat(jnp.cos(angles), 2, axis=-1)[:, None]  # [B, 1, T, D]: cos_j at 2j and 2j+1
    sin = jnp.repeat(jnp.sin(angles), 2, axis=-1)[:, None]
    # (a, b) -> (a cos - b sin, b cos + a sin), written on the flat D axis: from the swapped pair (b, a)
    # times (-1, 1). Splitting the pairs and stacking them back costs XLA:CPU two copy fusions a call.
    x32 = x.astype(jnp.float32)
    swapped = x32.reshape(*x.shape[:-1], d // 2, 2)[..., ::-1].reshape(x.shape)  # [B, H, T, D]
    sign = jnp.tile(jnp.array([-1.0, 1.0], jnp.float32), d // 2)  # [D]
    return (x32 * cos + swapped * sign * sin).astype(x.dtype)


def dense(x: jax.Array, w: jax.Array) -> jax.Array:
    """`x: [..., In] @ w: [In, *Out] -> [..., *Out]` as one 2-D matmul.

    XLA:CPU runs a 2-D dot (rows = batch x time) much faster than the same 3-D einsum, forward and
    backward (the SwiGLU MLP's gradient: 50 ms against 82 ms at the cpu-small demo size).
    """
    lead, out = x.shape[:-1], w.shape[1:]
    y = x.reshape(-1, x.shape[-1]) @ w.reshape(w.shape[0], -1)
    return y.reshape(*lead, *out)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """Grouped-query attention.

    q: [B, H, T, D]; k, v: [B, Hkv, S, D]; mask: bool[B, T, S] (True = may attend). Returns [B, H, T, D].
    Query head h reads kv head h // (H / Hkv). Heads lead the sequence axis so both einsums batch
    over leading axes: with `[B, S, Hkv, D]` XLA copied the whole cache into this layout every step.
    """
    b, h, t, d = q.shape
    hkv = k.shape[1]
    q = q.reshape(b, hkv, h // hkv, t, d)
    scores = jnp.einsum("bkgtd,bksd->bkgts", q, k) / jnp.sqrt(d).astype(q.dtype)  # [B, Hkv, G, T, S]
    scores = jnp.where(mask[:, None, None], scores.astype(jnp.float32), -1e30)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgts,bksd->bkgtd", probs, v)  # [B, Hkv, G, T, D]
    return out.reshape(b, h, t, d)


class Block(nn.Module):
    """One pre-norm transformer layer: attention then SwiGLU, each with a residual."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x, positions, mask, layer_cache, cache_index, paged=None):
        c = self.config
        e, h, hkv, d, f = c.embed_dim, c.num_heads, c.num_kv_heads, c.head_dim, c.mlp_dim
        dtype = jnp.dtype(c.dtype)
        w_q = self.param("w_q", _init, (e, h, d))
        w_k = self.param("w_k", _init, (e, hkv, d))
        w_v = self.param("w_v", _init, (e, hkv, d))
        w_o = self.param("w_o", _init, (h, d, e))
        w_gate = self.param("w_gate", _init, (e, f))
        w_up = self.param("w_up", _init, (e, f))
        w_down = self.param("w_down", _init, (f, e))
        attn_norm = self.param("attn_norm", _norm_init(c), (e,))
        mlp_norm = self.param("mlp_norm", _norm_init(c), (e,))

        y = rms_norm(x, attn_norm, c.norm_eps, c.norm_offset)  # [B, T, E]
        q = constrain(dense(y, w_q.astype(dtype)), ("batch", "length", "heads", "head_dim"))  # [B, T, H, D]
        k = dense(y, w_k.astype(dtype))  # [B, T, Hkv, D]
        v = dense(y, w_v.astype(dtype))
        if c.qkv_bias:
            q = q + self.param("b_q", nn.initializers.zeros, (h, d)).astype(dtype)
            k = k + self.param("b_k", nn.initializers.zeros, (hkv, d)).astype(dtype)
            v = v + self.param("b_v", nn.initializers.zeros, (hkv, d)).astype(dtype)
        q, k, v = (a.transpose(0, 2, 1, 3) for a in (q, k, v))  # [B, H or Hkv, T, D]
        inv_freq = rope_frequencies(c) if c.rope_scaling else None
        q = apply_rope(q, positions, c.rope_theta, inv_freq)
        k = apply_rope(k, positions, c.rope_theta, inv_freq)
        if paged is not None:  # write through the plan, read through the page tables
            plan, query_slots, prefix = paged
            layer_cache = {
                "k": paged_cache.write(layer_cache["k"], k, plan),
                "v": paged_cache.write(layer_cache["v"], v, plan),
            }
            out = paged_attention.attend(
                q,
                layer_cache["k"].astype(dtype),
                layer_cache["v"].astype(dtype),
                plan.pages,
                query_slots,
                prefix,
            )
        else:
            if layer_cache is not None:
                layer_cache = {
                    "k": kv_cache.write(layer_cache["k"], k, cache_index),
                    "v": kv_cache.write(layer_cache["v"], v, cache_index),
                }
                k, v = layer_cache["k"].astype(dtype), layer_cache["v"].astype(dtype)
            out = attention(q, k, v, mask)  # [B, H, T, D]
        x = x + dense(
            out.transpose(0, 2, 1, 3).reshape(*x.shape[:2], h * d), w_o.reshape(h * d, e).astype(dtype)
        )

        y = rms_norm(x, mlp_norm, c.norm_eps, c.norm_offset)
        gate = constrain(dense(y, w_gate.astype(dtype)), ("batch", "length", "mlp"))  # [B, T, F]
        up = constrain(dense(y, w_up.astype(dtype)), ("batch", "length", "mlp"))
        act = nn.silu if c.activation == "silu" else lambda a: jax.nn.gelu(a, approximate=True)
        x = x + dense(act(gate) * up, w_down.astype(dtype))
        return x, layer_cache


class Transformer(nn.Module):
    """The decoder; `__call__(tokens[B, T], positions[B, T], cache | None)`."""

    config: ModelConfig

    @nn.compact
    def __call__(self, tokens, positions, cache=None):
        c = self.config
        dtype = jnp.dtype(c.dtype)
        embedding = self.param("embedding", _init, (c.vocab_size, c.embed_dim))  # [V, E]
        x = constrain(
            jnp.take(embedding, tokens, axis=0).astype(dtype), ("batch", "length", "embed")
        )  # [B, T, E]
        if c.embed_scale != 1.0:
            x = x * jnp.asarray(c.embed_scale, dtype)
        mask = _attention_mask(positions, cache)
        index = None if cache is None else cache["index"]
        paged = None
        if cache is not None and paged_cache.is_paged(cache):  # pages decided once for every layer
            plan = paged_cache.plan_write(cache, tokens.shape[1])
            query_slots = index[:, None] + jnp.arange(tokens.shape[1])[None, :]  # [B, T]
            paged, mask = (plan, query_slots, paged_cache.prefix(cache)), None
        new_layers = []
        for i in range(c.num_layers):
            layer_cache = None if cache is None else cache["layers"][i]
            x, layer_cache = Block(c, name=f"layer_{i}")(x, positions, mask, layer_cache, index, paged)
            new_layers.append(layer_cache)
        final_norm = self.param("final_norm", _norm_init(c), (c.embed_dim,))
        x = rms_norm(x, final_norm, c.norm_eps, c.norm_offset)
        if c.tie_embeddings:
            logits = dense(x, embedding.T.astype(dtype))  # [B, T, V]
        else:
            logits = dense(x, self.param("lm_head", _init, (c.embed_dim, c.vocab_size)).astype(dtype))
        values = None
        if c.scalar_head:
            w_value = self.param("value_head", nn.initializers.zeros, (c.embed_dim,))
            b_value = self.param("value_bias", nn.initializers.zeros, ())
            values = (jnp.einsum("bte,e->bt", x, w_value.astype(dtype)) + b_value).astype(jnp.float32)
        new_cache = None
        if paged is not None:
            new_cache = paged_cache.after_write(cache, new_layers, paged[0], tokens.shape[1])
        elif cache is not None:
            new_cache = {"layers": new_layers, "index": cache["index"] + tokens.shape[1]}
        logits = constrain(logits, ("batch", "length", "vocab"))  # [B, T, V]
        return logits.astype(jnp.float32), values, new_cache


def _attention_mask(positions: jax.Array, cache) -> jax.Array:
    """bool[B, T, S]: which keys each query may attend to.

    With a cache, a query at slot q sees keys at slots <= q. Without one, attention is causal within
    segments, and a position of 0 starts a new segment, so packed examples never see each other.
    """
    b, t = positions.shape
    if cache is None:
        causal = jnp.arange(t)[:, None] >= jnp.arange(t)[None, :]  # [T, T]
        segments = jnp.cumsum(positions == 0, axis=1)  # [B, T]
        return causal[None] & (segments[:, :, None] == segments[:, None, :])
    s = kv_cache.num_slots(cache)
    query_slots = cache["index"][:, None] + jnp.arange(t)[None, :]  # [B, T]
    return jnp.arange(s)[None, None, :] <= query_slots[:, :, None]


def init_params(config: ModelConfig, rng: jax.Array) -> dict:
    """Fresh parameters (a plain nested dict)."""
    tokens = jnp.zeros((1, 8), jnp.int32)
    return Transformer(config).init(rng, tokens, jnp.arange(8)[None])["params"]


@dataclasses.dataclass(frozen=True)
class Model:
    """The network as the functions its callers need; hashable, so it can be a static jit argument.

    Samplers, losses and searches take a `Model` and use only `apply`, `init_cache` and
    `max_seq_len`, so they never depend on the network's internals.
    """

    config: ModelConfig

    def apply(self, params, tokens, positions, cache=None):
        """`(params, i32[B, T], i32[B, T], cache | None) -> (f32[B, T, V], f32[B, T] | None, cache | None)`."""
        return Transformer(self.config).apply({"params": params}, tokens, positions, cache)

    def init_cache(
        self, batch_size: int, max_len: int, dtype=jnp.float32, num_pages: int | None = None
    ) -> dict:
        return kv_cache.init_cache(self.config, batch_size, max_len, dtype, num_pages)

    def pool_pages(self, unique_rows: int, prompt_len: int, rows: int, new_tokens: int) -> int | None:
        """Pages a paged cache needs for `unique_rows` prompts forked into `rows` rows that each write
        `new_tokens` more (`paged_cache.pool_pages`); None for a dense cache."""
        ps = self.config.kv_page_size
        return paged_cache.pool_pages(unique_rows, prompt_len, rows, new_tokens, ps) if ps else None

    def grow_cache(self, cache: dict, max_len: int) -> dict:
        if max_len > self.config.max_seq_len:
            raise ConfigError(f"cache length {max_len} exceeds the model's context {self.config.max_seq_len}")
        return kv_cache.grow(cache, max_len)

    def init_params(self, rng: jax.Array) -> dict:
        return init_params(self.config, rng)

    @property
    def max_seq_len(self) -> int:
        return self.config.max_seq_len
