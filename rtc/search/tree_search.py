"""Best-of-N, step-level PRM beam search and DVTS as one compiled program (`lax.while_loop` over steps).

Each iteration expands every live branch by one step (`expand.expand`), then prunes: within each
group of competing rows (a problem's N beams for beam search, a subtree's M for DVTS) the best
`keep` candidates by aggregated verifier score survive and are copied `M` times, by ONE gather of
every leaf of the search state (tokens, scores, both KV caches) per step. Beam search follows Snell
et al. (2024, sec. 5.1) and HF search-and-learn (Beeching et al. 2024); DVTS is the latter's diverse
verifier tree search. A finished path stays a candidate; its copies are marked `duplicate` and never
compete, so it holds one slot until something better displaces it. Every branch finishing ends the
loop early.

Sharding: the `[R]` row axis is split over the mesh's `data` axis. When each device holds whole groups
(best-of-N always; DVTS when a device's rows are a multiple of M; beam search when a device holds
whole problems) the gather is written per device block and never moves a cache between devices;
otherwise (e.g. one problem's beams spread over all devices) the survivors are exchanged with one
`all_to_all` per leaf and step that moves only the kept rows (`exchange_survivors`): R / M rows leave a
device, where the plain global gather (`placement="global"`) all-gathers all R.
"""

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from rtc.sampling.rules import SamplingRule
from rtc.sampling.prefill import constrain
from rtc.search import scores as scores_lib
from rtc.search.config import SearchConfig
from rtc.search import expand as expand_lib
from rtc.search.expand import SearchState, expand, init_state

DATA_AXIS = "data"


@flax.struct.dataclass
class SearchOutput:
    tokens: jax.Array  # i32[B, K, T]: each final branch's completion, pad after its length
    lengths: jax.Array  # i32[B, K]
    scores: jax.Array  # f32[B, K]: aggregated verifier score of each branch
    finished: jax.Array  # bool[B, K]: the branch emitted a stop id
    duplicate: jax.Array  # bool[B, K]: a copy of another branch (exclude from votes)
    best: jax.Array  # i32[B]: the chosen branch: finished before unfinished, then by score
    thinking_tokens: jax.Array  # i32[B, K]
    steps: jax.Array  # i32[]: search steps run (fewer than depth when every branch finished)
    generated_tokens: jax.Array  # i32[B]: policy tokens sampled, pruned branches and lookahead included
    verifier_tokens: jax.Array  # i32[B]: tokens the verifier read (prompt once, then every step's)
    # i32[B]: verifier readings that were not finite (skipped): every expansion's, lookahead's excluded;
    # MCTS counts those on its candidate paths
    verifier_nan: jax.Array


def row_sharding(mesh) -> NamedSharding | None:
    return None if mesh is None else NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def pin_rows(tree, mesh):
    """`tree` with every `[R, ...]` leaf constrained to split by rows over the mesh (as is without one)."""
    return constrain(tree, row_sharding(mesh))


def pin_state(state: SearchState, mesh) -> SearchState:
    """`pin_rows` for a search state: a paged cache's shared page pool is left to the compiler."""
    if mesh is None:
        return state
    state, pools = expand_lib.split_pools(state)
    return expand_lib.join_pools(pin_rows(state, mesh), pools)


def local_block(rows: int, group: int, mesh) -> int | None:
    """Rows per device when every device holds whole groups (gathers stay on device), else None."""
    if mesh is None:
        return rows
    devices = mesh.shape[DATA_AXIS]
    per_device = rows // devices
    return per_device if per_device % group == 0 else None


