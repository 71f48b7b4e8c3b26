"""A difficulty predictor read from the prompt alone: a ridge head on the policy's prompt representation.

Snell et al. 2024 ("Scaling LLM Test-Time Compute Optimally", sec. 3.2) bin questions by the base
model's pass@1, estimated from many samples (oracle difficulty) or from a verifier's scores of a few
(model-predicted difficulty); either costs generations before the budget is spent. Here the estimate
costs one prefill of the prompt: the policy's final-layer states (after the final norm, the input of
its output layer), mean-pooled over the prompt and at its last token, feed a linear head fitted by
ridge regression (Hoerl & Kennard 1970, closed form) to the pass rates of training problems measured
by sampling. `predictor_flops` is what a router pays for it per question, counted in every curve.
"""

import dataclasses
import json
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rtc.analysis.confidence_curves import trace_flops
from rtc.model.transformer import Transformer, rms_norm


def _final_states(config, params, tokens: jax.Array, positions: jax.Array) -> jax.Array:
    """f32[B, T, E]: the last block's output after the final norm (what the output layer reads)."""
    last = f"layer_{config.num_layers - 1}"
    _, state = Transformer(config).apply(
        {"params": params},
        tokens,
        positions,
        capture_intermediates=lambda module, _: module.name == last,
        mutable=["intermediates"],
    )
    x, _ = state["intermediates"][last]["__call__"][0]  # the block returns (x, layer_cache)
    return rms_norm(x, params["final_norm"], config.norm_eps, config.norm_offset).astype(jnp.float32)


def _pooled(config, params, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
    """f32[B, 2E]: [mean over the prompt's tokens, the last prompt token's state]; prompts right-padded."""
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1])[None], tokens.shape)  # i32[B, T]
    states = _final_states(config, params, tokens, positions)  # f32[B, T, E]
    real = (positions < lengths[:, None]).astype(jnp.float32)  # f32[B, T]
    mean = jnp.einsum("bte,bt->be", states, real) / lengths[:, None]
    last = jnp.take_along_axis(states, (lengths - 1)[:, None, None], axis=1)[:, 0]  # f32[B, E]
    return jnp.concatenate([mean, last], axis=-1)


_pooled_jit = jax.jit(_pooled, static_argnums=0)


def prompt_features(model, params, prompts: Sequence[Sequence[int]], batch_size: int = 64) -> np.ndarray:
    """f32[P, 2E]: the policy's representation of each prompt (token ids), in batches of `batch_size`
    right-padded to a power of two >= the longest prompt, so few shapes compile (causal attention:
    padding after a prompt cannot change it)."""
    width = max(16, 1 << (max(len(p) for p in prompts) - 1).bit_length())
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        real = len(chunk)
        chunk += [chunk[0]] * (batch_size - real)  # one compiled shape for every batch
        tokens = np.zeros((batch_size, width), np.int32)
        for i, ids in enumerate(chunk):
            tokens[i, : len(ids)] = ids
        lengths = np.array([len(ids) for ids in chunk], np.int32)
        out.append(np.asarray(_pooled_jit(model.config, params, tokens, lengths))[:real])
    return np.concatenate(out)


@dataclasses.dataclass(frozen=True)
class DifficultyHead:
    """`predict(features f[P, F]) -> f64[P]`: the predicted pass rate, clipped to [0, 1]."""

    mean: np.ndarray  # f64[F], the training features' mean
    scale: np.ndarray  # f64[F], their standard deviation (1 where constant)
    weights: np.ndarray  # f64[F], on standardised features
    bias: float  # the training targets' mean
    ridge: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, np.float64) - self.mean) / self.scale
        return np.clip(z @ self.weights + self.bias, 0.0, 1.0)

    @property
    def flops(self) -> float:
        """FLOPs of one prediction on top of the prefill: standardise (2F) and the dot product (2F)."""
        return 4.0 * len(self.weights)

    def to_json(self) -> str:
        fields = {k: np.asarray(v).tolist() for k, v in dataclasses.asdict(self).items()}
        return json.dumps(fields)

    @classmethod
    def from_json(cls, text: str) -> "DifficultyHead":
        fields = json.loads(text)
        arrays = {k: np.asarray(fields[k], np.float64) for k in ("mean", "scale", "weights")}
        return cls(**arrays, bias=float(fields["bias"]), ridge=float(fields["ridge"]))


def fit_ridge(features: np.ndarray, targets: np.ndarray, ridge: float) -> DifficultyHead:
    """The head minimising ||y - ybar - Z w||^2 + ridge ||w||^2 on standardised features Z (Hoerl &
    Kennard 1970): w = (Z^T Z + ridge I)^-1 Z^T (y - ybar); the bias is ybar, so it is not shrunk."""
    x = np.asarray(features, np.float64)  # f64[P, F]
    y = np.asarray(targets, np.float64)  # f64[P]
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z = (x - mean) / scale
    weights = np.linalg.solve(z.T @ z + ridge * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return DifficultyHead(mean, scale, weights, float(y.mean()), float(ridge))


def choose_ridge(
    features: np.ndarray, targets: np.ndarray, grid: Sequence[float], folds: int, rng: np.random.Generator
) -> tuple[float, dict[float, float]]:
    """(ridge, {ridge: mean squared error}): the grid value with the lowest `folds`-fold cross-validated
    error on the training problems (the held-out problems are never read)."""
    fold = rng.permutation(len(targets)) % folds  # i[P]
    errors = {}
    for ridge in grid:
        squared = []
        for f in range(folds):
            head = fit_ridge(features[fold != f], targets[fold != f], ridge)
            squared.append((head.predict(features[fold == f]) - targets[fold == f]) ** 2)
        errors[float(ridge)] = float(np.mean(np.concatenate(squared)))
    return min(errors, key=errors.get), errors


def predictor_flops(config, prompt_lengths, head: DifficultyHead) -> np.ndarray:
    """f64[P]: what predicting each question's difficulty costs, in forward FLOPs: a prefill of its
    prompt (the output layer included, though the head does not read it) plus the head."""
    return trace_flops(config, np.asarray(prompt_lengths), 0) + head.flops


def load_head(path) -> DifficultyHead:
    """The head written by `experiments/router.py` (`difficulty_head.json`)."""
    from etils import epath

    path = epath.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: no difficulty head (experiments/router.py writes one)")
    return DifficultyHead.from_json(path.read_text())


def difficulty_predictor(model, params, head: DifficultyHead):
    """`(question, prompt_ids) -> difficulty in [0, 1]`, one minus the predicted pass rate: the serving
    router's predictor (`rtc.serve.router`)."""

    def predict(question: str, ids: list[int]) -> float:
        del question  # read through the policy's states of its tokens
        return float(1.0 - head.predict(prompt_features(model, params, [ids], batch_size=1))[0])

    return predict
