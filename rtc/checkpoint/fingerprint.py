"""Content fingerprint of a pytree of arrays, computed on device.

Orbax does not checksum array bytes: a flipped byte inside a stored chunk
restores as different numbers without any error. A fingerprint saved with the
checkpoint and recomputed after restore turns that into an error.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_GOLDEN = 0x9E3779B9  # odd, so the weights 2 * i * golden + 1 below are distinct for i < 2**31


def _as_words(x: jax.Array) -> jax.Array:
    """The raw bits of `x` as uint32 words: uint32[*x.shape] or uint32[*x.shape, 2]."""
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if jnp.iscomplexobj(x):
        x = jnp.stack([x.real, x.imag], axis=-1)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    size = x.dtype.itemsize
    if size >= 4:
        return lax.bitcast_convert_type(x, jnp.uint32)
    return lax.bitcast_convert_type(x, {1: jnp.uint8, 2: jnp.uint16}[size]).astype(jnp.uint32)


def _leaf_fingerprint(x: jax.Array) -> jax.Array:
    """sum_i word_i * (2 * i * golden + 1) mod 2**32 over the flat index i: uint32[].

    Every weight is odd, so changing any single word changes the sum. Integer
    addition wraps exactly, so the result does not depend on sharding or on the
    reduction order, and the index is built from per-dimension iotas so a
    sharded array is never reshaped.
    """
    words = _as_words(jnp.asarray(x))
    index = jnp.zeros(words.shape, jnp.uint32)
    stride = 1
    for dim in reversed(range(words.ndim)):
        index = index + lax.broadcasted_iota(jnp.uint32, words.shape, dim) * jnp.uint32(stride)
        stride = stride * words.shape[dim] % 2**32
    weights = index * jnp.uint32(2 * _GOLDEN % 2**32) + jnp.uint32(1)
    return jnp.sum(words * weights, dtype=jnp.uint32)


@jax.jit
def _fingerprints(leaves: list) -> jax.Array:
    """uint32[L]: one fingerprint per leaf."""
    return jnp.stack([_leaf_fingerprint(x) for x in leaves]) if leaves else jnp.zeros((0,), jnp.uint32)


def _dtype_name(leaf) -> str:
    """The dtype of an array leaf, or of a Python scalar."""
    return str(leaf.dtype) if hasattr(leaf, "dtype") else str(np.result_type(leaf))


def tree_fingerprint(tree) -> dict[str, dict]:
    """{key path: {"dtype": name, "hash": uint32 fingerprint}} for every leaf of `tree` (JSON-ready)."""
    paths_leaves = jax.tree_util.tree_leaves_with_path(tree)
    hashes = np.asarray(_fingerprints([leaf for _, leaf in paths_leaves]))
    return {
        jax.tree_util.keystr(path): {"dtype": _dtype_name(leaf), "hash": int(h)}
        for (path, leaf), h in zip(paths_leaves, hashes)
    }
