"""Host side of a search: pad prompts, place them on the mesh, run the compiled search, count compute.

`run` takes token lists of any lengths (right-padded to one bucket, so mixed lengths share one
program), pads the problem count so the `B * N` rows split evenly over the devices (the padding
problems are copies of the first and are dropped from the result), and returns numpy arrays with the
per-problem compute: generated tokens, verifier tokens and an estimate of FLOPs.

FLOPs: 2 per parameter per token processed, the forward-pass estimate of Kaplan et al. (2020, sec.
2.1), with the embedding lookup excluded and the output projection counted; prompt tokens are counted
once per problem (prefilled once, the cache copied to every branch); the attention context term
(`2 * layers * context * width` per token) is left out, as it is below 10% at these lengths.
"""

import dataclasses
from typing import Sequence

import jax
import numpy as np

from rtc.errors import ConfigError
from rtc.parallel import mesh as mesh_lib
from rtc.sampling.sampler import pad_prompts
from rtc.search.config import SearchConfig
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
) -> SearchResult:
    """Searches every prompt (token lists, any lengths) and returns the results of the real problems."""
    if not prompts:
        raise ConfigError("no prompts to search")
    tokens, lengths = pad_prompts(prompts, cfg.pad_id, cfg.max_path_tokens, policy.max_seq_len)
    real = len(prompts)
    padded = problems_for_devices(real, cfg.trees if cfg.strategy == "mcts" else cfg.n, mesh)
    if padded > real:
        tokens = np.concatenate([tokens, np.repeat(tokens[:1], padded - real, axis=0)])
        lengths = np.concatenate([lengths, np.repeat(lengths[:1], padded - real)])
    if mesh is not None:
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        tokens, lengths = jax.device_put((tokens, lengths), replicated)
    if cfg.strategy == "mcts":
        out = search_mcts(policy, params, verifier, verifier_params, tokens, lengths, rng, cfg=cfg, mesh=mesh)
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


__all__ = ["run", "SearchResult", "forward_flops_per_token", "problems_for_devices", "row_sharding"]
