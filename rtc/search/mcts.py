"""Monte Carlo tree search over reasoning steps, compiled: every problem's tree advances in lockstep.

Laid out like mctx's `search.py` (DeepMind): one `lax.fori_loop` over simulations whose body calls
`simulate` (select a leaf), `expand` (grow it) and `backward` (back the value up). mctx itself does
not fit: its embedding per node is whatever the recurrent function returns, and expanding one action
per simulation would rebuild an LLM's KV cache per action. Here a node is a row of the search state
(path, policy and verifier KV caches, step scores), so a node is expanded by sampling M candidate steps
from its cache at once, and the tree statistics are small `[B, nodes]` arrays beside it.

One simulation (Kocsis & Szepesvari 2006, UCT; the step-level LLM form of e.g. Zhang et al. 2024,
ReST-MCTS*, with the PRM as value):
1. `simulate`: from the root, follow the child maximising `Q + c * sqrt(ln N(parent) / N(child))` to a
   leaf (a node not yet expanded, a finished path, or one at the depth limit);
2. `expand`: sample M next steps from the leaf (one gather of its row, M copies, one `expand.expand`),
   and store the children as new nodes;
3. `evaluate`: roll each child out to a finished path (sampled steps, up to the depth limit) and score
   it with the verifier; the rollouts are this search's candidate solutions;
4. `backward`: each child gets its rollout's score; the leaf and its ancestors add the M scores.
A terminal leaf is not expanded: its own score is backed up again. Root parallelism: `trees`
independent trees per problem (different random draws) pool their candidates; trees are the batch
axis, so on a mesh each device holds whole trees and never moves a cache.

`SearchConfig` reads: `n` candidates per tree (simulations = n / m), `m` children per expansion,
`depth` steps per path, `trees`, and `exploration` = c.
"""

import dataclasses

import jax
import jax.numpy as jnp
from jax.random import fold_in

from rtc.search import expand as expand_lib
from rtc.search import scores as scores_lib
from rtc.search.config import SearchConfig
from rtc.search.tree_search import SearchOutput, pin_rows, pin_state

ROOT = 0


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Tree:
    parent: jax.Array  # i32[B, nodes]: -1 for the root and unused slots
    children: jax.Array  # i32[B, nodes, M]: -1 while unexpanded
    depth: jax.Array  # i32[B, nodes]: steps from the root
    visits: jax.Array  # f32[B, nodes]: N
    value: jax.Array  # f32[B, nodes]: W, the sum of backed-up scores


def set_columns(x: jax.Array, values: jax.Array, start: jax.Array, width: int) -> jax.Array:
    """`x: [B, nodes]` with columns `start .. start + width - 1` set to `values` (broadcast to [B, width])."""
    values = jnp.broadcast_to(values, (x.shape[0], width)).astype(x.dtype)
    return jax.lax.dynamic_update_slice_in_dim(x, values, start, axis=1)


def by_tree(x: jax.Array, trees: int) -> jax.Array:
    """`[B * k, ...] -> [B, k, ...]`: rows grouped by tree."""
    return x.reshape(trees, -1, *x.shape[1:])


def flat(x: jax.Array) -> jax.Array:
    """`[B, k, ...] -> [B * k, ...]`."""
    return x.reshape(-1, *x.shape[2:])


def write_rows(buffer, new, start, trees: int):
    """`buffer`'s `[B * k, ...]` leaves with each tree's rows `start ..` replaced by `new`'s `[B * j, ...]`."""

    def put(old, rows):
        return flat(
            jax.lax.dynamic_update_slice_in_dim(by_tree(old, trees), by_tree(rows, trees), start, axis=1)
        )

    return jax.tree.map(put, buffer, new)


