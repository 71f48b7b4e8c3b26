"""Host side of a search: pad prompts, place them on the mesh, run the compiled search, count compute.

`run` takes token lists of any lengths (right-padded to one bucket, so mixed lengths share one
program), pads the problem count so the `B * N` rows split evenly over the devices (the padding
problems are copies of the first and are dropped from the result), and returns numpy arrays with the
per-problem compute: generated tokens, verifier tokens and an estimate of FLOPs.

FLOPs: 2 per parameter per token processed, the forward-pass estimate of Kaplan et al. (2020, sec.
2.1), with the embedding lookup excluded and the output projection counted; prompt tokens are counted
once per problem (prefilled once, the cache copied to every branch); the attention context term
(`2 * layers * context * width` per token) is left out, as it is below 10% at these lengths.

The confidence strategies (`SearchConfig` docstring; Fu et al. 2025, "Deep Think with Confidence") run the
compiled sampler with token confidence on, once per phase or round, and vote on the host: they need
`answer_of` (completion token ids -> answer string, or None). Every row prefills its own prompt there, so
their FLOPs count the prompt once per trace. A trace stopped early by low confidence still holds its row
until the whole call ends (slot refill would free it), so tokens fall faster than wall-clock time.
"""

import dataclasses
import math
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rtc.errors import ConfigError
from rtc.eval import voting
from rtc.parallel import mesh as mesh_lib
from rtc.sampling import confidence as confidence_lib
from rtc.sampling.sampler import SamplerConfig, pad_prompts, sample
from rtc.search.best_first import search_best_first
from rtc.search.config import CONFIDENCE_STRATEGIES, SearchConfig
from rtc.search.expand import context
from rtc.search.mcts import search_mcts
from rtc.search.tree_search import DATA_AXIS, row_sharding, search


def forward_flops_per_token(model, params) -> float:
    """2 x (parameters used per token): every matrix but the embedding lookup (counted once when tied,
    as it is then the output layer)."""
    c = model.config
    total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    return 2.0 * (total - (0 if c.tie_embeddings else c.vocab_size * c.embed_dim))


@dataclasses.dataclass
class SearchResult:
    """numpy views of `SearchOutput` for the real problems, plus compute per problem."""

    tokens: np.ndarray  # i32[B, K, T]
    lengths: np.ndarray  # i32[B, K]
    scores: np.ndarray  # f32[B, K]
    finished: np.ndarray  # bool[B, K]
    duplicate: np.ndarray  # bool[B, K]
    best: np.ndarray  # i32[B]
    thinking_tokens: np.ndarray  # i32[B, K]
    steps: int
    generated_tokens: np.ndarray  # i32[B]
    verifier_tokens: np.ndarray  # i32[B]
    verifier_nan: np.ndarray  # i32[B]
    prompt_tokens: np.ndarray  # i32[B]
    flops: np.ndarray  # f64[B]

    def completions(self) -> list[list[list[int]]]:
        """[problem][branch] -> the branch's completion token ids."""
        return [
            [self.tokens[b, i, : self.lengths[b, i]].tolist() for i in range(self.tokens.shape[1])]
            for b in range(self.tokens.shape[0])
        ]


@dataclasses.dataclass
class ConfidenceResult(SearchResult):
    """A confidence strategy's result: `scores` are the trace confidences, `best` the vote's pick."""

    answers: list  # [B][K] answer strings (None: no answer, stopped early, or a slot never drawn)
    stopped: np.ndarray  # bool[B, K]: stopped early by low confidence
    drawn: np.ndarray  # bool[B, K]: the slot was sampled (consensus leaves later rounds empty)
    threshold: np.ndarray  # f64[B]: DeepConf's online stop threshold (NaN: none)
    vote_share: np.ndarray  # f64[B]: the chosen answer's share of the (confidence-weighted) vote
    rounds: np.ndarray  # i32[B]: sampler calls that drew this problem's traces
    seconds: float  # wall-clock of the sampler calls


def problems_for_devices(num_problems: int, n: int, mesh) -> int:
    """The smallest problem count >= `num_problems` whose `count * n` rows split over the devices
    (`n`: branches per problem; for MCTS, trees per problem)."""
    if mesh is None:
        return num_problems
    devices = mesh.shape[DATA_AXIS]
    count = num_problems
    while (count * n) % devices:
        count += 1
    return count


def rows_per_problem(cfg: SearchConfig) -> int:
    """The row count per problem whose multiples split evenly over the devices: MCTS's trees, best-first's
    gcd of its N frontier rows and M children, else the N branches."""
    if cfg.strategy == "mcts":
        return cfg.trees
    return math.gcd(cfg.n, cfg.m) if cfg.strategy == "best_first" else cfg.n


