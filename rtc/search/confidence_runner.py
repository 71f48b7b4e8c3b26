"""Host side of the confidence strategies (`SearchConfig` docstring; Fu et al. 2025, "Deep Think with
Confidence"): draw whole traces with the compiled sampler's token confidence on, once per phase or round,
and vote on the host by each trace's confidence.

They need `answer_of` (completion token ids -> answer string, or None). Every row prefills its own prompt,
so their FLOPs count the prompt once per trace.

Rows: with `SearchConfig.slots = 0` every trace has a row of its own for the whole sampler call, so a
trace stopped early by low confidence (or ended by a stop id) idles in its row until the call's longest
trace ends: tokens fall faster than wall-clock time. With `slots = S > 0` each problem gets S rows and
the traces run through them by slot refill (`rtc.sampling.refill`): a row whose trace ends or stops takes
the problem's next trace inside the same compiled loop, so the tokens an online stop saves become time
saved. Slot refill draws a trace's tokens from keys of its own (fold_in of its index), so the traces differ
from the `slots = 0` call's at the same seed, not in distribution.
"""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from rtc.eval import voting
from rtc.parallel import mesh as mesh_lib
from rtc.sampling import confidence as confidence_lib
from rtc.sampling.refill import sample_refill
from rtc.search.refill_search import check_one_device
from rtc.sampling.sampler import SamplerConfig, pad_prompts, sample
from rtc.search.config import SearchConfig
from rtc.search.results import ConfidenceResult, forward_flops_per_token
from rtc.search.tree_search import DATA_AXIS, row_sharding


@dataclasses.dataclass
class Traces:
    """Host arrays of one sampler call's rows."""

    tokens: np.ndarray  # i32[R, T]
    lengths: np.ndarray  # i32[R]
    thinking: np.ndarray  # i32[R]
    finished: np.ndarray  # bool[R]: ended with a stop id
    stopped: np.ndarray  # bool[R]: stopped early by low confidence
    confidence: np.ndarray  # f32[R]: the lowest group confidence (DeepConf's trace confidence)


def sampler_config(cfg: SearchConfig) -> SamplerConfig:
    """The compiled sampler of a confidence strategy: whole completions of `step_tokens`, confidence on."""
    return SamplerConfig(
        max_new_tokens=cfg.max_path_tokens,
        stop_ids=cfg.stop_ids,
        pad_id=cfg.pad_id,
        rule=cfg.rule,
        budget=cfg.budget,
        confidence_k=cfg.confidence_k,
        confidence_window=cfg.window,
    )


def draw(
    policy, params, tokens, lengths, problems, k: int, thresholds, rng, cfg: SearchConfig, mesh
) -> Traces:
    """`k` traces of each problem `problems: i[U]` in one compiled sampler call, problem-major (trace j of
    `problems[u]` in row `u * k + j`), every trace of problem u stopping early once its window confidence
    falls below `thresholds[u]` (f[U]; None: never). `cfg.slots > 0`: through that many rows per problem
    by slot refill (module docstring)."""
    if cfg.slots:
        return _draw_refill(policy, params, tokens, lengths, problems, k, thresholds, rng, cfg, mesh)
    problems = np.repeat(problems, k)
    thresholds = None if thresholds is None else np.repeat(thresholds, k)
    rows = len(problems)
    devices = 1 if mesh is None else mesh.shape[DATA_AXIS]
    extra = -rows % devices
    problems = np.concatenate([problems, np.repeat(problems[:1], extra)])
    batch = (tokens[problems], lengths[problems])
    if thresholds is not None:
        batch += (np.concatenate([thresholds, np.repeat(thresholds[:1], extra)]).astype(np.float32),)
    sharding = row_sharding(mesh)
    if sharding is not None:
        batch = jax.device_put(batch, sharding)
    out = sample(
        policy,
        params,
        batch[0],
        batch[1],
        rng,
        cfg=sampler_config(cfg),
        stream=None,
        cache_dtype=jnp.dtype(jnp.float32),
        batch_sharding=sharding,
        stop_threshold=batch[2] if thresholds is not None else None,
    )
    out = jax.tree.map(lambda x: x[:rows], mesh_lib.to_host(out))
    return _traces(out, cfg)


