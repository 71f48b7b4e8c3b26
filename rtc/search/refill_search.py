"""Best-of-N through slot refill: N whole paths per problem through S rows, then the verifier reads them.

The step-level best-of-N (`tree_search.search`, strategy `best_of_n`) writes every path in steps of
`step_tokens`: all `R = B * N` rows wait at each step's end for the slowest, and a finished row idles until
the whole batch has finished. Best-of-N prunes nothing, so its paths need not move in step: here each
problem's N paths are sampled whole through `S = SearchConfig.slots` rows by slot refill
(`rtc.sampling.refill`: a row whose path ends takes the problem's next one at once), and the verifier then
reads every path in the same steps of `step_tokens` positions (`score_paths`) through its own cache,
prefilled once per problem. Each step's readings are the ones `expand.expand` makes for it, so a path
scores as it would in the step-level search (tested against it, and against the plain-Python reference).

Randomness: path `s`'s token `i` is drawn with `fold_in(fold_in(rng, s), i)`, so the paths do not depend on
S (tested) but differ from the step-level search's at the same seed, not in distribution. One device:
the rows of a problem stay together for its shared prompt.
"""

import jax
import jax.numpy as jnp

from rtc.errors import ConfigError
from rtc.sampling import prefill as prefill_lib
from rtc.sampling.refill import sample_refill_rows
from rtc.sampling.sampler import SamplerConfig
from rtc.search import scores as scores_lib
from rtc.search.config import SearchConfig
from rtc.search.expand import self_readings, verifier_readings
from rtc.search.tree_search import SearchOutput, paths_output


def check_one_device(mesh) -> None:
    """Slot refill keeps a problem's rows together on one device; a larger mesh is refused."""
    if mesh is not None and mesh.devices.size > 1:
        raise ConfigError(
            f"slot refill runs on one device; the mesh has {mesh.devices.size}: set slots=0 to spread the "
            f"paths over the devices"
        )


def refill_sampler_config(cfg: SearchConfig) -> SamplerConfig:
    """Whole paths of up to `depth * step_tokens` tokens, as the step-level best-of-N can write."""
    return SamplerConfig(
        max_new_tokens=cfg.depth * cfg.step_tokens,
        stop_ids=cfg.stop_ids,
        pad_id=cfg.pad_id,
        rule=cfg.rule,
        budget=cfg.budget,
    )