def check_verifier_context(policy, verifier, longest: int, path_tokens: int) -> None:
    """A verifier of another preset with a shorter context must still hold the longest prompt and a path."""
    shorter = verifier is not None and verifier.max_seq_len < policy.max_seq_len
    if shorter and longest + path_tokens > verifier.max_seq_len:
        raise ConfigError(
            f"prompt of {longest} tokens plus a path of {path_tokens} exceeds the verifier's context "
            f"of {verifier.max_seq_len} tokens (the policy's is {policy.max_seq_len})"
        )


def run(
    policy,
    params,
    verifier,
    verifier_params,
    prompts: Sequence[Sequence[int]],
    rng: jax.Array,
    cfg: SearchConfig,
    mesh=None,
    placement: str = "auto",
    answer_of: Callable[[list[int]], str | None] | None = None,
) -> SearchResult:
    """Searches every prompt (token lists, any lengths) and returns the results of the real problems.

    The confidence strategies need `answer_of` (a completion's token ids -> its answer) and no verifier;
    they return a `ConfidenceResult`."""
    if not prompts:
        raise ConfigError("no prompts to search")
    if cfg.strategy in CONFIDENCE_STRATEGIES:
        if answer_of is None:
            raise ConfigError(
                f"strategy {cfg.strategy!r} votes on answers: pass answer_of (token ids -> answer)"
            )
        return run_confidence(policy, params, prompts, rng, cfg, answer_of, mesh)
    check_verifier_context(policy, verifier, max(len(x) for x in prompts), cfg.max_path_tokens)
    tokens, lengths = pad_prompts(prompts, cfg.pad_id, cfg.max_path_tokens, context(policy, verifier))
    real = len(prompts)
    padded = problems_for_devices(real, rows_per_problem(cfg), mesh)
    if padded > real:
        tokens = np.concatenate([tokens, np.repeat(tokens[:1], padded - real, axis=0)])
        lengths = np.concatenate([lengths, np.repeat(lengths[:1], padded - real)])
    if mesh is not None:
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        tokens, lengths = jax.device_put((tokens, lengths), replicated)
    if cfg.strategy == "mcts":
        out = search_mcts(policy, params, verifier, verifier_params, tokens, lengths, rng, cfg=cfg, mesh=mesh)
    elif cfg.strategy == "best_first":
        out = search_best_first(
            policy, params, verifier, verifier_params, tokens, lengths, rng, cfg=cfg, mesh=mesh
        )
    else:
        out = search(
            policy,
            params,
            verifier,
            verifier_params,
            tokens,
            lengths,
            rng,
            cfg=cfg,
            mesh=mesh,
            placement=placement,
        )
    host = mesh_lib.to_host(out)  # rows may live on other processes' devices
    keep = lambda x: x[:real]
    prompt_tokens = np.asarray(lengths)[:real].astype(np.int64)
    generated = keep(host.generated_tokens).astype(np.int64)
    verified = keep(host.verifier_tokens).astype(np.int64)
    prefills = cfg.trees if cfg.strategy == "mcts" else 1  # MCTS prefills the prompt once per tree
    flops = forward_flops_per_token(policy, params) * (prefills * prompt_tokens + generated)
    if verifier is not None:
        flops = flops + forward_flops_per_token(verifier, verifier_params) * verified
    return SearchResult(
        tokens=keep(host.tokens),
        lengths=keep(host.lengths),
        scores=keep(host.scores),
        finished=keep(host.finished),
        duplicate=keep(host.duplicate),
        best=keep(host.best),
        thinking_tokens=keep(host.thinking_tokens),
        steps=int(host.steps),
        generated_tokens=generated,
        verifier_tokens=verified,
        verifier_nan=keep(host.verifier_nan),
        prompt_tokens=prompt_tokens,
        flops=flops,
    )


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


def draw(policy, params, tokens, lengths, problems, thresholds, rng, cfg: SearchConfig, mesh) -> Traces:
    """One compiled sampler call: a trace of problem `problems[r]` in row r (i[R]), each row stopping early
    below `thresholds[r]` (f[R]; None: never). Rows are padded to split evenly over the devices."""
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
        traces = _columns(
            draw(policy, params, tokens, lengths, np.repeat(np.arange(b), n), None, rng, cfg, mesh), b
        )
    else:
        w = cfg.warmup_traces
        warm = draw(policy, params, tokens, lengths, np.repeat(np.arange(b), w), None, rng, cfg, mesh)
        threshold = confidence_lib.online_threshold(warm.confidence.reshape(b, w), cfg.kept_percent)
        traces = _columns(warm, b)
        if n > w:
            online = draw(
                policy,
                params,
                tokens,
                lengths,
                np.repeat(np.arange(b), n - w),
                np.repeat(threshold, n - w),
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
            np.repeat(problems, size),
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


__all__ = [
    "run",
    "run_confidence",
    "SearchResult",
    "ConfidenceResult",
    "forward_flops_per_token",
    "problems_for_devices",
    "row_sharding",
]
