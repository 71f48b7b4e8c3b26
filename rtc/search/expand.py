"""The search state and its one move: every live branch writes one reasoning step, then is scored.

Search state: arrays with a leading flattened `[R = B * K]` axis (problems x branches), problem-major.
Each branch holds its path (the completion so far), the policy's KV cache and next-token logits, the
verifier's KV cache and its running step scores. Prompts are prefilled once per problem
(`rtc.sampling.prefill`) and the caches copied K times.

One step (`expand`): the compiled sampler's token step (`rtc.sampling.sampler.decode_step`) runs in a
`lax.while_loop` until every branch has emitted the delimiter, a stop id, or `step_tokens` tokens; the
step's tokens are appended to each path; the verifier reads the new tokens only, through its own
cache (one forward pass of `step_tokens` positions), and its readings are added to the running scores.
Nothing is ever re-scored. Randomness: step `s` draws with `fold_in(rng, s)`, split once per token.
"""

import flax.struct
import jax
import jax.numpy as jnp

from rtc.model import kv_cache
from rtc.sampling import prefill as prefill_lib
from rtc.sampling import sampler as sampler_lib
from rtc.search import scores as scores_lib
from rtc.search.config import SearchConfig


@flax.struct.dataclass
class SearchState:
    tokens: jax.Array  # i32[R, T]: each path's completion tokens, pad after `lengths`
    lengths: jax.Array  # i32[R]
    finished: jax.Array  # bool[R]: the path emitted a stop id
    duplicate: jax.Array  # bool[R]: a copy of a finished path kept by pruning (never a candidate)
    next_logits: jax.Array  # f32[R, V]
    cache: dict  # the policy's KV cache, [R, ...] leaves
    verifier_cache: dict | None
    # f32[R, V]: a checker's logits after each path's last token (verifier_kind="checker"), else None
    verifier_logits: jax.Array | None
    scores: scores_lib.StepScores
    thinking: jax.Array  # bool[R]: inside <think>
    thought: jax.Array  # i32[R]: thinking tokens so far
    force_mode: jax.Array  # i32[R]
    force_ptr: jax.Array  # i32[R]


def split_pools(state: SearchState) -> tuple[SearchState, tuple]:
    """(the state with only the `[R, ...]` leaves of its caches, the rest): a paged cache's page pool is
    shared by every row, so gathers, scatters and row shardings leave it out (`join_pools` puts it back)."""
    cache, rest = kv_cache.split_rows(state.cache)
    verifier_cache, verifier_rest = kv_cache.split_rows(state.verifier_cache)
    return state.replace(cache=cache, verifier_cache=verifier_cache), (rest, verifier_rest)


def join_pools(state: SearchState, pools: tuple) -> SearchState:
    """Inverse of `split_pools`."""
    rest, verifier_rest = pools
    return state.replace(
        cache=kv_cache.join(state.cache, rest),
        verifier_cache=kv_cache.join(state.verifier_cache, verifier_rest),
    )


def pin_pools(pools: tuple, held: SearchState | None) -> tuple:
    """`pools` (`split_pools`) with the pages of `held`'s rows (split) pinned: a state joined to them never
    writes into pages those rows name. None unpins."""
    rest, verifier_rest = pools
    return (
        kv_cache.pin(rest, None if held is None else held.cache),
        kv_cache.pin(verifier_rest, None if held is None else held.verifier_cache),
    )


def step_sampler_config(cfg: SearchConfig) -> sampler_lib.SamplerConfig:
    """The token loop of one step: it stops a branch at a stop id and (split steps) pauses it at the
    delimiter, which is not an attempt to end thinking."""
    return sampler_lib.SamplerConfig(
        max_new_tokens=cfg.step_tokens,
        stop_ids=cfg.stop_ids,
        pad_id=cfg.pad_id,
        rule=cfg.rule,
        budget=cfg.budget,
        pause_ids=(cfg.delimiter_id,) if cfg.split_steps else (),
    )


def context(policy, verifier) -> int:
    """The longest prompt + path a search can hold: the policy's context, or the verifier's when that is
    shorter (a reward model of another preset reads every path too, through a cache of its own length)."""
    return policy.max_seq_len if verifier is None else min(policy.max_seq_len, verifier.max_seq_len)