def score_paths(
    verifier,
    verifier_params,
    prompt_tokens: jax.Array,
    prompt_lengths: jax.Array,
    tokens: jax.Array,
    lengths: jax.Array,
    logprobs: jax.Array,
    forced: jax.Array,
    cfg: SearchConfig,
    cache_dtype=jnp.float32,
    rows_per_problem: int | None = None,
) -> tuple[scores_lib.StepScores, jax.Array]:
    """(StepScores [R], steps i32[]) of whole paths read in steps of `step_tokens`, as `expand` reads them.

    prompt_tokens: i32[B, P] right-padded; prompt_lengths: i32[B]; tokens: i32[R = B * N, T] each problem's
    N paths in a run, pad after `lengths: i32[R]`; logprobs: f32[R, T] the policy's, at its sampling
    temperature; forced: bool[R, T] tokens the thinking budget forced. Step `c` of a path is its columns
    `[c * S, (c + 1) * S)`; `steps` is the longest path's step count. `verifier_kind="self"` reads
    `logprobs` and needs no verifier; `verifier` None otherwise: every score stays 0.

    The verifier reads `rows_per_problem` paths of each problem at a time (default all N), in blocks that
    deal each problem's paths out longest first: a block runs the steps of its own longest path, so the
    short paths' blocks end early, and the verifier cache holds `B * rows_per_problem` rows.
    """
    tokens, lengths, logprobs, forced = (jnp.asarray(x) for x in (tokens, lengths, logprobs, forced))
    r, t = tokens.shape
    b, p = prompt_tokens.shape
    s = cfg.step_tokens
    if t % s or r % b:
        raise ConfigError(
            f"score_paths reads whole steps of {s} tokens of N paths per problem: got paths of {t} tokens "
            f"and {r} paths for {b} problems"
        )
    steps = (jnp.max(lengths) + s - 1) // s
    column = lambda x, c: jax.lax.dynamic_slice_in_dim(x, c * s, s, axis=1)  # [R, S]: step c
    step_lengths = lambda c: jnp.clip(lengths - c * s, 0, s)  # i32[R]
    if cfg.verifier_kind == "self":

        def read_self(c, scores):
            readings = self_readings(column(logprobs, c), column(forced, c), step_lengths(c))
            return scores_lib.add(scores, *readings)

        return jax.lax.fori_loop(0, steps, read_self, scores_lib.empty(r)), steps
    if verifier is None:
        return scores_lib.empty(r), steps
    n = r // b
    blocks = -(-n // (rows_per_problem or n))
    g = -(-n // blocks)  # rows per problem in a block
    # each problem's paths, longest first, dealt into blocks of G per problem (runs, as a paged cache needs)
    order = jnp.argsort(-lengths.reshape(b, n), axis=1, stable=True)  # [B, N]
    order = jnp.pad(order, ((0, 0), (0, blocks * g - n)), mode="edge") + (jnp.arange(b) * n)[:, None]
    block_rows = order.reshape(b, blocks, g).swapaxes(0, 1).reshape(blocks, b * g)  # i32[blocks, B * G]
    # the padding re-reads a path of its block; its reading is dropped (written out of range)
    padded = (jnp.arange(blocks * g) >= n).reshape(blocks, g)  # [blocks, G]
    write_rows = jnp.where(jnp.tile(padded, (1, b)), r, block_rows)  # i32[blocks, B * G]
    read_block = _block_reader(
        verifier, verifier_params, prompt_tokens, prompt_lengths, tokens, lengths, forced, cfg, cache_dtype, g
    )

    def read_into(j, scores):
        new = read_block(block_rows[j])
        return jax.tree.map(lambda old, x: old.at[write_rows[j]].set(x, mode="drop"), scores, new)

    return jax.lax.fori_loop(0, blocks, read_into, scores_lib.empty(r)), steps


def _block_reader(
    verifier, verifier_params, prompt_tokens, prompt_lengths, tokens, lengths, forced, cfg, cache_dtype, g
):
    """`read(rows: i32[B * G]) -> StepScores [B * G]`: the verifier's step readings of paths `rows`, G of
    each problem in a run, through a cache forked from the prompts' (prefilled here, once)."""
    (b, p), t, s = prompt_tokens.shape, tokens.shape[1], cfg.step_tokens
    cache_len = min(p + t + s, verifier.max_seq_len)  # a path, and one step of slack for writes past its end
    prompt_logits, prompt_cache = prefill_lib.prefill(
        verifier,
        verifier_params,
        prompt_tokens,
        prompt_lengths,
        cache_len,
        cache_dtype,
        num_pages=prefill_lib.pool_pages(verifier, b, p, b * g, cache_len - p),
    )
    column = lambda x, c: jax.lax.dynamic_slice_in_dim(x, c * s, s, axis=1)  # [B * G, S]: step c

    def read_block(rows):
        logits, cache = prefill_lib.fork(prompt_logits, prompt_cache, jnp.repeat(jnp.arange(b), g))
        logits = logits if cfg.verifier_kind == "checker" else None
        block_tokens, block_lengths, block_forced = tokens[rows], lengths[rows], forced[rows]

        def read(c, carry):
            block_scores, cache, logits = carry
            n_c = jnp.clip(block_lengths - c * s, 0, s)
            probs, was_read, cache, logits = verifier_readings(
                verifier, verifier_params, cache, logits, column(block_tokens, c), n_c,
                column(block_forced, c), cfg,
            )  # fmt: skip
            return scores_lib.add(block_scores, probs, was_read), cache, logits

        block_steps = (jnp.max(block_lengths) + s - 1) // s
        new, _, _ = jax.lax.fori_loop(0, block_steps, read, (scores_lib.empty(b * g), cache, logits))
        return new

    return read_block


def _search_refill(
    policy,
    params,
    verifier,
    verifier_params,
    prompt_tokens,
    prompt_lengths,
    rng,
    cfg: SearchConfig,
    cache_dtype=jnp.float32,
) -> SearchOutput:
    """Best-of-N of every problem (`prompt_tokens: i32[B, P]` right-padded, `prompt_lengths: i32[B]`)
    through `min(cfg.slots, cfg.n)` rows each; the same output as `tree_search.search`."""
    if cfg.strategy != "best_of_n" or not cfg.slots:
        raise ConfigError(
            f"search_refill runs best_of_n with slots > 0, got {cfg.strategy}, slots={cfg.slots}"
        )
    b, n = prompt_tokens.shape[0], cfg.n
    out = sample_refill_rows(
        policy,
        params,
        prompt_tokens,
        prompt_lengths,
        rng,
        refill_sampler_config(cfg),
        samples=n,
        slots=min(cfg.slots, n),
        cache_dtype=cache_dtype,
        shared=cfg.shared_slots,
    )
    scores, steps = score_paths(
        verifier,
        verifier_params,
        prompt_tokens,
        prompt_lengths,
        out.tokens,
        out.lengths,
        out.logprobs,
        out.forced,
        cfg,
        cache_dtype,
        rows_per_problem=min(cfg.slots, n),
    )
    last = jnp.take_along_axis(out.tokens, jnp.maximum(out.lengths - 1, 0)[:, None], axis=1)[:, 0]
    finished = (out.lengths > 0) & jnp.isin(last, jnp.array(cfg.stop_ids, jnp.int32))
    generated = out.lengths.reshape(b, n).sum(axis=1)
    verified = (
        prompt_lengths.astype(jnp.int32) + generated if verifier is not None else jnp.zeros_like(generated)
    )
    return paths_output(
        out.tokens, out.lengths, scores, finished, jnp.zeros_like(finished), out.thinking_tokens, cfg, b, n,
        steps, generated, verified, scores.nan.reshape(b, n).sum(axis=1),
    )  # fmt: skip


search_refill = jax.jit(_search_refill, static_argnames=("policy", "verifier", "cfg", "cache_dtype"))
