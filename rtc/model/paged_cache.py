"""A paged KV cache whose rows share their prefix pages (PagedAttention, Kwon et al. 2023, vLLM).

Layout: `{"layers": [{"k": f[Pg, Hkv, ps, D], "v": ...}, ...], "pages": i32[B, W], "index": i32[B],
"peak": i32[]}`. Every layer's keys and values live in one pool of `Pg` pages of `ps` slots; row `b`'s slot
`s` is slot `s % ps` of page `pages[b, s // ps]` (`-1`: not allocated yet). `index` is each row's next slot,
as in the dense cache (`rtc.model.kv_cache`), `peak` the most pages ever in use, `overflow` whether the pool
ever ran out, and `pinned: i32[Pg]` references held by rows kept outside this cache (`pin`).

Rows share pages: forking a row into G branches, or keeping a search's survivors, copies page-table entries
(integers) and no keys (`reorder`). A page's reference count is the number of table entries naming it,
derived from the table whenever it is needed and never stored, so a page no row names is free at once and
none can leak. Before a call writes, `plan_write` gives every row an unshared page for each slot it writes:
a fresh page from the free list, or a copy of a shared one (copy-on-write, as vLLM's block manager does
for the partly filled last block), except that when every row naming a shared page writes into it the
first of them keeps it. All of it is static-shape array code inside the caller's compiled program.

Attention reads a row's keys through its page table, and a prefix shared by a run of rows once for the
run (`rtc.model.paged_attention`).
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rtc.errors import ConfigError
from rtc.model import paged_attention


def pages_per_row(max_len: int, page_size: int) -> int:
    """W: table columns for `max_len` slots."""
    return -(-max_len // page_size)


def pool_pages(unique_rows: int, prompt_len: int, rows: int, new_tokens: int, page_size: int) -> int:
    """Pages enough for `unique_rows` prompts of `prompt_len` slots forked into `rows` rows that each write
    `new_tokens` more: each row's own pages plus one for a copied (or unaligned) partial page.

    The dense cache's equivalent is `rows * pages_per_row(prompt_len + new_tokens, page_size)`.
    """
    own = pages_per_row(new_tokens, page_size) + 1
    return unique_rows * pages_per_row(prompt_len, page_size) + rows * own


def init(
    num_layers: int,
    num_kv_heads: int,
    head_dim: int,
    batch_size: int,
    max_len: int,
    page_size: int,
    num_pages: int | None = None,
    dtype=jnp.float32,
) -> dict:
    """An empty paged cache of `max_len` slots per row; `num_pages` (default: as many as the dense cache
    holds, `batch_size * W`) in the pool."""
    if page_size < 1:
        raise ConfigError(f"page_size must be >= 1, got {page_size}")
    w = pages_per_row(max_len, page_size)
    num_pages = batch_size * w if num_pages is None else num_pages
    shape = (num_pages, num_kv_heads, page_size, head_dim)
    layers = [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)} for _ in range(num_layers)]
    return {
        "layers": layers,
        "pages": jnp.full((batch_size, w), -1, jnp.int32),
        "index": jnp.zeros((batch_size,), jnp.int32),
        "peak": jnp.zeros((), jnp.int32),
        "overflow": jnp.zeros((), bool),
        "pinned": jnp.zeros((num_pages,), jnp.int32),
    }


def is_paged(cache: dict) -> bool:
    return "pages" in cache


def page_size(cache: dict) -> int:
    return cache["layers"][0]["k"].shape[2]


def num_pages(cache: dict) -> int:
    return cache["layers"][0]["k"].shape[0]


def num_slots(cache: dict) -> int:
    """Slots per row: W * ps."""
    return cache["pages"].shape[1] * page_size(cache)


def refcounts(pages: jax.Array, total: int) -> jax.Array:
    """i32[Pg]: how many table entries of `pages: i32[B, W]` name each page."""
    ids = jnp.where(pages >= 0, pages, total).reshape(-1)
    return jnp.zeros((total,), jnp.int32).at[ids].add(1, mode="drop")


def pages_in_use(cache: dict) -> jax.Array:
    """i32[]: pages some row names."""
    return jnp.sum(refcounts(cache["pages"], num_pages(cache)) > 0)


class WritePlan(NamedTuple):
    """What one call writes, decided once for every layer."""

    pages: jax.Array  # i32[B, W]: the table after allocation and copy-on-write
    copy_src: jax.Array  # i32[K]: pages copied before writing ...
    copy_dst: jax.Array  # i32[K]: ... into these (Pg: no copy)
    any_copy: jax.Array  # bool[]
    page_ids: jax.Array  # i32[B, T]: the page of each new slot (Pg: past the context, dropped)
    offsets: jax.Array  # i32[B, T]: its slot within the page
    overflow: jax.Array  # bool[]: the pool ran out of pages


def plan_write(cache: dict, t: int) -> WritePlan:
    """Pages for `t` new slots per row from `index`: allocation and copy-on-write (module docstring)."""
    pages, index = cache["pages"], cache["index"]
    b, w = pages.shape
    ps, total = page_size(cache), num_pages(cache)
    rows = jnp.arange(b, dtype=jnp.int32)
    slots = index[:, None] + jnp.arange(t, dtype=jnp.int32)[None, :]  # [B, T]
    columns = slots // ps  # [B, T]; >= W is past the context and dropped
    touched = jnp.zeros((b, w), bool).at[rows[:, None], columns].set(True, mode="drop")  # [B, W]

    ref = refcounts(pages, total) + cache["pinned"]  # [Pg]: rows outside this cache pin pages too
    named = touched & (pages >= 0)
    written = jnp.where(named, pages, total)  # [B, W]
    writers = jnp.zeros((total,), jnp.int32).at[written.reshape(-1)].add(1, mode="drop")
    first = (
        jnp.full((total,), b, jnp.int32)
        .at[written.reshape(-1)]
        .min(jnp.broadcast_to(rows[:, None], (b, w)).reshape(-1), mode="drop")
    )
    safe = jnp.maximum(pages, 0)
    shared = named & (ref[safe] > 1)
    keeps = shared & (writers[safe] == ref[safe]) & (first[safe] == rows[:, None])
    need = touched & ((pages < 0) | (shared & ~keeps))  # [B, W]: a fresh page
    copy = need & (pages >= 0)  # [B, W]: ... holding a copy of the shared one

    k = min(total, b * min(w, -(-t // ps) + 1))  # the most fresh pages one call can need
    free = jnp.nonzero(ref == 0, size=k, fill_value=total)[0]  # i32[K]
    rank = jnp.cumsum(need.reshape(-1)) - 1  # [B*W]
    fresh = jnp.where(rank < k, free[jnp.clip(rank, 0, k - 1)], total).reshape(b, w)
    overflow = jnp.any(need & (fresh == total))
    new_pages = jnp.where(need, jnp.where(fresh == total, -1, fresh), pages)

    which = jnp.nonzero(copy.reshape(-1), size=k, fill_value=b * w)[0]  # [K]
    copy_src = jnp.take(safe.reshape(-1), which, mode="fill", fill_value=0)
    copy_dst = jnp.take(
        jnp.where(new_pages >= 0, new_pages, total).reshape(-1), which, mode="fill", fill_value=total
    )
    page_ids = jnp.take_along_axis(new_pages, jnp.minimum(columns, w - 1), axis=1)  # [B, T]
    page_ids = jnp.where((columns < w) & (page_ids >= 0), page_ids, total)
    return WritePlan(
        pages=new_pages,
        copy_src=copy_src,
        copy_dst=copy_dst,
        any_copy=jnp.any(copy),
        page_ids=page_ids,
        offsets=slots % ps,
        overflow=overflow,
    )


def write(pool: jax.Array, new: jax.Array, plan: WritePlan) -> jax.Array:
    """`pool: [Pg, Hkv, ps, D]` after the plan's copies and then `new: [B, Hkv, T, D]` at its slots."""
    pool = jax.lax.cond(
        plan.any_copy,
        lambda p: p.at[plan.copy_dst].set(p[plan.copy_src], mode="drop"),
        lambda p: p,
        pool,
    )
    values = new.transpose(0, 2, 1, 3).astype(pool.dtype)  # [B, T, Hkv, D]
    return pool.at[plan.page_ids, :, plan.offsets].set(values, mode="drop")