def simulate(tree: Tree, terminal: jax.Array, cfg: SearchConfig) -> jax.Array:
    """i32[B]: the leaf each tree's UCT walk from the root reaches. terminal: bool[B, nodes]."""
    b = tree.parent.shape[0]
    rows = jnp.arange(b)

    def descend(node):
        kids = tree.children[rows, node]  # [B, M]
        n_parent = tree.visits[rows, node]  # [B]
        n_child = jnp.maximum(tree.visits[rows[:, None], kids], 1.0)
        q = tree.value[rows[:, None], kids] / n_child
        uct = q + cfg.exploration * jnp.sqrt(jnp.log(jnp.maximum(n_parent, 1.0))[:, None] / n_child)
        best = jnp.take_along_axis(kids, jnp.argmax(uct, axis=1)[:, None], axis=1)[:, 0]
        return jnp.where(can_descend(node), best, node)

    def can_descend(node):
        return (
            (tree.children[rows, node, 0] >= 0) & ~terminal[rows, node] & (tree.depth[rows, node] < cfg.depth)
        )

    return jax.lax.while_loop(lambda n: jnp.any(can_descend(n)), descend, jnp.full((b,), ROOT, jnp.int32))


def expand(models, pool, tree: Tree, leaf, expanding, slot, rng, cfg: SearchConfig, mesh):
    """Grows M children of every expanding leaf by one sampled step and stores them at nodes `slot ..`.

    models: (policy, params, verifier, verifier_params); pool: the `[B * nodes]` search state; leaf: i32[B];
    expanding: bool[B] (a terminal leaf grows nothing). Returns (pool, tree, children: the `[B * M]` new
    rows, step_lengths i32[B * M]).
    """
    b, m = leaf.shape[0], cfg.m
    rows = jnp.arange(b)
    nodes, pools = expand_lib.split_pools(pool)  # a paged cache's pool is shared, not a row
    leaf_state = jax.tree.map(lambda x: by_tree(x, b)[rows, leaf], nodes)  # [B, ...]
    children = pin_rows(jax.tree.map(lambda x: jnp.repeat(x, m, axis=0), leaf_state), mesh)  # [B * M]
    live = jnp.repeat(expanding, m)
    # paged: the children never write into a page some node names
    children = expand_lib.join_pools(children, expand_lib.pin_pools(pools, nodes))
    children, step_lengths = expand_lib.expand(*models, children, rng, cfg, live=live)
    children, pools = expand_lib.split_pools(children)
    nodes = write_rows(nodes, children, slot, b)
    pool = expand_lib.join_pools(nodes, expand_lib.pin_pools(pools, None))
    children = expand_lib.join_pools(children, expand_lib.pin_pools(pools, nodes))
    child_ids = slot + jnp.arange(m)[None, :]  # [1, M]
    tree = dataclasses.replace(
        tree,
        children=tree.children.at[rows, leaf].set(jnp.where(expanding[:, None], child_ids, -1)),
        parent=set_columns(tree.parent, jnp.where(expanding[:, None], leaf[:, None], -1), slot, m),
        depth=set_columns(tree.depth, (tree.depth[rows, leaf] + 1)[:, None], slot, m),
    )
    return pool, tree, children, step_lengths


def rollout(policy, params, verifier, verifier_params, state, start_depth, rng, cfg: SearchConfig):
    """Extends every row to a finished path or the depth limit; returns (state, tokens spent i32[R])."""

    def body(carry):
        state, i, spent = carry
        live = (start_depth + i) < cfg.depth
        state, lengths = expand_lib.expand(
            policy, params, verifier, verifier_params, state, fold_in(rng, i), cfg, live=live
        )
        return state, i + 1, spent + lengths

    def going(carry):
        state, i, _ = carry
        return jnp.any(~state.finished & ((start_depth + i) < cfg.depth))

    spent = jnp.zeros(state.lengths.shape, jnp.int32)
    state, _, spent = jax.lax.while_loop(going, body, (state, jnp.int32(0), spent))
    return state, spent