def gather_rows(tree, rows: jax.Array, block: int | None, mesh):
    """`tree`'s `[R, ...]` leaves reordered by `rows: i32[R]`: one gather per leaf.

    With `block`, every index stays within its block of `block` rows; the gather is written per
    block (a batched gather over a `[R / block, block, ...]` view), so a device never reads another's.
    """
    r = rows.shape[0]
    if block is None or block == r:
        return pin_rows(jax.tree.map(lambda x: jnp.take(x, rows, axis=0), tree), mesh)
    local = (rows % block).reshape(r // block, block)

    def take(x):
        blocks = pin_rows(x.reshape(r // block, block, *x.shape[1:]), mesh)
        return jax.vmap(lambda xb, ib: jnp.take(xb, ib, axis=0))(blocks, local).reshape(x.shape)

    return pin_rows(jax.tree.map(take, tree), mesh)


def exchange_survivors(tree, parents: jax.Array, copies: int, mesh, keep: jax.Array | None = None):
    """`tree`'s `[R, ...]` leaves, new row `r` a copy of row `parents[r // copies]` (or row `r` itself where
    `keep: bool[R]`, which needs no communication), moving only survivors.

    parents: i32[R / copies], replicated. Each device's new rows are whole runs of copies, so it needs
    `R / (D * copies)` distinct rows; every source device sends each destination the ones it owns, in
    one `all_to_all` per leaf with a static `[D, R / (D * copies)]` buffer (zeros where another device
    owns the row), and the destination copies them locally: R / copies rows leave a device per step,
    where a global gather all-gathers all R.
    """
    devices = mesh.shape[DATA_AXIS]
    r = parents.shape[0] * copies
    per_device = r // devices
    needs = parents.reshape(devices, per_device // copies)  # [D, S]: the rows each device needs

    def local(kept, *leaves):  # kept: bool[R / D]
        me = jax.lax.axis_index(DATA_AXIS)
        mine = (needs // per_device) == me  # [D, S]: which needed rows this device owns
        slots = jnp.where(mine, needs - me * per_device, 0)

        def send_receive(x):  # x: [R / D, ...]
            send = jnp.take(x, slots.reshape(-1), axis=0).reshape(*slots.shape, *x.shape[1:])
            send = jnp.where(mine.reshape(*mine.shape, *(1,) * (x.ndim - 1)), send, jnp.zeros_like(send))
            got = jax.lax.all_to_all(send, DATA_AXIS, 0, 0, tiled=True)  # [D sources, S, ...]
            owner = needs[me] // per_device  # [S]
            picked = jnp.take_along_axis(got, owner.reshape(1, -1, *(1,) * (x.ndim - 1)), axis=0)[0]
            copied = jnp.repeat(picked, copies, axis=0)  # [R / D, ...]
            return jnp.where(kept.reshape(-1, *(1,) * (x.ndim - 1)), x, copied)

        return tuple(send_receive(x) for x in leaves)

    leaves, treedef = jax.tree.flatten(tree)
    keep = jnp.zeros((r,), bool) if keep is None else keep
    spec = PartitionSpec(DATA_AXIS)
    moved = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(spec,) * (len(leaves) + 1),
        out_specs=(spec,) * len(leaves),
        check_vma=False,
    )(keep, *leaves)
    return jax.tree.unflatten(treedef, list(moved))


def selection_scores(state: SearchState, cfg: SearchConfig) -> jax.Array:
    """f32[R]: what pruning ranks by; duplicates never compete."""
    score = scores_lib.aggregate(state.scores, cfg.aggregation)
    return jnp.where(state.duplicate, -jnp.inf, score)


def survivors(score: jax.Array, cfg: SearchConfig) -> jax.Array:
    """i32[R]: the row each new row copies: per group the `keep` best (ties: lower row), each M times."""
    r = score.shape[0]
    g, keep = cfg.group_size, cfg.keep
    _, best = jax.lax.top_k(score.reshape(r // g, g), keep)  # [R/g, keep]
    parents = best + (jnp.arange(r // g) * g)[:, None]
    return jnp.repeat(parents, g // keep, axis=1).reshape(r)


def prune(state: SearchState, score: jax.Array, cfg: SearchConfig, mesh, placement: str) -> SearchState:
    """Keeps each group's best candidates (by `score: f32[R]`), copying each M times."""
    r, g = score.shape[0], cfg.group_size
    rows = survivors(score, cfg)
    copies = g // cfg.keep
    # a group whose every path has finished is kept whole: pruning it would only drop candidates
    settled = jnp.repeat((state.finished | state.duplicate).reshape(r // g, g).all(axis=1), g)  # [R]
    duplicate = jnp.where(settled, state.duplicate, state.finished[rows] & (jnp.arange(r) % copies > 0))
    rows = jnp.where(settled, jnp.arange(r), rows)
    block = None if placement == "global" else local_block(r, g, mesh)
    state, pools = expand_lib.split_pools(state)  # paged caches: survivors share pages, none is copied
    if block is None and placement == "auto" and (r // mesh.shape[DATA_AXIS]) % copies == 0:
        # a group spans devices: exchange only the survivors (a settled group keeps its own rows)
        state = exchange_survivors(state, rows[::copies], copies, mesh, keep=settled)
    else:
        state = gather_rows(state, rows, block, mesh)
    return expand_lib.join_pools(state, pools).replace(duplicate=duplicate)


def lookahead_scores(policy, params, verifier, verifier_params, state, rng, cfg: SearchConfig):
    """(f32[R] scores after `cfg.lookahead` greedy steps from each candidate, tokens spent i32[R]).

    The rolled-out steps only score the candidate (Snell et al. 2024 sec. 5.1); they are discarded.
    """
    greedy = dataclasses.replace(cfg, rule=SamplingRule(temperature=0.0))
    spent = jnp.zeros(state.lengths.shape, jnp.int32)
    for i in range(cfg.lookahead):
        state, lengths = expand(
            policy, params, verifier, verifier_params, state, jax.random.fold_in(rng, i), greedy
        )
        spent = spent + lengths
    return selection_scores(state, cfg), spent


def _output(state, cfg: SearchConfig, b: int, k: int, steps, generated, verified, nan) -> SearchOutput:
    """The finished beams of `state` [B*k] as a SearchOutput [B, k], with the best beam per problem."""
    return paths_output(
        state.tokens, state.lengths, state.scores, state.finished, state.duplicate, state.thought,
        cfg, b, k, steps, generated, verified, nan,
    )  # fmt: skip


def paths_output(
    tokens,
    lengths,
    scores,
    finished,
    duplicate,
    thought,
    cfg: SearchConfig,
    b,
    k,
    steps,
    generated,
    verified,
    nan,
) -> SearchOutput:
    """Paths with a leading `[B*k]` axis (`scores`: their `StepScores`) as a SearchOutput [B, k]; the best
    path of a problem is its highest-scored finished one (else its highest-scored)."""
    score = scores_lib.aggregate(scores, cfg.aggregation)
    rank = jnp.where(duplicate, -jnp.inf, score + 2.0 * finished)  # scores are in [0, 1]
    split = lambda x: x.reshape(b, k, *x.shape[1:])
    return SearchOutput(
        tokens=split(tokens),
        lengths=split(lengths),
        scores=split(score),
        finished=split(finished),
        duplicate=split(duplicate),
        best=jnp.argmax(split(rank), axis=1).astype(jnp.int32),
        thinking_tokens=split(thought),
        steps=steps,
        generated_tokens=generated,
        verifier_tokens=verified,
        verifier_nan=nan,
    )


def _search(
    policy,
    params,
    verifier,
    verifier_params,
    prompt_tokens,
    prompt_lengths,
    rng,
    cfg: SearchConfig,
    mesh=None,
    placement: str = "auto",
    cache_dtype=jnp.float32,
) -> SearchOutput:
    """prompt_tokens: i32[B, P] right-padded; prompt_lengths: i32[B]. `verifier` None: scores stay 0."""
    b = prompt_tokens.shape[0]
    k = cfg.n
    state = pin_state(
        init_state(
            policy,
            params,
            verifier,
            verifier_params,
            prompt_tokens,
            prompt_lengths,
            cfg,
            cache_dtype,
            # lookahead rolls a copy of every row forward while the rows keep their pages
            spare_rows=b * k if cfg.lookahead else 0,
        ),
        mesh,
    )
    per_problem = lambda x: x.reshape(b, k).sum(axis=1)
    prune_each_step = cfg.group_size > 1

    def body(carry):
        state, step, generated, verified, nan = carry
        nan_before = state.scores.nan
        state, lengths = expand(
            policy, params, verifier, verifier_params, state, jax.random.fold_in(rng, step), cfg
        )
        generated = generated + per_problem(lengths)
        verified = verified + (per_problem(lengths) if verifier is not None else 0)
        nan = nan + per_problem(state.scores.nan - nan_before)
        if prune_each_step:

            def pruned(args):
                state, generated, verified = args
                score = selection_scores(state, cfg)
                if cfg.lookahead:
                    look_rng = jax.random.fold_in(jax.random.fold_in(rng, step), 1 << 20)
                    score, spent = lookahead_scores(
                        policy, params, verifier, verifier_params, state, look_rng, cfg
                    )
                    generated = generated + per_problem(spent)
                    verified = verified + (per_problem(spent) if verifier is not None else 0)
                return prune(state, score, cfg, mesh, placement), generated, verified

            state, generated, verified = jax.lax.cond(
                step < cfg.depth - 1, pruned, lambda args: args, (state, generated, verified)
            )
        return state, step + 1, generated, verified, nan

    zeros_b = jnp.zeros((b,), jnp.int32)
    verified0 = prompt_lengths.astype(jnp.int32) if verifier is not None else zeros_b
    state, steps, generated, verified, nan = jax.lax.while_loop(
        lambda c: (c[1] < cfg.depth) & ~jnp.all(c[0].finished | c[0].duplicate),
        body,
        (state, jnp.int32(0), zeros_b, verified0, zeros_b),
    )
    return _output(state, cfg, b, k, steps, generated, verified, nan)


search = jax.jit(_search, static_argnames=("policy", "verifier", "cfg", "mesh", "placement", "cache_dtype"))
