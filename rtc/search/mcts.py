"""Monte Carlo tree search over reasoning steps, compiled: every problem's tree advances in lockstep.

Why our own arrays and not mctx: mctx (DeepMind) batches MCTS in JAX, but its embedding per node is
whatever the recurrent function returns, and expanding one action per simulation would rebuild an
LLM's KV cache per action. Here a node is a row of the search state (path, policy and verifier KV
caches, step scores), so a node is expanded by sampling M candidate steps from its cache at once,
and the tree statistics are small `[B, nodes]` arrays beside it.

One simulation (Kocsis & Szepesvari 2006, UCT; the step-level LLM form of e.g. Zhang et al. 2024,
ReST-MCTS*, with the PRM as value):
1. select: from the root, follow the child maximising `Q + c * sqrt(ln N(parent) / N(child))` to a
   leaf (a node not yet expanded, a finished path, or one at the depth limit);
2. expand: sample M next steps from the leaf (one gather of its row, M copies, one `expand.expand`),
   and store the children as new nodes;
3. simulate: roll each child out to a finished path (sampled steps, up to the depth limit) and score it
   with the verifier; the rollouts are this search's candidate solutions;
4. back up: each child gets its rollout's score; the leaf and its ancestors add the M scores.
A terminal leaf is not expanded: its own score is backed up again. Root parallelism: `trees`
independent trees per problem (different random draws) pool their candidates; trees are the batch
axis, so on a mesh each device holds whole trees and never moves a cache.

`SearchConfig` reads: `n` candidates per tree (simulations = n / m), `m` children per expansion,
`depth` steps per path, `trees`, and `exploration` = c.
"""

import dataclasses

import jax
import jax.numpy as jnp

from rtc.search import scores as scores_lib
from rtc.search.config import SearchConfig
from rtc.search.expand import expand, init_state
from rtc.search.tree_search import SearchOutput, _pin

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


def select(tree: Tree, terminal: jax.Array, cfg: SearchConfig) -> jax.Array:
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


def backup(tree: Tree, leaf: jax.Array, visits: jax.Array, value: jax.Array) -> Tree:
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


