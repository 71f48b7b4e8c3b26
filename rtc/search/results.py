"""What a search returns on the host: numpy views of its outputs per real problem, with the compute each
problem took.

FLOPs: 2 per parameter per token processed, the forward-pass estimate of Kaplan et al. (2020, sec.
2.1), with the embedding lookup excluded and the output projection counted.
"""

import dataclasses

import jax
import numpy as np


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