def evaluate(models, children, tree: Tree, leaf, expanding, slot, rng, cfg: SearchConfig):
    """Rolls every new child out to a finished path, scored by the verifier, and makes that score the
    child's value (one visit). Returns (tree, finals: the `[B * M]` rollouts, scores f32[B, M], tokens
    spent i32[B * M])."""
    b, m = leaf.shape[0], cfg.m
    child_depth = jnp.repeat(tree.depth[jnp.arange(b), leaf] + 1, m)
    finals, spent = rollout(*models, children, child_depth, rng, cfg)
    final_scores = by_tree(scores_lib.aggregate(finals.scores, cfg.aggregation), b)  # [B, M]
    visited = jnp.where(expanding[:, None], 1.0, 0.0)
    tree = dataclasses.replace(
        tree,
        visits=set_columns(tree.visits, visited, slot, m),
        value=set_columns(tree.value, final_scores * visited, slot, m),
    )
    return tree, finals, final_scores, spent


def backward(tree: Tree, leaf: jax.Array, visits: jax.Array, value: jax.Array) -> Tree:
    """Adds `visits: f32[B]` and `value: f32[B]` to the leaf and every ancestor."""
    rows = jnp.arange(leaf.shape[0])

    def up(carry):
        tree, node = carry
        live = node >= 0
        safe = jnp.maximum(node, 0)
        tree = dataclasses.replace(
            tree,
            visits=tree.visits.at[rows, safe].add(jnp.where(live, visits, 0.0)),
            value=tree.value.at[rows, safe].add(jnp.where(live, value, 0.0)),
        )
        return tree, jnp.where(live, tree.parent[rows, safe], -1)

    tree, _ = jax.lax.while_loop(lambda c: jnp.any(c[1] >= 0), up, (tree, leaf))
    return tree


def as_candidates(finals, unused: jax.Array) -> dict:
    """The fields of rollouts `finals` that the output keeps; `unused: bool[R]` rows are never chosen."""
    return {
        "tokens": finals.tokens,
        "lengths": finals.lengths,
        "finished": finals.finished,
        "duplicate": unused,
        "scores": finals.scores,
        "thought": finals.thought,
    }


def simulation(sim, carry, models, rng, cfg: SearchConfig, mesh):
    """One simulation of every tree: the `fori_loop` body. carry: (pool, tree, candidates, generated i32[B],
    verified i32[B]); simulation `sim` keys its expansion `fold_in(fold_in(rng, sim), 0)` and its rollouts
    `fold_in(..., 1)`, and writes nodes and candidates `sim * m ..`."""
    pool, tree, candidates, generated, verified = carry
    b, m, rows = tree.parent.shape[0], cfg.m, jnp.arange(tree.parent.shape[0])
    key, slot = fold_in(rng, sim), 1 + sim * m
    terminal = by_tree(pool.finished, b) | (tree.depth >= cfg.depth)  # [B, nodes]
    leaf = simulate(tree, terminal, cfg)  # [B]
    expanding = ~terminal[rows, leaf]
    leaf_score = by_tree(scores_lib.aggregate(pool.scores, cfg.aggregation), b)[rows, leaf]
    pool, tree, children, step_lengths = expand(
        models, pool, tree, leaf, expanding, slot, fold_in(key, 0), cfg, mesh
    )
    tree, finals, scores, spent = evaluate(
        models, children, tree, leaf, expanding, slot, fold_in(key, 1), cfg
    )
    # the rollouts wrote only pages no node names; the nodes go on with the pool as the rollouts left it
    _, pools = expand_lib.split_pools(finals)
    pool = expand_lib.join_pools(expand_lib.split_pools(pool)[0], expand_lib.pin_pools(pools, None))
    # the M rollout scores, or a terminal leaf's own score once more
    tree = backward(
        tree, leaf, jnp.where(expanding, float(m), 1.0), jnp.where(expanding, scores.sum(1), leaf_score)
    )
    candidates = write_rows(candidates, as_candidates(finals, ~jnp.repeat(expanding, m)), sim * m, b)
    tokens = by_tree(step_lengths + spent, b).sum(axis=1)  # i32[B]: policy tokens sampled
    verified = verified + tokens if models[2] is not None else verified  # the verifier read them all
    return pool, tree, candidates, generated + tokens, verified


