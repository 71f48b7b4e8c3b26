"""The KV cache: an explicit pytree passed into and returned from `apply`.

Layout: `{"layers": [{"k": f[B, Hkv, S, D], "v": f[B, Hkv, S, D]}, ...], "index": i32[B]}`. Heads before slots
(rather than `[B, S, Hkv, D]`): decodes 1.3x faster on CPU because attention then
batches over leading axes and XLA no longer copies every layer's cache each step (bench/kv_write.py).
`index[b]` is the next slot row b writes; slots are positions, so a query at slot `q` attends to
keys at slots `<= q`. Rows advance independently (right-padded prompts, ragged search steps).

With `ModelConfig.kv_page_size > 0` the cache is paged instead (`rtc.model.paged_cache`): rows name pages of
one pool and share their prefix. `init_cache`, `grow`, `reorder`, `num_slots` and `split_rows` serve both.
"""

import jax
import jax.numpy as jnp

from rtc.model import paged_cache
from rtc.model.config import ModelConfig
from rtc.errors import ConfigError


def init_cache(
    config: ModelConfig, batch_size: int, max_len: int, dtype=jnp.float32, num_pages: int | None = None
) -> dict:
    """An empty cache of `max_len` slots for `batch_size` rows; paged with `config.kv_page_size > 0`, its
    pool `num_pages` pages (default: the dense cache's worth; the dense cache ignores it)."""
    if max_len > config.max_seq_len:
        raise ConfigError(f"cache length {max_len} exceeds the model's context {config.max_seq_len}")
    if config.kv_page_size:
        return paged_cache.init(
            config.num_layers,
            config.num_kv_heads,
            config.head_dim,
            batch_size,
            max_len,
            config.kv_page_size,
            num_pages,
            dtype,
        )
    shape = (batch_size, config.num_kv_heads, max_len, config.head_dim)
    layers = [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)} for _ in range(config.num_layers)]
    return {"layers": layers, "index": jnp.zeros((batch_size,), jnp.int32)}


def write(buffer: jax.Array, new: jax.Array, index: jax.Array) -> jax.Array:
    """Writes `new: [B, H, T, D]` into `buffer: [B, H, S, D]` at per-row slot `index: [B]`."""

    def write_row(row_buffer, row_new, row_index):
        return jax.lax.dynamic_update_slice(row_buffer, row_new.astype(row_buffer.dtype), (0, row_index, 0))

    return jax.vmap(write_row)(buffer, new, index)


def grow(cache: dict, max_len: int) -> dict:
    """The cache with `max_len` slots: the new slots are zeros after the old ones."""
    if paged_cache.is_paged(cache):
        return paged_cache.grow(cache, max_len)

    def pad(x):
        return jnp.pad(x, ((0, 0), (0, 0), (0, max_len - x.shape[2]), (0, 0)))

    layers = [{"k": pad(layer["k"]), "v": pad(layer["v"])} for layer in cache["layers"]]
    return {"layers": layers, "index": cache["index"]}


def reorder(cache: dict, rows: jax.Array) -> dict:
    """Gathers cache rows (`rows: i32[B']`), e.g. to keep the surviving branches of a search; a paged cache
    moves page-table entries only."""
    if paged_cache.is_paged(cache):
        return paged_cache.reorder(cache, rows)
    return jax.tree.map(lambda x: jnp.take(x, rows, axis=0), cache)


def share_prefix(cache: dict, prompt_len: int) -> dict:
    """A freshly prefilled cache whose prompts (`prompt_len` the padded width) rows forked from it will
    share: a paged cache then reads each prompt once per run of rows (`paged_cache.share_prefix`); a dense
    cache is returned as is."""
    return paged_cache.share_prefix(cache, prompt_len) if paged_cache.is_paged(cache) else cache


def unshare_prefix(cache: dict) -> dict:
    """`cache` without the shared prefix of `share_prefix`: rows forked from it may then come in any order
    (each reads its prompt's pages through its own page table)."""
    return {k: v for k, v in cache.items() if k not in ("prefix_pages", "prefix_len")}


def refill(cache: dict, take: jax.Array, prompt_cache: dict, source: jax.Array) -> dict:
    """Rows `take: bool[B]` restarted from rows `source: i32[B]` of `prompt_cache` (same slots): a paged
    cache points them at the prompt's pages again; a dense one copies the prompt's rows in."""
    where = lambda new, old: jnp.where(take.reshape(-1, *(1,) * (old.ndim - 1)), new, old)
    index = where(prompt_cache["index"][source], cache["index"])
    if paged_cache.is_paged(cache):
        return {**cache, "pages": where(prompt_cache["pages"][source], cache["pages"]), "index": index}
    layers = [
        {name: where(prompt[name][source], layer[name]) for name in ("k", "v")}
        for layer, prompt in zip(cache["layers"], prompt_cache["layers"])
    ]
    return {"layers": layers, "index": index}


def pin_rows(cache: dict, held: dict) -> dict:
    """`cache` never writing into the pages `held`'s rows name (paged; a dense cache as is)."""
    if not paged_cache.is_paged(cache):
        return cache
    rows, rest = paged_cache.split_rows(cache)
    return {**paged_cache.pin(rest, held["pages"]), **rows}


def num_slots(cache: dict) -> int:
    """Slots per row."""
    return paged_cache.num_slots(cache) if paged_cache.is_paged(cache) else cache["layers"][0]["k"].shape[2]


def split_rows(cache: dict | None) -> tuple[dict | None, dict | None]:
    """(the leaves indexed by row, the rest): gather the first by rows, then `join` them back."""
    if cache is None or not paged_cache.is_paged(cache):
        return cache, None
    return paged_cache.split_rows(cache)


def pin(rest: dict | None, held_rows: dict | None) -> dict | None:
    """The pool part `rest` (`split_rows`) with the pages of `held_rows` pinned (`paged_cache.pin`);
    `held_rows` None unpins. Nothing to do for a dense cache."""
    if rest is None:
        return None
    return paged_cache.pin(rest, None if held_rows is None else held_rows["pages"])


def join(rows: dict | None, rest: dict | None) -> dict | None:
    """Inverse of `split_rows`."""
    return rows if rest is None else {**rest, **rows}
