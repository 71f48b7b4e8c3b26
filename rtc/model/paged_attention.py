"""Attention over a paged KV cache, reading a shared prefix once for all the rows that share it.

`attend(q, pool_k, pool_v, pages, query_slots, prefix)`: q: [B, H, T, D]; pools: [Pg, Hkv, ps, D];
pages: i32[B, W]; query_slots: i32[B, T] (a query at slot s sees keys at slots <= s). Grouped-query heads
as `rtc.model.transformer.attention`.

Without a prefix it gathers each row's pages into `[B, Hkv, W * ps, D]` and attends: the plain `jnp`
reference (on TPU, Pallas's `ragged_paged_attention` kernel reads pages in place instead).

With a prefix (`share_prefix`: rows come in U runs of R = B / U rows that share their first pages, a
prompt's samples or a problem's search branches), the keys split in two, as in Hydragen (Juravsky et al.
2024) and cascade inference: the prefix's full pages are gathered once per run and all R rows' queries
meet them in one batched matmul, and each row gathers only its own pages after them; one softmax over both
score sets gives exactly the attention over the whole row. For N branches of a P-token prompt each step
reads P + N * (own) slots of keys rather than N * (P + own).
"""

import jax
import jax.numpy as jnp

NEG = -1e30


def gather(pool: jax.Array, pages: jax.Array) -> jax.Array:
    """`[B, Hkv, W * ps, D]`: each row's slots read through its page table (unallocated pages read page 0;
    the mask never reaches them)."""
    b, w = pages.shape
    rows = jnp.take(pool, jnp.maximum(pages, 0), axis=0)  # [B, W, Hkv, ps, D]
    _, _, hkv, ps, d = rows.shape
    return rows.transpose(0, 2, 1, 3, 4).reshape(b, hkv, w * ps, d)


