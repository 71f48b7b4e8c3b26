"""DAPO's dynamic sampling with static shapes: draw more groups than the batch needs, train on informative ones.

A group whose G rewards are all equal has zero advantage under every group baseline: it carries no gradient
and only shrinks the effective batch. DAPO (Yu et al. 2025, sec. 3.2, "Dynamic Sampling") over-samples and
keeps only groups with `0 < #correct < G`, sampling again until the batch is full (verl's `filter_groups`).
Here a draw is `R` groups (a multiple of the batch's `P`, a static shape); `select_groups` picks `P` of them,
informative first, in the order drawn, and fills any shortfall with the first uninformative ones (which the
loss then masks, as without dynamic sampling). Several draws are concatenated before selecting; the cost is
reported as groups drawn per group trained.
"""

import jax
import jax.numpy as jnp


def informative_groups(rewards: jax.Array) -> jax.Array:
    """bool[R]: groups of `rewards: f32[R, G]` whose rewards differ (DAPO's `0 < #correct < G`)."""
    return ~jnp.all(rewards == rewards[..., :1], axis=-1)


def select_groups(rewards: jax.Array, num_groups: int) -> tuple[jax.Array, jax.Array]:
    """`(idx i32[P], informative bool[P])`: the `P = num_groups` groups of `rewards: f32[R, G]` to train on.

    Informative groups come first, in the order drawn; then, if there are fewer than P, the uninformative
    ones in the order drawn. E.g. informative `[F, T, F, T, T]`, P = 2 -> idx `[1, 3]`; P = 4 -> `[1, 3, 4, 0]`.
    """
    informative = informative_groups(rewards)
    r = informative.shape[0]
    if num_groups > r:
        raise ValueError(f"cannot select {num_groups} groups from {r} drawn")
    # a stable key: informative groups sort before the rest, ties keep the drawn order
    key = jnp.where(informative, 0, r) + jnp.arange(r)
    idx = jnp.argsort(key)[:num_groups].astype(jnp.int32)
    return idx, informative[idx]


def group_rows(idx: jax.Array, group_size: int) -> jax.Array:
    """i32[P * G]: the row indices of groups `idx: i32[P]` (row `p * G + g` is member g of group p)."""
    return (idx[:, None] * group_size + jnp.arange(group_size)[None, :]).reshape(-1)


def take_rows(tree, rows: jax.Array):
    """Every leaf of `tree` (leading axis the rows) gathered at `rows: i32[B']`."""
    return jax.tree.map(lambda x: jnp.take(x, rows, axis=0), tree)


def truncated(tokens: jax.Array, lengths: jax.Array, stop_ids: tuple[int, ...]) -> jax.Array:
    """bool[B]: completions cut by the length cap, `tokens: i32[B, N]` full without a stop token.

    DAPO's overlong filtering (sec. 3.4) masks these out of the loss: a truncated answer's reward says
    nothing about its reasoning, only that it ran out of room.
    """
    n = tokens.shape[1]
    last = jnp.take_along_axis(tokens, jnp.clip(lengths - 1, 0, n - 1)[:, None], axis=1)[:, 0]
    return (lengths >= n) & ~jnp.isin(last, jnp.array(stop_ids, jnp.int32))