def rollout(policy, params, verifier, verifier_params, state, start_depth, rng, cfg: SearchConfig):
    """Extends every row to a finished path or the depth limit; returns (state, tokens spent i32[R])."""

    def body(carry):
        state, i, spent = carry
        live = (start_depth + i) < cfg.depth
        state, lengths = expand(
            policy, params, verifier, verifier_params, state, jax.random.fold_in(rng, i), cfg, live=live
        )
        return state, i + 1, spent + lengths

    def going(carry):
        state, i, _ = carry
        return jnp.any(~state.finished & ((start_depth + i) < cfg.depth))

    spent = jnp.zeros(state.lengths.shape, jnp.int32)
    state, _, spent = jax.lax.while_loop(going, body, (state, jnp.int32(0), spent))
    return state, spent


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
    b, m = prompt_tokens.shape[0], cfg.m
    simulations = cfg.n // m
    nodes = 1 + cfg.n
    pool = init_state(
        policy,
        params,
        verifier,
        verifier_params,
        prompt_tokens,
        prompt_lengths,
        cfg,
        cache_dtype,
        branches=nodes,
    )
    pool = _pin(pool, mesh)  # [B * nodes] rows, every node starting as a copy of the root
    by_tree = lambda x: x.reshape(b, -1, *x.shape[1:])  # noqa: E731  [B * k, ...] -> [B, k, ...]
    flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
    tree = Tree(
        parent=jnp.full((b, nodes), -1, jnp.int32),
        children=jnp.full((b, nodes, m), -1, jnp.int32),
        depth=jnp.zeros((b, nodes), jnp.int32),
        visits=jnp.zeros((b, nodes), jnp.float32),
        value=jnp.zeros((b, nodes), jnp.float32),
    )
    k = cfg.n  # candidate rollouts per tree
    candidates = {
        "tokens": jnp.full((b * k, cfg.max_path_tokens), cfg.pad_id, jnp.int32),
        "lengths": jnp.zeros((b * k,), jnp.int32),
        "finished": jnp.zeros((b * k,), bool),
        "duplicate": jnp.ones((b * k,), bool),  # unused until a simulation fills it
        "scores": scores_lib.empty(b * k),
        "thought": jnp.zeros((b * k,), jnp.int32),
    }

    def simulate(sim, carry):
        pool, tree, candidates, generated, verified = carry
        key = jax.random.fold_in(rng, sim)
        node_scores = by_tree(scores_lib.aggregate(pool.scores, cfg.aggregation))  # [B, nodes]
        terminal = by_tree(pool.finished) | (tree.depth >= cfg.depth)
        leaf = select(tree, terminal, cfg)  # [B]
        rows = jnp.arange(b)
        expanding = ~terminal[rows, leaf]  # [B]
        # 2. expand: M copies of each leaf's row, one step each
        leaf_state = jax.tree.map(lambda x: by_tree(x)[rows, leaf], pool)  # [B, ...]
        children = _pin(jax.tree.map(lambda x: jnp.repeat(x, m, axis=0), leaf_state), mesh)  # [B * M]
        live = jnp.repeat(expanding, m)
        children, step_lengths = expand(
            policy, params, verifier, verifier_params, children, jax.random.fold_in(key, 0), cfg, live=live
        )
        slot = 1 + sim * m
        pool = jax.tree.map(
            lambda p, c: flat(jax.lax.dynamic_update_slice_in_dim(by_tree(p), by_tree(c), slot, axis=1)),
            pool,
            children,
        )
        child_ids = slot + jnp.arange(m)[None, :]  # [1, M]
        child_depth = tree.depth[rows, leaf] + 1  # [B]
        tree = dataclasses.replace(
            tree,
            children=tree.children.at[rows, leaf].set(jnp.where(expanding[:, None], child_ids, -1)),
            parent=set_columns(tree.parent, jnp.where(expanding[:, None], leaf[:, None], -1), slot, m),
            depth=set_columns(tree.depth, child_depth[:, None], slot, m),
        )
        # 3. simulate: roll every child out to a finished path, scored by the verifier
        finals, spent = rollout(
            policy,
            params,
            verifier,
            verifier_params,
            children,
            jnp.repeat(child_depth, m),
            jax.random.fold_in(key, 1),
            cfg,
        )
        final_scores = by_tree(scores_lib.aggregate(finals.scores, cfg.aggregation))  # [B, M]
        visited = jnp.where(expanding[:, None], 1.0, 0.0)
        tree = dataclasses.replace(
            tree,
            visits=set_columns(tree.visits, visited, slot, m),
            value=set_columns(tree.value, final_scores * visited, slot, m),
        )
        # 4. back up: the M rollout scores (or a terminal leaf's own score, once more)
        leaf_score = node_scores[rows, leaf]
        tree = backup(
            tree,
            leaf,
            jnp.where(expanding, float(m), 1.0),
            jnp.where(expanding, final_scores.sum(axis=1), leaf_score),
        )
        found = {
            "tokens": finals.tokens,
            "lengths": finals.lengths,
            "finished": finals.finished,
            "duplicate": ~live,
            "scores": finals.scores,
            "thought": finals.thought,
        }
        candidates = jax.tree.map(
            lambda p, c: flat(jax.lax.dynamic_update_slice_in_dim(by_tree(p), by_tree(c), sim * m, axis=1)),
            candidates,
            found,
        )
        per_tree = lambda x: by_tree(x).sum(axis=1)  # noqa: E731
        generated = generated + per_tree(step_lengths + spent)
        if verifier is not None:
            verified = verified + per_tree(step_lengths + spent)
        return pool, tree, candidates, generated, verified

    zeros_b = jnp.zeros((b,), jnp.int32)
    verified0 = prompt_lengths.astype(jnp.int32) if verifier is not None else zeros_b
    pool, tree, candidates, generated, verified = jax.lax.fori_loop(
        0, simulations, simulate, (pool, tree, candidates, zeros_b, verified0)
    )
    return _output(candidates, generated, verified, problems, trees, simulations, cfg)


def _output(candidates: dict, generated, verified, problems, trees, simulations, cfg) -> SearchOutput:
    """Pools each problem's trees' candidates: `[problems, trees * n]`."""
    split = lambda x: x.reshape(problems, -1, *x.shape[1:])  # noqa: E731
    per_problem = lambda x: x.reshape(problems, -1).sum(axis=1)  # noqa: E731
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