def init_state(
    policy,
    params,
    verifier,
    verifier_params,
    prompt_tokens,
    prompt_lengths,
    cfg: SearchConfig,
    cache_dtype,
    branches: int | None = None,
    spare_rows: int = 0,
) -> SearchState:
    """The root of every problem's search, copied to `branches` (default `cfg.n`) rows: `R = B * n`.

    prompt_tokens: i32[B, P] right-padded; prompt_lengths: i32[B]. `verifier` None: no verifier cache.
    A paged cache's pool also holds the pages of `spare_rows` more rows made from these (MCTS rollouts).
    """
    b, p = prompt_tokens.shape
    k = cfg.n if branches is None else branches
    # one step of slack: a finished or paused row still writes (unread) keys at its index, and the
    # verifier writes a whole step's S positions; without it those writes could clamp onto real slots.
    # Each model's cache stops at its own context (a verifier of another preset may have another).
    wanted = p + cfg.max_path_tokens + cfg.step_tokens
    cache_len = min(wanted, policy.max_seq_len)
    r = b * k
    new_tokens = cache_len - p
    next_logits, cache = prefill_lib.prefill(
        policy,
        params,
        prompt_tokens,
        prompt_lengths,
        cache_len,
        cache_dtype,
        num_pages=prefill_lib.pool_pages(policy, b, p, r + spare_rows, new_tokens),
    )
    verifier_cache = verifier_logits = None
    if verifier is not None:
        verifier_len = min(wanted, verifier.max_seq_len)
        verifier_logits, verifier_cache = prefill_lib.prefill(
            verifier,
            verifier_params,
            prompt_tokens,
            prompt_lengths,
            verifier_len,
            cache_dtype,
            num_pages=prefill_lib.pool_pages(verifier, b, p, r + spare_rows, verifier_len - p),
        )
    thinking = sampler_lib.prompt_opens_thinking(prompt_tokens, prompt_lengths, cfg.budget)
    rows = jnp.repeat(jnp.arange(b), k)  # [R]: each problem's branches are contiguous
    copy = lambda tree: jax.tree.map(lambda x: jnp.take(x, rows, axis=0), tree)
    fork = lambda c: None if c is None else kv_cache.reorder(c, rows)  # paged: branches share the prompt
    zeros = jnp.zeros((r,), jnp.int32)
    return SearchState(
        tokens=jnp.full((r, cfg.max_path_tokens), cfg.pad_id, jnp.int32),
        lengths=zeros,
        finished=jnp.zeros((r,), bool),
        duplicate=jnp.zeros((r,), bool),
        next_logits=copy(next_logits),
        cache=fork(cache),
        verifier_cache=fork(verifier_cache),
        verifier_logits=copy(verifier_logits) if cfg.verifier_kind == "checker" else None,
        scores=scores_lib.empty(r),
        thinking=copy(thinking),
        thought=zeros,
        force_mode=zeros,
        force_ptr=zeros,
    )


def append_rows(buffer: jax.Array, new: jax.Array, offsets: jax.Array, lengths: jax.Array) -> jax.Array:
    """Writes the first `lengths[r]` of `new: [R, S]` into `buffer: [R, T]` from column `offsets[r]`.

    Only real tokens are written (a scatter that drops the rest), so a row that wrote nothing this step,
    e.g. one at the depth limit while other rows roll on, keeps its path intact even when `offset + S`
    would run past the buffer.
    """
    r, s = new.shape
    columns = offsets[:, None] + jnp.arange(s)[None, :]  # [R, S]
    columns = jnp.where(jnp.arange(s)[None, :] < lengths[:, None], columns, buffer.shape[1])  # out: dropped
    return buffer.at[jnp.arange(r)[:, None], columns].set(new, mode="drop")


def verifier_readings(
    verifier, verifier_params, cache, logits, step_tokens, step_lengths, forced, cfg: SearchConfig
):
    """Feeds one step's tokens to the verifier; returns (probs f32[R, S], read bool[R, S], cache, logits).

    A PRM reads the head at each delimiter of the step (as `reward_model.prm_step_rewards`); an ORM at
    the step's last token; a checker (a language model, `logits: f32[R, V]` its logits after the path so
    far) reads the step's probability, the product of its own probabilities of the written tokens at
    temperature 1 (`self_readings(..., reduce="sum")`), and returns its logits after the step. The cache
    advances by each row's step length, not by S.
    """
    r, s = step_tokens.shape
    start = cache["index"]
    positions = start[:, None] + jnp.arange(s, dtype=jnp.int32)[None, :]  # [R, S]: slots are positions
    step_logits, values, cache = verifier.apply(verifier_params, step_tokens, positions, cache)
    cache = {**cache, "index": start + step_lengths}
    if cfg.verifier_kind == "checker":
        before = jnp.concatenate([logits[:, None], step_logits[:, :-1]], axis=1)  # [R, S, V]: reads token j
        logp = jax.nn.log_softmax(before.astype(jnp.float32), axis=-1)
        written = jnp.take_along_axis(logp, step_tokens[..., None], axis=-1)[..., 0]  # [R, S]
        last = jnp.maximum(step_lengths - 1, 0)
        after = jnp.take_along_axis(step_logits, last[:, None, None], axis=1)[:, 0]  # [R, V]
        logits = jnp.where((step_lengths > 0)[:, None], after, logits)
        return *self_readings(written, forced, step_lengths, reduce="sum"), cache, logits
    inside = jnp.arange(s)[None, :] < step_lengths[:, None]  # [R, S]
    if cfg.verifier_kind == "prm":
        read = inside & (step_tokens == cfg.delimiter_id)
    else:
        read = jnp.arange(s)[None, :] == (step_lengths - 1)[:, None]
    return jax.nn.sigmoid(values), read, cache, logits