def _draw_refill(policy, params, tokens, lengths, problems, k, thresholds, rng, cfg, mesh) -> Traces:
    """`draw` through `min(cfg.slots, k)` rows per problem (`rtc.sampling.refill`), on one device."""
    check_one_device(mesh)
    out = sample_refill(
        policy,
        params,
        jnp.asarray(tokens[problems]),
        jnp.asarray(lengths[problems]),
        rng,
        cfg=sampler_config(cfg),
        samples=k,
        slots=min(cfg.slots, k),
        stop_threshold=None if thresholds is None else jnp.asarray(thresholds, jnp.float32),
        shared=cfg.shared_slots,
    )
    return _traces(jax.device_get(out), cfg)


def _traces(out, cfg: SearchConfig) -> Traces:
    """`Traces` of a host copy of a sampler's output (`SampleOutput` or `RefillOutput`)."""
    last = np.take_along_axis(out.tokens, np.maximum(out.lengths - 1, 0)[:, None], axis=1)[:, 0]
    return Traces(
        tokens=out.tokens,
        lengths=out.lengths,
        thinking=out.thinking_tokens,
        finished=(out.lengths > 0) & np.isin(last, cfg.stop_ids) & ~out.stopped,
        stopped=out.stopped,
        confidence=out.trace.lowest_group,
    )


def _answers(traces: Traces, answer_of) -> list[str | None]:
    return [
        answer_of(traces.tokens[r, : traces.lengths[r]].tolist()) if traces.finished[r] else None
        for r in range(len(traces.lengths))
    ]


def _columns(traces: Traces, b: int) -> dict:
    """`traces`' rows regrouped problem-major: every field as [B, K, ...] (rows hold K per problem)."""
    return {k: v.reshape(b, -1, *v.shape[1:]) for k, v in dataclasses.asdict(traces).items()}


