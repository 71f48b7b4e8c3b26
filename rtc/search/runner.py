"""Host side of a search: pad prompts, place them on the mesh, run the compiled search, count compute.

`run` takes token lists of any lengths (right-padded to one bucket, so mixed lengths share one
program), pads the problem count so the `B * N` rows split evenly over the devices (the padding
problems are copies of the first and are dropped from the result), and returns numpy arrays with the
per-problem compute: generated tokens, verifier tokens and an estimate of FLOPs.

FLOPs: 2 per parameter per token processed, the forward-pass estimate of Kaplan et al. (2020, sec.
2.1), with the embedding lookup excluded and the output projection counted; prompt tokens are counted
once per problem (prefilled once, the cache copied to every branch); the attention context term
(`2 * layers * context * width` per token) is left out, as it is below 10% at these lengths.

The confidence strategies (`SearchConfig` docstring) run on the host side of `rtc.search.confidence_runner`.
"""

import math
from typing import Callable, Sequence

import jax
import numpy as np

from rtc.errors import ConfigError
from rtc.parallel import mesh as mesh_lib
from rtc.sampling.sampler import pad_prompts
from rtc.search.best_first import search_best_first
from rtc.search.config import CONFIDENCE_STRATEGIES, SearchConfig
from rtc.search.confidence_runner import run_confidence
from rtc.search.expand import context
from rtc.search.mcts import search_mcts
from rtc.search.refill_search import check_one_device, search_refill
from rtc.search.results import ConfidenceResult, SearchResult, forward_flops_per_token
from rtc.search.tree_search import DATA_AXIS, row_sharding, search


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
    elif cfg.slots:  # best_of_n through slot refill
        check_one_device(mesh)
        out = search_refill(policy, params, verifier, verifier_params, tokens, lengths, rng, cfg=cfg)
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


__all__ = [
    "run",
    "run_confidence",
    "SearchResult",
    "ConfidenceResult",
    "forward_flops_per_token",
    "problems_for_devices",
    "row_sharding",
]