def self_readings(
    logprobs: jax.Array, forced: jax.Array, step_lengths: jax.Array, reduce: str = "min"
) -> tuple[jax.Array, jax.Array]:
    """The policy as its own step verifier, at no cost: (probs f32[R, S], read bool[R, S]).

    A step's reading is the probability of its least likely sampled token (`rtc.rewards.self_check`),
    taken from the log-probs the sampler already computed (`logprobs: f32[R, S]`, at the sampling
    temperature), read at the step's last token. `reduce="sum"` reads the probability of the whole step
    instead (a checker's reading). Tokens the thinking budget forced (`forced: bool[R, S]`) are not the
    policy's choice and are left out; a step of forced tokens only is not read.
    """
    s = logprobs.shape[1]
    where = jnp.arange(s)[None, :]
    chosen = (where < step_lengths[:, None]) & ~forced  # [R, S]
    if reduce == "min":
        log_reading = jnp.min(jnp.where(chosen, logprobs, jnp.inf), axis=1)  # [R]
    else:
        log_reading = jnp.where(
            chosen.any(axis=1), jnp.sum(jnp.where(chosen, logprobs, 0.0), axis=1), jnp.inf
        )
    read = (where == (step_lengths - 1)[:, None]) & jnp.isfinite(log_reading)[:, None]
    return jnp.broadcast_to(jnp.exp(log_reading)[:, None], logprobs.shape), read


def expand(
    policy,
    params,
    verifier,
    verifier_params,
    state: SearchState,
    rng: jax.Array,
    cfg: SearchConfig,
    live: jax.Array | None = None,
) -> tuple[SearchState, jax.Array]:
    """Every unfinished branch (among `live: bool[R]`, default all) writes one step and is scored;
    returns (state, step_lengths i32[R])."""
    s = cfg.step_tokens
    token_cfg = step_sampler_config(cfg)
    decode = sampler_lib.init_decode_state(
        state.next_logits,
        state.cache,
        rng,
        token_cfg,
        done=state.finished if live is None else state.finished | ~live,
        thinking=state.thinking,
        thought=state.thought,
        force_mode=state.force_mode,
        force_ptr=state.force_ptr,
    )
    decode = jax.lax.while_loop(
        lambda d: (d.step < s) & ~jnp.all(d.done),
        lambda d: sampler_lib.decode_step(policy, params, token_cfg, None, d),
        decode,
    )
    step_lengths = decode.lengths  # [R]
    last = jnp.take_along_axis(decode.tokens, jnp.maximum(step_lengths - 1, 0)[:, None], axis=1)[:, 0]
    ended = (step_lengths > 0) & jnp.isin(last, jnp.array(cfg.stop_ids, jnp.int32))
    scores, verifier_cache, verifier_logits = state.scores, state.verifier_cache, state.verifier_logits
    if cfg.verifier_kind == "self":
        scores = scores_lib.add(scores, *self_readings(decode.logprobs, decode.forced, step_lengths))
    elif verifier is not None:
        probs, read, verifier_cache, verifier_logits = verifier_readings(
            verifier,
            verifier_params,
            verifier_cache,
            verifier_logits,
            decode.tokens,
            step_lengths,
            decode.forced,
            cfg,
        )
        scores = scores_lib.add(scores, probs, read)
    state = state.replace(
        tokens=append_rows(state.tokens, decode.tokens, state.lengths, step_lengths),
        lengths=state.lengths + step_lengths,
        finished=state.finished | ended,
        next_logits=decode.next_logits,
        cache=decode.cache,
        verifier_cache=verifier_cache,
        verifier_logits=verifier_logits,
        scores=scores,
        thinking=decode.thinking,
        thought=decode.thought,
        force_mode=decode.force_mode,
        force_ptr=decode.force_ptr,
    )
    return state, step_lengths
