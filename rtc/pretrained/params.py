"""Assembling a loaded parameter tree: one tensor at a time onto its device, then checked whole.

A loader converts a tensor, hands it to `place` (which puts it on its sharding and keeps no host
copy), and builds the nested dict with `unflatten`. `check_complete` compares the result with the
tree `init_params` would build, so a model is never returned half loaded.
"""

from typing import Callable

import jax
import numpy as np

from rtc.errors import PretrainedError
from rtc.model.config import ModelConfig
from rtc.model.transformer import init_params

# A sharding for every parameter, or a function `(path, shape) -> Sharding` choosing one per path.
ShardingSpec = jax.sharding.Sharding | Callable[[str, tuple[int, ...]], jax.sharding.Sharding] | None


def place(path: str, x: np.ndarray, dtype, sharding: ShardingSpec) -> jax.Array:
    """`x` as `dtype` on `sharding` (a `Sharding`, or a function of `(path, shape)`; None: the
    default device). Only `x`'s converted copy lives on the host until `device_put` returns."""
    x = np.asarray(x, dtype=dtype)
    target = sharding(path, x.shape) if callable(sharding) else sharding
    return jax.device_put(x, target) if target is not None else jax.device_put(x)


def unflatten(flat: dict[str, jax.Array]) -> dict:
    """`{"layer_0/w_q": x}` -> `{"layer_0": {"w_q": x}}`."""
    tree: dict = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return tree


def flatten(tree: dict, prefix: str = "") -> dict[str, jax.Array]:
    """The inverse of `unflatten`."""
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        flat.update(flatten(value, path + "/") if isinstance(value, dict) else {path: value})
    return flat


def check_complete(params: dict, config: ModelConfig, source: str) -> None:
    """Raises naming the first parameter that is missing, extra or of the wrong shape."""
    expected = {
        p: s.shape
        for p, s in flatten(jax.eval_shape(lambda rng: init_params(config, rng), jax.random.key(0))).items()
    }
    actual = {p: tuple(x.shape) for p, x in flatten(params).items()}
    for path in sorted(expected.keys() | actual.keys()):
        if expected.get(path) != actual.get(path):
            raise PretrainedError(
                f"{source}: parameter {path} loaded as {actual.get(path)}, the model needs {expected.get(path)}"
            )
