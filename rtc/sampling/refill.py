"""Slot refill: N samples per prompt through fewer slots, a finished sample's slot starting the next one
inside the same compiled loop.

Each of U prompts owns R slots (rows `u * R .. u * R + R - 1`, a run, so a paged cache's shared prefix stays
valid) and N >= R samples to draw. A slot decodes one sample; when it ends (a stop id, DeepConf's online
stop, or `max_new_tokens`) its tokens are already in the output row of its sample id, and the slot takes
the prompt's next pending sample: next-token logits and budget state reset to the prompt's, its cache row
to the prompt's (paged: the prompt's page table, no prefill and no copy, the prompt's pages pinned for the
loop's life; dense: the prompt's cache row copied in). Rows that finish early no longer idle until the
longest sample of their batch ends, as they do in `sampler.sample`.

Randomness is per sample: sample `s` draws its token `i` with `fold_in(fold_in(rng, s), i)`, so a sample's
tokens do not depend on which slot ran it or when; refill equals every sample in its own slot (tested).
Reports slot occupancy: live slot-steps over slots x steps.
"""

import dataclasses
from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp

from rtc.errors import ConfigError
from rtc.model import kv_cache
from rtc.sampling import confidence as confidence_lib
from rtc.sampling import prefill as prefill_lib
from rtc.sampling import sampler as sampler_lib
from rtc.sampling.sampler import DecodeState, SamplerConfig


@flax.struct.dataclass
class RefillOutput:
    tokens: jax.Array  # i32[U * N, T]: sample `u * N + i` is prompt u's i-th; pad after each end
    logprobs: jax.Array  # f32[U * N, T]
    forced: jax.Array  # bool[U * N, T]: the token was forced by the reasoning budget, not sampled
    lengths: jax.Array  # i32[U * N]
    thinking_tokens: jax.Array  # i32[U * N]
    steps: jax.Array  # i32[]: decode steps the loop ran
    occupancy: jax.Array  # f32[]: live slot-steps / (slots x steps)
    # With confidence tracking (`SamplerConfig.confidence_k > 0`), else None, as `sampler.SampleOutput`:
    confidences: jax.Array | None = None  # f32[U * N, T]
    stopped: jax.Array | None = None  # bool[U * N]: ended by DeepConf's online stop
    trace: confidence_lib.TraceConfidence | None = None


@flax.struct.dataclass
class RefillState:
    dec: DecodeState  # U * R slots, one-column token buffers
    sample: jax.Array  # i32[B]: the sample each slot runs, -1 idle
    column: jax.Array  # i32[B]: tokens that sample has emitted
    pending: jax.Array  # i32[U]: each prompt's next sample index
    out: RefillOutput


def _keys(rng: jax.Array, sample: jax.Array, column: jax.Array) -> jax.Array:
    """Per-row keys: sample `s`'s token `i` draws with `fold_in(fold_in(rng, s), i)`."""
    return jax.vmap(lambda s, c: jax.random.fold_in(jax.random.fold_in(rng, s), c))(sample, column)


def _reset(dec: DecodeState, take: jax.Array, prompt: dict, source: jax.Array) -> DecodeState:
    """`dec` with rows `take: bool[B]` starting afresh from prompt rows `source: i32[B]`."""
    return dec.replace(
        next_logits=jnp.where(take[:, None], prompt["logits"][source], dec.next_logits),
        done=dec.done & ~take,
        thinking=jnp.where(take, prompt["thinking"][source], dec.thinking),
        thought=jnp.where(take, 0, dec.thought),
        force_mode=jnp.where(take, 0, dec.force_mode),
        force_ptr=jnp.where(take, 0, dec.force_ptr),
        lengths=jnp.where(take, 0, dec.lengths),
        stopped=None if dec.stopped is None else dec.stopped & ~take,
        cache=kv_cache.refill(dec.cache, take, prompt["cache"], source),
    )