def share_prefix(pages: jax.Array, index: jax.Array, prompt_len: int, page_size: int) -> dict:
    """`{"prefix_pages": i32[U, Wp], "prefix_len": i32[U]}` of U prefilled rows: the full pages of each
    prompt (`prompt_len` the padded width, `index: i32[U]` the true lengths). Rows forked from them later
    must stay in runs: row `b` reads prefix `b // (B / U)`."""
    wp = -(-prompt_len // page_size)
    return {"prefix_pages": pages[:, :wp], "prefix_len": (index // page_size) * page_size}


def _softmax_parts(scores: list[jax.Array], dtype) -> list[jax.Array]:
    """One softmax over the last axis of several `[..., S_i]` score arrays (masked entries hold NEG)."""
    top = jnp.max(jnp.stack([jnp.max(s, axis=-1) for s in scores]), axis=0)[..., None]
    exps = [jnp.exp(s - top) for s in scores]
    total = sum(jnp.sum(e, axis=-1, keepdims=True) for e in exps)
    return [(e / total).astype(dtype) for e in exps]


def attend(
    q: jax.Array,
    pool_k: jax.Array,
    pool_v: jax.Array,
    pages: jax.Array,
    query_slots: jax.Array,
    prefix: dict | None = None,
) -> jax.Array:
    """Attention of `q: [B, H, T, D]` over each row's paged keys and values (module docstring)."""
    b, h, t, d = q.shape
    _, hkv, ps, _ = pool_k.shape
    w = pages.shape[1]
    g = h // hkv
    qg = q.reshape(b, hkv, g, t, d) / jnp.sqrt(d).astype(q.dtype)
    if prefix is None:
        k, v = gather(pool_k, pages), gather(pool_v, pages)  # [B, Hkv, S, D]
        mask = jnp.arange(w * ps)[None, None, :] <= query_slots[:, :, None]  # [B, T, S]
        scores = jnp.einsum("bkgtd,bksd->bkgts", qg, k).astype(jnp.float32)
        probs = jax.nn.softmax(jnp.where(mask[:, None, None], scores, NEG), axis=-1).astype(v.dtype)
        return jnp.einsum("bkgts,bksd->bkgtd", probs, v).reshape(b, h, t, d)

    prefix_pages, prefix_len = prefix["prefix_pages"], prefix["prefix_len"]  # [U, Wp], [U]
    u, wp = prefix_pages.shape
    r = b // u
    # the prefix: gathered once per run, met by all its rows' queries in one matmul
    k_pre, v_pre = gather(pool_k, prefix_pages), gather(pool_v, prefix_pages)  # [U, Hkv, Sp, D]
    q_runs = qg.reshape(u, r, hkv, g, t, d)
    s_pre = jnp.einsum("urkgtd,uksd->urkgts", q_runs, k_pre).astype(jnp.float32)
    seen = jnp.arange(wp * ps)[None, :] < prefix_len[:, None]  # [U, Sp]
    s_pre = jnp.where(seen[:, None, None, None, None, :], s_pre, NEG).reshape(b, hkv, g, t, wp * ps)
    # each row's own pages after its prefix: enough columns for whatever it wrote since (see docstring)
    wo = min(w, w - wp + 2)
    first = jnp.repeat(prefix_len // ps, r)  # [B]
    columns = first[:, None] + jnp.arange(wo)[None, :]  # [B, Wo]
    own_pages = jnp.where(columns < w, jnp.take_along_axis(pages, jnp.minimum(columns, w - 1), axis=1), -1)
    k_own, v_own = gather(pool_k, own_pages), gather(pool_v, own_pages)  # [B, Hkv, So, D]
    slots = (columns[:, :, None] * ps + jnp.arange(ps)[None, None, :]).reshape(b, wo * ps)  # [B, So]
    usable = (columns < w).repeat(ps, axis=1)  # [B, So]
    mask = usable[:, None, :] & (slots[:, None, :] <= query_slots[:, :, None])  # [B, T, So]
    s_own = jnp.einsum("bkgtd,bksd->bkgts", qg, k_own).astype(jnp.float32)
    s_own = jnp.where(mask[:, None, None], s_own, NEG)
    p_pre, p_own = _softmax_parts([s_pre, s_own], v_own.dtype)
    out = jnp.einsum("urkgts,uksd->urkgtd", p_pre.reshape(u, r, hkv, g, t, wp * ps), v_pre).reshape(
        b, hkv, g, t, d
    )
    out = out + jnp.einsum("bkgts,bksd->bkgtd", p_own, v_own)
    return out.reshape(b, h, t, d)


def attend_ragged(q, pool_k, pool_v, pages, query_slots, kernel) -> jax.Array:
    """`attend` (no prefix) through a function with the signature of Pallas's TPU kernel
    `jax.experimental.pallas.ops.tpu.ragged_paged_attention` (or its `ref_ragged_paged_attention`).

    The kernel's layout: queries of all rows concatenated `[B * T, H, D]`, keys and values interleaved per
    kv head in one pool `[Pg, ps, 2 * Hkv, D]`, each row's key count `query_slots[:, -1] + 1` and causal
    masking of its T queries at the end of its keys, which is `attend`'s mask. Not used by default: JAX
    0.10.2's TPU interpret mode cannot run the kernel on CPU, so only the layout is checked here, against
    JAX's reference of the same signature.
    """
    b, h, t, d = q.shape
    queries = q.transpose(0, 2, 1, 3).reshape(b * t, h, d)
    kv = jnp.stack([pool_k, pool_v], axis=2)  # [Pg, Hkv, 2, ps, D]
    kv = kv.transpose(0, 3, 1, 2, 4).reshape(pool_k.shape[0], pool_k.shape[2], -1, d)  # [Pg, ps, 2Hkv, D]
    out = kernel(
        queries,
        kv,
        (query_slots[:, -1] + 1).astype(jnp.int32),
        jnp.maximum(pages, 0).astype(jnp.int32),
        (jnp.arange(b + 1) * t).astype(jnp.int32),
        jnp.array([b], jnp.int32),
        sm_scale=float(d) ** -0.5,
    )  # [B * T, H, D]
    return out.reshape(b, t, h, d).transpose(0, 2, 1, 3)