def _vote(ids: np.ndarray, confidence: np.ndarray, voters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(i32[B] pick, f64[B] its vote share): the confidence-weighted vote among `voters: bool[B, K]`, or
    among every answer of a problem where none of its voters has one."""
    none = ~np.any(voters & (ids != voting.NO_ANSWER), axis=1, keepdims=True)
    kept = np.where(voters | none, ids, voting.NO_ANSWER)
    best = voting.weighted_vote_ids(kept, confidence)
    return best, voting.vote_share(kept, confidence)


def run_confidence(policy, params, prompts, rng, cfg: SearchConfig, answer_of, mesh=None) -> ConfidenceResult:
    """A confidence strategy on every prompt (Fu et al. 2025): see `SearchConfig`'s docstring."""
    tokens, lengths = pad_prompts(prompts, cfg.pad_id, cfg.max_path_tokens, policy.max_seq_len)
    b, n = len(prompts), cfg.n
    start = time.perf_counter()
    threshold = np.full(b, np.nan)
    rounds = np.ones(b, np.int32)
    if cfg.strategy == "consensus":
        traces, drawn, rounds = _consensus(policy, params, tokens, lengths, rng, cfg, answer_of, mesh)
    elif cfg.strategy == "confidence_weighted":
        traces = _columns(draw(policy, params, tokens, lengths, np.arange(b), n, None, rng, cfg, mesh), b)
    else:
        w = cfg.warmup_traces
        warm = draw(policy, params, tokens, lengths, np.arange(b), w, None, rng, cfg, mesh)
        threshold = confidence_lib.online_threshold(warm.confidence.reshape(b, w), cfg.kept_percent)
        traces = _columns(warm, b)
        if n > w:
            online = draw(
                policy,
                params,
                tokens,
                lengths,
                np.arange(b),
                n - w,
                threshold,
                jax.random.fold_in(rng, 1),
                cfg,
                mesh,
            )
            traces = {k: np.concatenate([v, _columns(online, b)[k]], axis=1) for k, v in traces.items()}
            rounds += 1
    if cfg.strategy != "consensus":
        drawn = np.ones((b, n), bool)
    seconds = time.perf_counter() - start
    flat = Traces(**{k: v.reshape(b * n, *v.shape[2:]) for k, v in traces.items()})
    answers = np.array(_answers(flat, answer_of), object).reshape(b, n).tolist()
    ids = voting.answer_ids(answers)
    conf = traces["confidence"].astype(np.float64)
    voters = drawn.copy()
    if cfg.strategy in ("deepconf_low", "deepconf_high"):
        voters &= conf >= threshold[:, None]  # the finished traces at or above the stop threshold
    elif cfg.kept_percent < 100.0:
        voters &= voting.top_confidence_mask(np.where(drawn, conf, -np.inf), cfg.kept_percent)
    best, share = _vote(ids, np.where(drawn, conf, 0.0), voters)
    generated = np.where(drawn, traces["lengths"], 0).sum(axis=1).astype(np.int64)
    prompt_tokens = np.asarray(lengths).astype(np.int64)
    flops = forward_flops_per_token(policy, params) * (drawn.sum(axis=1) * prompt_tokens + generated)
    zeros = np.zeros(b, np.int64)
    return ConfidenceResult(
        tokens=traces["tokens"],
        lengths=np.where(drawn, traces["lengths"], 0),
        scores=np.where(drawn, conf, np.nan).astype(np.float32),
        finished=traces["finished"] & drawn,
        duplicate=np.zeros((b, n), bool),
        best=best,
        thinking_tokens=np.where(drawn, traces["thinking"], 0),
        steps=int(rounds.max()),
        generated_tokens=generated,
        verifier_tokens=zeros,
        verifier_nan=zeros,
        prompt_tokens=prompt_tokens,
        flops=flops,
        answers=answers,
        stopped=traces["stopped"] & drawn,
        drawn=drawn,
        threshold=threshold,
        vote_share=share,
        rounds=rounds,
        seconds=seconds,
    )


def _consensus(policy, params, tokens, lengths, rng, cfg: SearchConfig, answer_of, mesh):
    """Adaptive sampling until consensus: `(traces {field: [B, N, ...]}, drawn bool[B, N], rounds i32[B])`.

    Each round draws `round_size` traces for every problem still open, in one sampler call whose problem
    count is padded to a power of two (so few programs serve every round); a problem closes when its
    leading answer's confidence-weighted share reaches `tau` (Fu et al. 2025, adaptive sampling) or its
    N traces are spent."""
    b, n, size = len(tokens), cfg.n, cfg.round_size
    traces, drawn = None, np.zeros((b, n), bool)
    answers = np.full((b, n), None, object)
    rounds = np.zeros(b, np.int32)
    open_ = np.arange(b)
    for r in range(n // size):
        if not len(open_):
            break
        bucket = min(1 << (len(open_) - 1).bit_length(), b)
        problems = np.concatenate([open_, np.repeat(open_[:1], bucket - len(open_))])
        got = draw(
            policy,
            params,
            tokens,
            lengths,
            problems,
            size,
            None,
            jax.random.fold_in(rng, r),
            cfg,
            mesh,
        )
        got = {
            k: v[: len(open_) * size].reshape(len(open_), size, *v.shape[1:])
            for k, v in dataclasses.asdict(got).items()
        }
        if traces is None:
            traces = {k: np.zeros((b, n, *v.shape[2:]), v.dtype) for k, v in got.items()}
        cols = slice(r * size, (r + 1) * size)
        for k, v in got.items():
            traces[k][open_, cols] = v
        drawn[open_, cols] = True
        rounds[open_] += 1
        flat = Traces(**{k: v.reshape(-1, *v.shape[2:]) for k, v in got.items()})
        answers[open_, cols] = np.array(_answers(flat, answer_of), object).reshape(len(open_), size)
        ids = voting.answer_ids(answers[open_].tolist())
        share = voting.vote_share(ids, np.where(drawn[open_], traces["confidence"][open_], 0.0))
        open_ = open_[share < cfg.tau]
    return traces, drawn, rounds
