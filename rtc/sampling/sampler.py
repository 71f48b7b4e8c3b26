"""The compiled sampler: one jitted prefill plus one `lax.while_loop` over new tokens.

The model comes in as an object with `apply(params, tokens, positions, cache)`,
`init_cache(batch, length, dtype)`, `grow_cache(cache, length)` and `max_seq_len` (`rtc.model.Model`);
the sampler never imports the network. Prompts are right-padded to a length bucket, so calls with different prompt
lengths reuse one compiled program; each row then writes its own cache slot (`cache["index"]`).
`init_decode_state` and `decode_step` (and `prefill.py`) are shared with slot refill (`refill.py`), the token
beam search (`beam_search.py`) and the step-level search (`rtc.search.expand`).

With `SamplerConfig.confidence_k > 0` every step also records DeepConf's token confidence (Fu et al. 2025,
`rtc.sampling.confidence`) and stops a row early, inside the loop, once its sliding-window confidence
falls below that row's threshold (`stop_threshold: f32[B]`); off by default, so the loop is unchanged.
A row that stopped early still holds its slot until the whole batch is done (`refill.py` hands it on).
"""

import dataclasses
from typing import Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from rtc.parallel import mesh as mesh_lib
from rtc.sampling import confidence as confidence_lib
from rtc.sampling.budget import ThinkingBudget
from rtc.sampling.prefill import constrain_cache, fork, pool_pages, prefill
from rtc.sampling.rules import SamplingRule
from rtc.errors import ConfigError

PROMPT_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)

_NO_FORCE, _FORCE_CUE = 0, 1


@flax.struct.dataclass
class SampleOutput:
    tokens: jax.Array  # i32[B, N], pad after each row's end
    # f32[B, N]: log p of each emitted token under the model's softmax at the sampling temperature
    # (before top-k / top-p filtering; raw logits when greedy); 0 after the end.
    logprobs: jax.Array
    forced: jax.Array  # bool[B, N]: the token was forced by the reasoning budget, not sampled
    lengths: jax.Array  # i32[B], emitted tokens including the stop token
    thinking_tokens: jax.Array  # i32[B], tokens emitted between <think> and </think>
    # With confidence tracking (`SamplerConfig.confidence_k > 0`), else None:
    confidences: jax.Array | None = None  # f32[B, N]: each emitted token's DeepConf confidence; 0 after
    stopped: jax.Array | None = None  # bool[B]: ended by the online confidence stop, not a stop token
    trace: confidence_lib.TraceConfidence | None = None  # f32[B] per-trace confidences
    # With a paged KV cache (`ModelConfig.kv_page_size > 0`), else None: i32[3], the most pages in use at
    # once, the pages in the pool, and 1 if the pool ever ran out (never with the pool the sampler sizes)
    kv_pages: jax.Array | None = None


@flax.struct.dataclass
class DecodeState:
    step: jax.Array  # i32[]
    next_logits: jax.Array  # f32[B, V]
    tokens: jax.Array  # i32[B, N]
    logprobs: jax.Array  # f32[B, N]
    forced: jax.Array  # bool[B, N]
    done: jax.Array  # bool[B]
    lengths: jax.Array  # i32[B]
    thinking: jax.Array  # bool[B]
    thought: jax.Array  # i32[B]
    force_mode: jax.Array  # i32[B]
    force_ptr: jax.Array  # i32[B]
    cache: dict
    rng: jax.Array
    # With confidence tracking (`SamplerConfig.confidence_k > 0`), else None:
    confidences: jax.Array | None = None  # f32[B, N]
    stopped: jax.Array | None = None  # bool[B]: stopped early by low confidence
    stop_threshold: jax.Array | None = None  # f32[B]: -inf never stops
    # Per-row keys (slot refill: randomness per sample, not per slot), else None: one key splits per step
    row_keys: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """Static settings of one compiled sampler."""

    max_new_tokens: int
    stop_ids: tuple[int, ...]
    pad_id: int = 0
    rule: SamplingRule = SamplingRule(temperature=0.0)
    budget: ThinkingBudget | None = None
    # Ids that end a row's decoding for now without ending its answer (a search step's delimiter):
    # unlike `stop_ids`, emitting one is not an attempt to end thinking.
    pause_ids: tuple[int, ...] = ()
    # Decode in this many phases, growing the KV cache between them, so attention reads only slots
    # a row can have reached: 0.82x the decode time at 4 phases (bench/decode_ideas.py), at the cost
    # of compiling the decode step once per phase.
    cache_phases: int = 1
    # DeepConf (Fu et al. 2025): > 0 records each token's confidence from its top-k log-probs (DeepConf
    # uses k = 20) and applies the online stop threshold; 0 (default) tracks nothing and never stops early.
    confidence_k: int = 0
    confidence_window: int = 16  # tokens in the sliding window of the group confidence

    def __post_init__(self):
        if self.confidence_k < 0 or self.confidence_window < 1:
            raise ConfigError(
                f"confidence_k must be >= 0 and confidence_window >= 1, got {self.confidence_k}, "
                f"{self.confidence_window}"
            )


