"""Best-first search over reasoning steps, compiled: a priority frontier of partial paths per problem.

Best-first search (Pearl 1984, "Heuristics: Intelligent Search Strategies for Computer Problem Solving") keeps the open partial solutions in a priority queue
and always expands the most promising one; over a language model's proof or reasoning steps it is the
search of GPT-f (Polu & Sutskever 2020, "Generative Language Modeling for Automated Theorem Proving") and
BFS-Prover (Xin et al. 2025, "BFS-Prover: Scalable Best-First Tree Search for LLM-based Automatic
Theorem Proving"). Here a path's priority is its aggregated verifier (PRM) score, as beam search ranks beams.

The queue is a fixed array of `F = cfg.n` slots per problem: each slot holds a path as a row of the search
state (tokens, both KV caches, step scores) and its priority (`-inf`: empty). One iteration
(`lax.while_loop`, `cfg.depth` iterations at most, so no path exceeds `depth` steps):
1. `pop`: each problem's best unfinished slot (ties: the lowest slot) is emptied and copied into M rows;
2. `expand.expand` writes one step in each of the M rows, and the verifier scores it;
3. `insert`: the M children join the frontier, evicting its lowest-priority slots when it is full.
The frontier starts as the prompt alone in slot 0, so the first iteration expands the prompt into M
children. A finished path (it emitted a stop id) stays in the frontier as a candidate and is never popped.
A problem stops when its best slot is finished or none is open; the loop stops when every problem has,
or after `depth` iterations. The answer is the best finished path, then the best unfinished one.

Rows kept outside the expanded batch follow `rtc.search.mcts`: with a paged KV cache the M children
never write into a page a frontier row names (`expand.pin_pools`), and an evicted or popped slot's pages
are free once a child's page table replaces its own (the pool holds pages for F + M rows per problem).
"""

import jax
import jax.numpy as jnp

from rtc.search import expand as expand_lib
from rtc.search import scores as scores_lib
from rtc.search.config import SearchConfig
from rtc.search.tree_search import SearchOutput, pin_rows, pin_state


def open_slots(priority: jax.Array, finished: jax.Array) -> jax.Array:
    """bool[B, F]: slots holding an unfinished path. priority: f32[B, F] (-inf: empty); finished: bool[B, F]."""
    return (priority > -jnp.inf) & ~finished


def settled(priority: jax.Array, finished: jax.Array) -> jax.Array:
    """bool[B]: the problem's search is over: its best slot (ties: the lowest) is finished, or none is open."""
    best = jnp.argmax(priority, axis=1)
    best_finished = jnp.take_along_axis(finished, best[:, None], axis=1)[:, 0]
    return best_finished | ~jnp.any(open_slots(priority, finished), axis=1)


def pop(priority: jax.Array, finished: jax.Array) -> jax.Array:
    """i32[B]: each problem's best open slot; ties go to the lowest slot."""
    return jnp.argmax(jnp.where(open_slots(priority, finished), priority, -jnp.inf), axis=1).astype(jnp.int32)