def after_write(cache: dict, layers: list, plan: WritePlan, t: int) -> dict:
    """The cache once every layer wrote: the plan's table, `index + t`, the peak updated."""
    used = jnp.sum(refcounts(plan.pages, num_pages(cache)) + cache["pinned"] > 0)
    return {
        **cache,
        "layers": layers,
        "pages": plan.pages,
        "index": cache["index"] + t,
        "peak": jnp.maximum(cache["peak"], used),
        "overflow": cache["overflow"] | plan.overflow,
    }


# Prompts shorter than this many pages are read with each row's own pages: at a 32-token prompt the split
# softmax cost more than the shared read saved (0.88x the dense cache's search time against 0.97x without).
MIN_PREFIX_PAGES = 4


def share_prefix(cache: dict, prompt_len: int) -> dict:
    """The cache of U prefilled prompts (`prompt_len` the padded width) with their full pages marked as a
    prefix that rows forked from them read once per run (`paged_attention`); fork them into runs of rows
    (`reorder` with `rows = arange(B) // (B / U)`) and keep every later reorder within its run."""
    if prompt_len < MIN_PREFIX_PAGES * page_size(cache):
        return cache
    return {
        **cache,
        **paged_attention.share_prefix(cache["pages"], cache["index"], prompt_len, page_size(cache)),
    }