def _force(state: DecodeState, sampled: jax.Array, cfg: SamplerConfig) -> tuple[jax.Array, ...]:
    """Applies budget forcing to `sampled: i32[B]`; returns (token, forced: bool[B], force_mode, force_ptr)."""
    budget = cfg.budget
    if budget is None:
        return sampled, jnp.zeros(sampled.shape, bool), state.force_mode, state.force_ptr
    token, mode, ptr = sampled, state.force_mode, state.force_ptr
    forced = jnp.zeros(sampled.shape, bool)
    ending = jnp.isin(sampled, jnp.array((budget.think_end_id,) + cfg.stop_ids))
    if budget.min_thinking_tokens:
        cue = jnp.array(budget.cue_ids, jnp.int32)
        too_early = (
            state.thinking & (state.thought < budget.min_thinking_tokens) & ending & (mode == _NO_FORCE)
        )
        token = jnp.where(too_early, cue[0], token)
        forced = forced | too_early
        start_ptr = 1 if len(budget.cue_ids) > 1 else 0
        mode = jnp.where(too_early & (start_ptr > 0), _FORCE_CUE, mode)
        ptr = jnp.where(too_early, start_ptr, ptr)
        continuing = state.force_mode == _FORCE_CUE
        token = jnp.where(continuing, cue[jnp.minimum(state.force_ptr, len(cue) - 1)], token)
        forced = forced | continuing
        ptr = jnp.where(continuing, state.force_ptr + 1, ptr)
        mode = jnp.where(continuing & (ptr >= len(cue)), _NO_FORCE, mode)
    if budget.max_thinking_tokens is not None:
        over = state.thinking & (state.thought >= budget.max_thinking_tokens)
        token = jnp.where(over, budget.think_end_id, token)
        forced = forced | over
        mode = jnp.where(over, _NO_FORCE, mode)
    return token, forced, mode, ptr