def init_tree(trees: int, nodes: int, m: int) -> Tree:
    """`trees` trees of `nodes` slots, each only a root: no children, no visits."""
    return Tree(
        parent=jnp.full((trees, nodes), -1, jnp.int32),
        children=jnp.full((trees, nodes, m), -1, jnp.int32),
        depth=jnp.zeros((trees, nodes), jnp.int32),
        visits=jnp.zeros((trees, nodes), jnp.float32),
        value=jnp.zeros((trees, nodes), jnp.float32),
    )


def empty_candidates(rows: int, cfg: SearchConfig) -> dict:
    """`rows` empty candidate slots, marked unused until a simulation fills them."""
    return {
        "tokens": jnp.full((rows, cfg.max_path_tokens), cfg.pad_id, jnp.int32),
        "lengths": jnp.zeros((rows,), jnp.int32),
        "finished": jnp.zeros((rows,), bool),
        "duplicate": jnp.ones((rows,), bool),
        "scores": scores_lib.empty(rows),
        "thought": jnp.zeros((rows,), jnp.int32),
    }


def _search_mcts(
    policy,
    params,
    verifier,
    verifier_params,
    prompt_tokens,
    prompt_lengths,
    rng,
    cfg: SearchConfig,
    mesh=None,
    cache_dtype=jnp.float32,
) -> SearchOutput:
    """prompt_tokens: i32[B, P]; returns `SearchOutput` with K = trees x n candidate rollouts."""
    problems, trees = prompt_tokens.shape[0], cfg.trees
    prompt_tokens = jnp.repeat(prompt_tokens, trees, axis=0)  # root parallelism: trees are problems
    prompt_lengths = jnp.repeat(prompt_lengths, trees, axis=0)
    b, nodes, simulations = prompt_tokens.shape[0], 1 + cfg.n, cfg.n // cfg.m
    models = (policy, params, verifier, verifier_params)
    pool = expand_lib.init_state(
        *models, prompt_tokens, prompt_lengths, cfg, cache_dtype, branches=nodes, spare_rows=b * cfg.m
    )
    pool = pin_state(pool, mesh)  # [B * nodes] rows, every node starting as a copy of the root
    zeros_b = jnp.zeros((b,), jnp.int32)
    verified0 = prompt_lengths.astype(jnp.int32) if verifier is not None else zeros_b
    carry = (pool, init_tree(b, nodes, cfg.m), empty_candidates(b * cfg.n, cfg), zeros_b, verified0)
    body = lambda sim, carry: simulation(sim, carry, models, rng, cfg, mesh)
    _, _, candidates, generated, verified = jax.lax.fori_loop(0, simulations, body, carry)
    return _output(candidates, generated, verified, problems, trees, simulations, cfg)


def _output(candidates: dict, generated, verified, problems, trees, simulations, cfg) -> SearchOutput:
    """Pools each problem's trees' candidates: `[problems, trees * n]`."""
    split = lambda x: x.reshape(problems, -1, *x.shape[1:])
    per_problem = lambda x: x.reshape(problems, -1).sum(axis=1)
    score = scores_lib.aggregate(candidates["scores"], cfg.aggregation)
    rank = jnp.where(candidates["duplicate"], -jnp.inf, score + 2.0 * candidates["finished"])
    return SearchOutput(
        tokens=split(candidates["tokens"]),
        lengths=split(candidates["lengths"]),
        scores=split(score),
        finished=split(candidates["finished"]),
        duplicate=split(candidates["duplicate"]),
        best=jnp.argmax(split(rank), axis=1).astype(jnp.int32),
        thinking_tokens=split(candidates["thought"]),
        steps=jnp.int32(simulations),
        generated_tokens=per_problem(generated),
        verifier_tokens=per_problem(verified),
        verifier_nan=per_problem(candidates["scores"].nan),
    )


search_mcts = jax.jit(_search_mcts, static_argnames=("policy", "verifier", "cfg", "mesh", "cache_dtype"))