def prefix(cache: dict) -> dict | None:
    """The shared prefix (`share_prefix`), or None."""
    return {k: cache[k] for k in ("prefix_pages", "prefix_len")} if "prefix_pages" in cache else None


def pin(rest: dict, held: jax.Array | None) -> dict:
    """The pool part of a cache (`split_rows`) with the pages named by `held: i32[R, W]` pinned (None:
    none), so rows of a cache made from it never write into them: MCTS expands copies of a few nodes while
    every node's pages stay."""
    pinned = jnp.zeros_like(rest["pinned"]) if held is None else refcounts(held, rest["pinned"].shape[0])
    return {**rest, "pinned": pinned}


def reorder(cache: dict, rows: jax.Array) -> dict:
    """Row `r` becomes a branch of row `rows[r]` (fork, prune, reorder): page-table entries move, keys stay."""
    return {
        **cache,
        "pages": jnp.take(cache["pages"], rows, axis=0),
        "index": jnp.take(cache["index"], rows, axis=0),
    }


def grow(cache: dict, max_len: int) -> dict:
    """Room for `max_len` slots per row: wider page tables (`-1` columns). The pool stays as it is: size it
    for the final length when the cache is made (`pool_pages`)."""
    w = cache["pages"].shape[1]
    extra = pages_per_row(max_len, page_size(cache)) - w
    if extra <= 0:
        return cache
    return {**cache, "pages": jnp.pad(cache["pages"], ((0, 0), (0, extra)), constant_values=-1)}


def split_rows(cache: dict) -> tuple[dict, dict]:
    """(the `[B, ...]` leaves, the rest): a search gathers the first by rows and leaves the pool alone."""
    rows = {"pages": cache["pages"], "index": cache["index"]}
    return rows, {k: v for k, v in cache.items() if k not in rows}


def dense_equivalent_bytes(cache: dict) -> int:
    """Bytes a dense cache of the same rows and slots would hold."""
    k = cache["layers"][0]["k"]
    b = cache["pages"].shape[0]
    per_slot = 2 * len(cache["layers"]) * k.shape[1] * k.shape[3] * k.dtype.itemsize
    return b * num_slots(cache) * per_slot


def pool_bytes(cache: dict) -> int:
    k = cache["layers"][0]["k"]
    return 2 * len(cache["layers"]) * math.prod(k.shape) * k.dtype.itemsize