def decode_step(
    model, params, cfg: SamplerConfig, stream: Callable | None, state: DecodeState
) -> DecodeState:
    """One token for every row: choose (sample or force), record, then feed it to the model."""
    if state.row_keys is None:
        rng, key = jax.random.split(state.rng)
        sampled = cfg.rule.get_next_tokens(state.next_logits, key)
    else:
        rng = state.rng
        draw = lambda logits, key: cfg.rule.get_next_tokens(logits[None], key)[0]
        sampled = jax.vmap(draw)(state.next_logits, state.row_keys)
    token, was_forced, force_mode, force_ptr = _force(state, sampled, cfg)
    scale = 1.0 if cfg.rule.greedy else 1.0 / cfg.rule.temperature
    logp = jax.nn.log_softmax(state.next_logits * scale, axis=-1)
    token_logp = jnp.take_along_axis(logp, token[:, None], axis=-1)[:, 0]

    live = ~state.done
    tokens = state.tokens.at[:, state.step].set(jnp.where(live, token, cfg.pad_id))
    logprobs = state.logprobs.at[:, state.step].set(jnp.where(live, token_logp, 0.0))
    forced = state.forced.at[:, state.step].set(live & was_forced)
    thinking, thought = state.thinking, state.thought
    if cfg.budget is not None:
        thought = thought + (live & thinking & (token != cfg.budget.think_end_id))
        thinking = (thinking | (token == cfg.budget.think_start_id)) & (token != cfg.budget.think_end_id)
    done = state.done | jnp.isin(token, jnp.array(cfg.stop_ids + cfg.pause_ids, jnp.int32))
    confidences, stopped = state.confidences, state.stopped
    if cfg.confidence_k:
        c = confidence_lib.token_confidence(logp, cfg.confidence_k)  # f32[B]
        confidences = confidences.at[:, state.step].set(jnp.where(live, c, 0.0))
        window, full = confidence_lib.current_window(confidences, state.step, cfg.confidence_window)
        weak = live & ~done & confidence_lib.stop_decision(window, full, state.stop_threshold)
        stopped, done = stopped | weak, done | weak
    if stream is not None:
        jax.debug.callback(stream, state.step, jnp.where(live, token, cfg.pad_id), live, ordered=False)

    positions = state.cache["index"][:, None]  # [B, 1]: slots are positions
    logits, _, cache = model.apply(params, token[:, None], positions, state.cache)
    # A finished row keeps its next-token logits and its cache slot, so a search can resume it later
    # (the keys of the discarded token it was fed are overwritten by its next real token).
    cache = {**cache, "index": state.cache["index"] + live}
    return DecodeState(
        step=state.step + 1,
        next_logits=jnp.where(live[:, None], logits[:, 0], state.next_logits),
        tokens=tokens,
        logprobs=logprobs,
        forced=forced,
        done=done,
        lengths=state.lengths + live,
        # a row that is done keeps its budget state: a search resumes it in the next step
        thinking=jnp.where(live, thinking, state.thinking),
        thought=thought,
        force_mode=jnp.where(live, force_mode, state.force_mode),
        force_ptr=jnp.where(live, force_ptr, state.force_ptr),
        cache=cache,
        rng=rng,
        confidences=confidences,
        stopped=stopped,
        stop_threshold=state.stop_threshold,
        row_keys=state.row_keys,
    )


def prompt_opens_thinking(prompt_tokens, prompt_lengths, budget: ThinkingBudget | None) -> jax.Array:
    """bool[B]: the prompt leaves a `<think>` block open (its last `<think>` follows its last `</think>`).

    Thinking tokens already in the prompt do not count against the budget.
    """
    b, p = prompt_tokens.shape
    if budget is None:
        return jnp.zeros((b,), bool)
    slots = jnp.where(jnp.arange(p)[None, :] < prompt_lengths[:, None], jnp.arange(p)[None, :], -1)  # [B, P]
    last_start = jnp.max(jnp.where(prompt_tokens == budget.think_start_id, slots, -1), axis=1)
    last_end = jnp.max(jnp.where(prompt_tokens == budget.think_end_id, slots, -1), axis=1)
    return last_start > last_end