def insert(priority: jax.Array, children: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The frontier after M children join it: (priority f32[B, F], dest i32[B, M]: each child's slot, F if
    dropped). priority: f32[B, F] and children: f32[B, M], -inf where empty (a child of a settled problem).

    The F best of the frontier's paths and the children are kept; ties go to a frontier slot before a child
    and to the lower index (slot, or child order). Kept paths stay in their slots; the kept children fill
    the slots left free (empty or evicted) in increasing slot order.
    """
    f = priority.shape[1]
    both = jnp.concatenate([priority, children], axis=1)  # [B, F + M]
    _, top = jax.lax.top_k(both, f)  # [B, F]; top_k puts the lower index first among equals
    keep = jnp.zeros(both.shape, bool).at[jnp.arange(both.shape[0])[:, None], top].set(True)
    keep &= both > -jnp.inf
    kept_slot, kept_child = keep[:, :f], keep[:, f:]
    free = jnp.argsort(kept_slot, axis=1, stable=True)  # [B, F]: free slots first, in slot order
    rank = jnp.cumsum(kept_child, axis=1) - 1  # [B, M]: the child's place among the kept children
    dest = jnp.where(kept_child, jnp.take_along_axis(free, jnp.clip(rank, 0, f - 1), axis=1), f)
    rows = jnp.arange(priority.shape[0])[:, None]
    priority = jnp.where(kept_slot, priority, -jnp.inf).at[rows, dest].set(children, mode="drop")
    return priority, dest.astype(jnp.int32)


def iteration(models, frontier, priority, key, cfg: SearchConfig, mesh):
    """One pop, expansion and insertion for every unsettled problem.

    frontier: the `[B * F]` search state; priority: f32[B, F]. Returns (frontier, priority, tokens i32[B]
    sampled, non-finite verifier readings i32[B]).
    """
    b, f, m = priority.shape[0], cfg.n, cfg.m
    rows = jnp.arange(b)
    finished = frontier.finished.reshape(b, f)
    active = ~settled(priority, finished)  # [B]
    popped = pop(priority, finished)  # [B]
    slots, pools = expand_lib.split_pools(frontier)  # a paged cache's pool is shared, not a row
    parent = jax.tree.map(lambda x: x.reshape(b, f, *x.shape[1:])[rows, popped], slots)  # [B, ...]
    children = pin_rows(jax.tree.map(lambda x: jnp.repeat(x, m, axis=0), parent), mesh)  # [B * M]
    # paged: the children never write into a page some frontier row names
    children = expand_lib.join_pools(children, expand_lib.pin_pools(pools, slots))
    children, lengths = expand_lib.expand(*models, children, key, cfg, live=jnp.repeat(active, m))
    children, pools = expand_lib.split_pools(children)
    score = scores_lib.aggregate(children.scores, cfg.aggregation).reshape(b, m)
    priority = priority.at[rows, popped].set(jnp.where(active, -jnp.inf, priority[rows, popped]))
    priority, dest = insert(priority, jnp.where(active[:, None], score, -jnp.inf))
    target = jnp.where(dest < f, rows[:, None] * f + dest, b * f).reshape(-1)  # [B * M]; B * F: dropped
    slots = jax.tree.map(lambda x, c: x.at[target].set(c, mode="drop"), slots, children)
    frontier = expand_lib.join_pools(pin_rows(slots, mesh), expand_lib.pin_pools(pools, None))
    nan = children.scores.nan - jnp.repeat(parent.scores.nan, m)  # this step's readings only
    return frontier, priority, lengths.reshape(b, m).sum(axis=1), nan.reshape(b, m).sum(axis=1)


def _output(frontier, priority, cfg: SearchConfig, steps, generated, verified, nan) -> SearchOutput:
    """The frontier as a SearchOutput with K = F slots; empty slots are marked `duplicate`, blanked, and
    never chosen."""
    b, f = priority.shape
    split = lambda x: x.reshape(b, f, *x.shape[1:])
    used = priority > -jnp.inf  # [B, F]
    finished = split(frontier.finished) & used
    rank = jnp.where(used, priority + 2.0 * finished, -jnp.inf)  # scores are in [0, 1]
    return SearchOutput(
        tokens=jnp.where(used[..., None], split(frontier.tokens), cfg.pad_id),
        lengths=jnp.where(used, split(frontier.lengths), 0),
        scores=jnp.where(used, priority, 0.0),
        finished=finished,
        duplicate=~used,
        best=jnp.argmax(rank, axis=1).astype(jnp.int32),
        thinking_tokens=jnp.where(used, split(frontier.thought), 0),
        steps=steps,
        generated_tokens=generated,
        verifier_tokens=verified,
        verifier_nan=nan,
    )


def _search_best_first(
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
    """prompt_tokens: i32[B, P] right-padded; prompt_lengths: i32[B]. Iteration `i` samples with
    `fold_in(rng, i)` over the `[B * M]` children. `verifier` None: every priority is 0 (lowest slot first)."""
    b, f = prompt_tokens.shape[0], cfg.n
    models = (policy, params, verifier, verifier_params)
    frontier = expand_lib.init_state(
        *models, prompt_tokens, prompt_lengths, cfg, cache_dtype, branches=f, spare_rows=b * cfg.m
    )
    frontier = pin_state(frontier, mesh)  # [B * F] rows, each a copy of the prompt; slot 0 holds it
    priority = jnp.full((b, f), -jnp.inf, jnp.float32).at[:, 0].set(0.0)

    def body(carry):
        frontier, priority, i, generated, verified, nan = carry
        frontier, priority, tokens, new_nan = iteration(
            models, frontier, priority, jax.random.fold_in(rng, i), cfg, mesh
        )
        verified = verified + tokens if verifier is not None else verified
        return frontier, priority, i + 1, generated + tokens, verified, nan + new_nan

    def going(carry):
        frontier, priority, i = carry[:3]
        return (i < cfg.depth) & ~jnp.all(settled(priority, frontier.finished.reshape(b, f)))

    zeros_b = jnp.zeros((b,), jnp.int32)
    verified0 = prompt_lengths.astype(jnp.int32) if verifier is not None else zeros_b
    carry = (frontier, priority, jnp.int32(0), zeros_b, verified0, zeros_b)
    frontier, priority, steps, generated, verified, nan = jax.lax.while_loop(going, body, carry)
    return _output(frontier, priority, cfg, steps, generated, verified, nan)


search_best_first = jax.jit(
    _search_best_first, static_argnames=("policy", "verifier", "cfg", "mesh", "cache_dtype")
)
