"""Activation shardings by logical axis name, applied only when a mesh is set.

The model names the axes of its activations (`("batch", "length", "embed")`, ...); `LOGICAL_RULES` maps
each name to mesh axes, as Flax's logical partitioning and t5x do: the batch over `data` and `fsdp`,
heads, MLP hidden units and the vocabulary over `tensor` (Megatron-LM, Shoeybi et al. 2019). With no
mesh set (`jax.set_mesh`), `constrain` is the identity, so one model serves single-device code (the
sampler, tests) and sharded training steps alike. An axis whose size does not divide is left whole.
"""

import math

import jax
from jax.sharding import PartitionSpec as P

LOGICAL_RULES = {
    "batch": ("data", "fsdp"),
    "length": (),
    "embed": (),
    "heads": ("tensor",),
    "head_dim": (),
    "mlp": ("tensor",),
    "vocab": ("tensor",),
}


def spec(shape: tuple[int, ...], names: tuple[str, ...], mesh) -> P:
    """The PartitionSpec of an activation of `shape` with logical axis `names` on `mesh`."""
    entries = []
    for size, name in zip(shape, names):
        axes = tuple(a for a in LOGICAL_RULES[name] if a in mesh.axis_names and mesh.shape[a] > 1)
        ways = math.prod(mesh.shape[a] for a in axes)
        entries.append(axes if axes and size % ways == 0 else None)
    return P(*entries)


def constrain(x: jax.Array, names: tuple[str, ...]) -> jax.Array:
    """`x` constrained to the sharding its logical axes name on the current mesh (identity without one)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    return jax.lax.with_sharding_constraint(x, spec(x.shape, names, mesh))