def phase_ends(max_new_tokens: int, phases: int) -> list[int]:
    """The step counts at which each decode phase ends, e.g. `(128, 4) -> [32, 64, 96, 128]`."""
    phases = max(1, min(phases, max_new_tokens))
    return [-(-max_new_tokens * (i + 1) // phases) for i in range(phases)]


def init_decode_state(
    next_logits: jax.Array,
    cache: dict,
    rng: jax.Array,
    cfg: SamplerConfig,
    done: jax.Array | None = None,
    thinking: jax.Array | None = None,
    thought: jax.Array | None = None,
    force_mode: jax.Array | None = None,
    force_ptr: jax.Array | None = None,
    stop_threshold: jax.Array | None = None,
) -> DecodeState:
    """The state before `decode_step`'s first call: step 0, `N = cfg.max_new_tokens` empty slots per row.

    next_logits: f32[B, V]; cache: B rows. A row resuming earlier decoding (a search step) passes its
    budget state: `thinking: bool[B]`, `thought`, `force_mode`, `force_ptr: i32[B]` (default False / 0);
    `done: bool[B]` rows (default none) emit nothing. With confidence tracking, `stop_threshold: f32[B]`
    is each row's DeepConf threshold (default -inf: never stop early); without, it must be None.
    """
    b, n = next_logits.shape[0], cfg.max_new_tokens
    zeros_b = jnp.zeros((b,), jnp.int32)
    confidences = stopped = None
    if cfg.confidence_k:
        confidences, stopped = jnp.zeros((b, n), jnp.float32), jnp.zeros((b,), bool)
        stop_threshold = (
            jnp.full((b,), -jnp.inf, jnp.float32)
            if stop_threshold is None
            else jnp.broadcast_to(jnp.asarray(stop_threshold, jnp.float32), (b,))
        )
    elif stop_threshold is not None:
        raise ConfigError("a stop_threshold needs confidence tracking: set SamplerConfig.confidence_k > 0")
    return DecodeState(
        step=jnp.int32(0),
        next_logits=next_logits,
        tokens=jnp.full((b, n), cfg.pad_id, jnp.int32),
        logprobs=jnp.zeros((b, n), jnp.float32),
        forced=jnp.zeros((b, n), bool),
        done=jnp.zeros((b,), bool) if done is None else done,
        lengths=zeros_b,
        thinking=jnp.zeros((b,), bool) if thinking is None else thinking,
        thought=zeros_b if thought is None else thought,
        force_mode=zeros_b if force_mode is None else force_mode,
        force_ptr=zeros_b if force_ptr is None else force_ptr,
        cache=cache,
        rng=rng,
        confidences=confidences,
        stopped=stopped,
        stop_threshold=stop_threshold,
    )


def sample_rows(
    model,
    params,
    prompt_tokens,
    prompt_lengths,
    rng,
    cfg: SamplerConfig,
    stream: Callable | None,
    cache_dtype,
    batch_sharding: jax.sharding.Sharding | None,
    stop_threshold: jax.Array | None = None,
    group: int = 1,
) -> SampleOutput:
    """The sampler, traceable inside a caller's `jax.jit` (`sample` is it compiled on its own).

    prompt_tokens: i32[B, P] right-padded; prompt_lengths: i32[B] (>= 1). `batch_sharding` (e.g. rows
    over the mesh's `data` axis) pins the KV cache to it; with the prompts placed the same way, sharding
    propagation keeps every `[B, ...]` array split by rows. `stop_threshold: f32[B]` (with
    `cfg.confidence_k > 0`): each row's DeepConf online threshold (`init_decode_state`). `group` (static):
    rows come in runs of `group` copies of one prompt (GRPO's G samples); each prompt is then prefilled once
    and its samples share its cache pages (paged) or copies of its rows (dense).
    """
    b, p = prompt_tokens.shape
    ends = phase_ends(cfg.max_new_tokens, cfg.cache_phases)
    unique = b // group if _can_share(b, group, p, batch_sharding) else b
    step = b // unique
    num_pages = pool_pages(model, unique, p, b, cfg.max_new_tokens)
    next_logits, cache = prefill(
        model,
        params,
        prompt_tokens[::step],
        prompt_lengths[::step],
        p + ends[0],
        cache_dtype,
        batch_sharding,
        num_pages,
    )
    if step > 1:  # one prefill per prompt; its samples continue from it
        next_logits, cache = fork(next_logits, cache, jnp.arange(b) // step)
        cache = constrain_cache(cache, batch_sharding)
    thinking = prompt_opens_thinking(prompt_tokens, prompt_lengths, cfg.budget)
    state = init_decode_state(next_logits, cache, rng, cfg, thinking=thinking, stop_threshold=stop_threshold)
    for i, end in enumerate(ends):
        if i:
            state = state.replace(
                cache=constrain_cache(model.grow_cache(state.cache, p + end), batch_sharding)
            )
        state = jax.lax.while_loop(
            lambda s, end=end: (s.step < end) & ~jnp.all(s.done),
            lambda s: decode_step(model, params, cfg, stream, s),
            state,
        )
    return SampleOutput(
        tokens=state.tokens,
        logprobs=state.logprobs,
        forced=state.forced,
        lengths=state.lengths,
        thinking_tokens=state.thought,
        confidences=state.confidences,
        stopped=state.stopped,
        trace=None
        if state.confidences is None
        else confidence_lib.trace_confidence(state.confidences, state.lengths, cfg.confidence_window),
        kv_pages=_kv_pages(state.cache),
    )


def _kv_pages(cache: dict) -> jax.Array | None:
    """i32[3]: a paged cache's peak pages in use, pool size and overflow; None for a dense cache."""
    if "peak" not in cache:
        return None
    pool = jnp.int32(cache["layers"][0]["k"].shape[0])
    return jnp.stack([cache["peak"], pool, cache["overflow"].astype(jnp.int32)])


def _can_share(b: int, group: int, p: int, sharding: jax.sharding.Sharding | None) -> bool:
    """Whether `b / group` prefilled rows divide as the sharded batch does (else every row is prefilled)."""
    if group <= 1 or b % group:
        return False
    if sharding is None:
        return True
    try:
        sharding.shard_shape((b // group, p))
    except ValueError:
        return False
    return True


sample = jax.jit(
    sample_rows, static_argnames=("model", "cfg", "stream", "cache_dtype", "batch_sharding", "group")
)


def bucket_length(length: int, buckets: Sequence[int] = PROMPT_BUCKETS) -> int:
    """The smallest bucket holding `length` tokens."""
    for size in buckets:
        if length <= size:
            return size
    raise ConfigError(f"prompt of {length} tokens is longer than the largest bucket {buckets[-1]}")


def pad_prompts(
    prompts: Sequence[Sequence[int]],
    pad_id: int,
    max_new_tokens: int,
    max_seq_len: int,
    buckets: Sequence[int] = PROMPT_BUCKETS,
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pads token lists into `(i32[B, P], i32[B])` with P a bucket; checks the context fits."""
    if not prompts or any(len(x) == 0 for x in prompts):
        raise ConfigError("every prompt needs at least one token")
    longest = max(len(x) for x in prompts)
    if longest + max_new_tokens > max_seq_len:
        raise ConfigError(
            f"prompt of {longest} tokens plus max_new_tokens={max_new_tokens} exceeds the "
            f"model's context of {max_seq_len} tokens"
        )
    p = min(bucket_length(longest, buckets), max_seq_len - max_new_tokens)
    tokens = np.full((len(prompts), p), pad_id, np.int32)
    for i, x in enumerate(prompts):
        tokens[i, : len(x)] = x
    return tokens, np.array([len(x) for x in prompts], np.int32)


def generate(
    model,
    params,
    prompts: Sequence[Sequence[int]],
    rng: jax.Array,
    cfg: SamplerConfig,
    stream: Callable | None = None,
    cache_dtype=jnp.float32,
    batch_sharding: jax.sharding.Sharding | None = None,
    stop_threshold=None,
) -> SampleOutput:
    """Pads `prompts` (token lists) to a bucket and samples `cfg.max_new_tokens` after each.

    With `batch_sharding` the rows are split over devices (their number must divide the batch).
    A new `stream` function is a new static argument: pass the same function to avoid recompiling.
    `stop_threshold: f[B]` (with `cfg.confidence_k > 0`): each row's DeepConf online stop threshold.
    """
    tokens, lengths = pad_prompts(prompts, cfg.pad_id, cfg.max_new_tokens, model.max_seq_len)
    if batch_sharding is not None:
        tokens, lengths = jax.device_put((tokens, lengths), batch_sharding)
    if stop_threshold is not None:
        stop_threshold = np.asarray(stop_threshold, np.float32)
        if batch_sharding is not None:
            stop_threshold = jax.device_put(stop_threshold, batch_sharding)
    return sample(
        model,
        params,
        tokens,
        lengths,
        rng,
        cfg=cfg,
        stream=stream,
        cache_dtype=jnp.dtype(cache_dtype),
        batch_sharding=batch_sharding,
        stop_threshold=stop_threshold,
    )


def completions(out: SampleOutput) -> list[list[int]]:
    """Each row's emitted tokens (host lists), up to and including its stop token (all rows, also those
    on other processes' devices)."""
    tokens, lengths = mesh_lib.to_host((out.tokens, out.lengths))
    return [tokens[i, : lengths[i]].tolist() for i in range(len(lengths))]