def _step(
    model,
    params,
    cfg: SamplerConfig,
    max_new: int,
    rng,
    prompt: dict,
    samples: int,
    confidence: tuple | None,
    state: RefillState,
):
    """One token for every slot, then commit what ended and refill; `confidence`: (k, window, f32[U]
    thresholds) or None."""
    dec, sample, column, out = state.dec, state.sample, state.column, state.out
    b, q, total = sample.shape[0], state.pending.shape[0], out.lengths.shape[0]
    runs, per_queue = b // q, total // q
    live = ~dec.done
    keys = _keys(rng, jnp.maximum(sample, 0), column)
    logits = dec.next_logits  # f32[B, V]: what this step draws from
    dec = sampler_lib.decode_step(model, params, cfg, None, dec.replace(step=jnp.int32(0), row_keys=keys))
    ids = jnp.where(live, sample, total)  # a row not live writes nothing (dropped)
    tokens = out.tokens.at[ids, column].set(dec.tokens[:, 0], mode="drop")
    logprobs = out.logprobs.at[ids, column].set(dec.logprobs[:, 0], mode="drop")
    forced = out.forced.at[ids, column].set(dec.forced[:, 0], mode="drop")
    weak = jnp.zeros((b,), bool)
    if confidence is not None:  # DeepConf's online stop, per sample (as `sampler.decode_step` does per row)
        k, window, threshold = confidence
        scale = 1.0 if cfg.rule.greedy else 1.0 / cfg.rule.temperature
        c = confidence_lib.token_confidence(jax.nn.log_softmax(logits * scale, axis=-1), k)  # f32[B]
        conf = out.confidences.at[ids, column].set(c, mode="drop")
        rows = jnp.take(conf, jnp.maximum(sample, 0), axis=0)  # f32[B, T]: each slot's sample so far
        current = jax.vmap(lambda row, col: confidence_lib.current_window(row[None], col, window))
        group, full = current(rows, column)
        weak = (
            live
            & ~dec.done
            & confidence_lib.stop_decision(group[:, 0], full, threshold[jnp.maximum(sample, 0) // samples])
        )
        out = out.replace(confidences=conf)
    column = column + live
    done = dec.done | weak | (column >= max_new)
    ended = done & (sample >= 0)
    ended_ids = jnp.where(ended, sample, total)
    lengths = out.lengths.at[ended_ids].set(column, mode="drop")
    thought = out.thinking_tokens.at[ended_ids].set(dec.thought, mode="drop")
    if confidence is not None:
        out = out.replace(stopped=out.stopped.at[ended_ids].set(weak, mode="drop"))
    sample = jnp.where(ended, -1, sample)
    # refill: each queue's idle slots take its next pending samples, in slot order
    idle = (sample < 0).reshape(q, runs)
    new = state.pending[:, None] + jnp.cumsum(idle, axis=1) - 1  # [Q, B / Q]
    take = idle & (new < per_queue)
    sample = jnp.where(take, jnp.arange(q)[:, None] * per_queue + new, sample.reshape(q, runs)).reshape(b)
    take = take.reshape(b)
    dec = dec.replace(done=done)
    source = jnp.maximum(sample, 0) // samples  # i32[B]: the prompt of each slot's sample
    dec = jax.lax.cond(jnp.any(take), lambda d: _reset(d, take, prompt, source), lambda d: d, dec)
    out = out.replace(
        tokens=tokens,
        logprobs=logprobs,
        forced=forced,
        lengths=lengths,
        thinking_tokens=thought,
        steps=out.steps + 1,
        occupancy=out.occupancy + jnp.sum(live),
    )
    return RefillState(
        dec=dec,
        sample=sample,
        column=jnp.where(take, 0, column),
        pending=state.pending + jnp.sum(take.reshape(q, runs), axis=1),
        out=out,
    )


def _empty_output(total: int, t: int, pad_id: int, confidence: bool) -> RefillOutput:
    """The output buffers of `total` samples of up to `t` tokens, before any is drawn."""
    return RefillOutput(
        tokens=jnp.full((total, t), pad_id, jnp.int32),
        logprobs=jnp.zeros((total, t), jnp.float32),
        forced=jnp.zeros((total, t), bool),
        lengths=jnp.zeros((total,), jnp.int32),
        thinking_tokens=jnp.zeros((total,), jnp.int32),
        steps=jnp.int32(0),
        occupancy=jnp.float32(0.0),
        confidences=jnp.zeros((total, t), jnp.float32) if confidence else None,
        stopped=jnp.zeros((total,), bool) if confidence else None,
    )


def sample_refill_rows(
    model,
    params,
    prompt_tokens: jax.Array,
    prompt_lengths: jax.Array,
    rng: jax.Array,
    cfg: SamplerConfig,
    samples: int,
    slots: int,
    cache_dtype=jnp.float32,
    stop_threshold: jax.Array | None = None,
    shared: bool = False,
) -> RefillOutput:
    """`samples` completions of each of U prompts (`prompt_tokens: i32[U, P]` right-padded,
    `prompt_lengths: i32[U]`) through `slots` slots per prompt; traceable (`sample_refill` is it jitted).

    With `cfg.confidence_k > 0` every token's DeepConf confidence is recorded and a sample stops once its
    window confidence falls below its prompt's `stop_threshold: f32[U]` (default -inf: never), its slot
    then refilled at once: the online stop's saved tokens become saved time.

    `shared`: one queue of all U * N samples for all U * slots slots, in prompt order, so a prompt whose
    answers end early lends its slots to prompts whose answers run long (a slot then reads another
    prompt's pages; a paged cache's prompts are no longer read once per run of rows). Default: each
    prompt's samples queue for its own `slots` slots. The outputs are the same either way (keys per
    sample), not the steps taken."""
    if not 1 <= slots <= samples:
        raise ConfigError(f"slots must be in 1..samples, got slots={slots}, samples={samples}")
    if cfg.cache_phases != 1:
        raise ConfigError("slot refill decodes in one phase: set cache_phases=1")
    if stop_threshold is not None and not cfg.confidence_k:
        raise ConfigError("a stop_threshold needs confidence tracking: set SamplerConfig.confidence_k > 0")
    u, p = prompt_tokens.shape
    b, t = u * slots, cfg.max_new_tokens
    logits, prompt_cache = prefill_lib.prefill(
        model, params, prompt_tokens, prompt_lengths, p + t, cache_dtype,
        num_pages=prefill_lib.pool_pages(model, u, p, b, t),
    )  # fmt: skip
    queues = 1 if shared else u
    first = (jnp.arange(queues)[:, None] * (u * samples // queues) + jnp.arange(b // queues)).reshape(b)
    source = first // samples  # i32[B]: the prompt of each slot's first sample
    if shared:  # slots move between prompts: no run of rows shares one prompt
        prompt_cache = kv_cache.unshare_prefix(prompt_cache)
    thinking = sampler_lib.prompt_opens_thinking(prompt_tokens, prompt_lengths, cfg.budget)
    _, cache = prefill_lib.fork(None, prompt_cache, source)
    cache = kv_cache.pin_rows(cache, prompt_cache)  # the prompt's pages outlive every sample of it
    # a step's buffers hold one token per slot; confidences are tracked here, per sample
    one = dataclasses.replace(cfg, max_new_tokens=1, confidence_k=0)
    confidence = None
    if cfg.confidence_k:
        threshold = jnp.full((u,), -jnp.inf, jnp.float32) if stop_threshold is None else stop_threshold
        confidence = (cfg.confidence_k, cfg.confidence_window, jnp.asarray(threshold, jnp.float32))
    dec = sampler_lib.init_decode_state(logits[source], cache, rng, one, thinking=thinking[source])
    dec = dec.replace(row_keys=_keys(rng, jnp.zeros((b,), jnp.int32), jnp.zeros((b,), jnp.int32)))
    total = u * samples
    prompt = {"logits": logits, "thinking": thinking, "cache": prompt_cache}
    state = RefillState(
        dec=dec,
        sample=first,
        column=jnp.zeros((b,), jnp.int32),
        pending=jnp.full((queues,), b // queues, jnp.int32),
        out=_empty_output(total, t, cfg.pad_id, confidence is not None),
    )
    state = jax.lax.while_loop(
        lambda s: jnp.any(s.sample >= 0),
        lambda s: _step(model, params, one, t, rng, prompt, samples, confidence, s),
        state,
    )
    out = state.out
    out = out.replace(occupancy=out.occupancy / jnp.maximum(out.steps * b, 1))
    if confidence is not None:
        out = out.replace(
            trace=confidence_lib.trace_confidence(out.confidences, out.lengths, cfg.confidence_window)
        )
    return out


sample_refill: Callable = jax.jit(
    sample_refill_rows, static_argnames=("model", "cfg", "samples", "slots", "cache_dtype", "shared")
)
