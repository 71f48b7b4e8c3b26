"""The prompt's side of decoding: prefill into a fresh KV cache, and forking prefilled rows into branches.

Shared by the sampler (`sampler.py`), slot refill (`refill.py`), the token beam search (`beam_search.py`)
and the step-level search (`rtc.search.expand`). Forking copies a dense cache's rows; a paged cache's
branches name the prompt's pages instead (`rtc.model.paged_cache`), and its attention reads a prompt once
per run of branches.
"""

import jax
import jax.numpy as jnp

from rtc.model import kv_cache


def constrain(tree, sharding: jax.sharding.Sharding | None):
    """`tree` with every leaf constrained to `sharding` (e.g. rows over the mesh's `data` axis); as is without."""
    return tree if sharding is None else jax.lax.with_sharding_constraint(tree, sharding)


def pool_pages(model, unique_rows: int, prompt_len: int, rows: int, new_tokens: int) -> int | None:
    """`model.pool_pages(...)` (pages a paged cache needs), or None for a model without pages."""
    pages = getattr(model, "pool_pages", None)
    return None if pages is None else pages(unique_rows, prompt_len, rows, new_tokens)


def constrain_cache(cache: dict, sharding: jax.sharding.Sharding | None) -> dict:
    """`cache` with its row leaves constrained to `sharding` (a paged cache's pool is left to the compiler)."""
    rows, rest = kv_cache.split_rows(cache)
    return kv_cache.join(constrain(rows, sharding), rest)


def fork(next_logits: jax.Array | None, cache: dict, rows: jax.Array) -> tuple[jax.Array | None, dict]:
    """Row `r` continues from prefilled row `rows[r]` (`rows: i32[R]`): copies for a dense cache, shared
    pages for a paged one."""
    logits = None if next_logits is None else jnp.take(next_logits, rows, axis=0)
    return logits, kv_cache.reorder(cache, rows)


def prefill(
    model,
    params,
    prompt_tokens: jax.Array,
    prompt_lengths: jax.Array,
    cache_len: int,
    cache_dtype,
    cache_sharding: jax.sharding.Sharding | None = None,
    num_pages: int | None = None,
) -> tuple[jax.Array | None, dict]:
    """Reads right-padded prompts into a fresh KV cache in one parallel forward pass.

    prompt_tokens: i32[B, P]; prompt_lengths: i32[B] (>= 1); the cache holds `cache_len` (>= P) slots of
    `cache_dtype`, its rows constrained to `cache_sharding` if given; a paged cache's pool has `num_pages`
    pages (`Model.pool_pages`), and rows forked from a prompt must stay in runs (`kv_cache.share_prefix`).
    Returns (f32[B, V] logits after each prompt's last token, None for a model
    without them (a head-only verifier); cache whose `index: i32[B]` is each row's next slot, its prompt
    length).
    """
    b, p = prompt_tokens.shape
    cache = (
        model.init_cache(b, cache_len, cache_dtype)
        if num_pages is None
        else model.init_cache(b, cache_len, cache_dtype, num_pages)
    )
    cache = constrain_cache(cache, cache_sharding)
    positions = jnp.broadcast_to(jnp.arange(p, dtype=jnp.int32), (b, p))
    logits, _, cache = model.apply(params, prompt_tokens, positions, cache)
    # rows forked from these later read each prompt once per run of rows (paged; nothing for dense)
    cache = kv_cache.share_prefix({**cache, "index": prompt_lengths.astype(jnp.int32)}, p)
    if logits is None:
        return None, cache
    next_logits = jnp.take_along_axis(logits, (prompt_lengths - 1)[:, None, None], axis=1)[:, 0]
    return next_logits, cache
