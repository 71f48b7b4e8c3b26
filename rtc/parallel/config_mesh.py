"""A 3-D device mesh (`data`, `fsdp`, `tensor`) built from config, and the batch sharding over it.

Config: `mesh = {"data": -1, "fsdp": 1, "tensor": 1}`: each value an axis size, `-1` (at most one) for
"every device the others leave". The batch's leading axis is split over `("data", "fsdp")`: FSDP is
data parallelism whose parameters are sharded too, so both axes see different rows. `tensor` splits
heads and MLP hidden units (rules.py) and sees the same rows.

`rtc.parallel.mesh` (the 1-D `data` mesh of the existing loops) is unchanged; a 1-D config mesh
`{"data": -1}` shards batches exactly as it does.
"""

import re
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AbstractMesh, AxisType, Mesh, NamedSharding, PartitionSpec as P

from rtc.errors import ConfigError

DATA, FSDP, TENSOR = "data", "fsdp", "tensor"
AXES = (DATA, FSDP, TENSOR)
BATCH_AXES = (DATA, FSDP)
DEFAULT = {DATA: -1, FSDP: 1, TENSOR: 1}


def parse_mesh(text: str) -> dict[str, int]:
    """`"data=-1,fsdp=8"` -> `{"data": -1, "fsdp": 8}` (the command-line form; see `mesh_shape`)."""
    sizes = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if not re.fullmatch(r"\s*-?\d+\s*", value):
            raise ConfigError(f"mesh entry {part!r} is not AXIS=SIZE (e.g. data=-1,fsdp=8)")
        sizes[name.strip()] = int(value)
    return sizes


def mesh_shape(sizes: Mapping[str, int], num_devices: int) -> tuple[int, int, int]:
    """The (data, fsdp, tensor) sizes for `num_devices`, resolving one `-1`.

    A missing axis is 1, and `data` is -1 when no axis given is -1 (`{"fsdp": 4}`: data takes the rest).
    """
    unknown = set(sizes) - set(AXES)
    if unknown:
        raise ConfigError(f"unknown mesh axes {sorted(unknown)}; known: {list(AXES)}")
    defaults = {DATA: 1, FSDP: 1, TENSOR: 1} if -1 in sizes.values() else DEFAULT
    shape = [int(sizes.get(axis, defaults[axis])) for axis in AXES]
    if any(s == 0 or s < -1 for s in shape):
        raise ConfigError(f"mesh sizes must be positive or -1, got {dict(zip(AXES, shape))}")
    rest = [i for i, s in enumerate(shape) if s == -1]
    if len(rest) > 1:
        raise ConfigError(f"at most one mesh axis may be -1, got {dict(zip(AXES, shape))}")
    known = int(np.prod([s for s in shape if s != -1]))
    if rest:
        if num_devices % known:
            raise ConfigError(
                f"mesh {dict(zip(AXES, shape))}: the fixed axes ({known} devices) do not divide "
                f"the {num_devices} devices"
            )
        shape[rest[0]] = num_devices // known
    elif known != num_devices:
        raise ConfigError(
            f"mesh {dict(zip(AXES, shape))} has {known} devices but {num_devices} are used "
            "(set one axis to -1 to take the rest)"
        )
    return tuple(shape)


def make_config_mesh(sizes: Mapping[str, int] | None = None, num_devices: int | None = None) -> Mesh:
    """The (data, fsdp, tensor) mesh over the first `num_devices` devices (default: all of them).

    `jax.make_mesh` orders TPU devices so that `tensor` (the last, fastest axis) spans
    neighbouring chips. With several processes every device must be in the mesh.
    """
    n = num_devices or jax.device_count()
    if jax.process_count() > 1 and n != jax.device_count():
        raise ConfigError(
            f"num_devices={n} with {jax.process_count()} processes: a multi-process run uses all "
            f"{jax.device_count()} devices"
        )
    shape = mesh_shape(DEFAULT if sizes is None else sizes, n)
    return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * 3, devices=jax.devices()[:n])


def abstract_mesh(sizes: Mapping[str, int], num_devices: int) -> AbstractMesh:
    """A device-free mesh of that shape: shardings and memory for a pod can be computed on a laptop."""
    return AbstractMesh(mesh_shape(sizes, num_devices), AXES, axis_types=(AxisType.Auto,) * 3)


def batch_axes(mesh: Mesh | AbstractMesh) -> tuple[str, ...]:
    """The mesh's axes a batch is split over: `data` and `fsdp` where present."""
    return tuple(a for a in BATCH_AXES if a in mesh.axis_names)


def batch_size_per_chip(batch_size: int, mesh: Mesh | AbstractMesh) -> int:
    """Rows each device holds; raises when the batch does not split evenly over data x fsdp."""
    ways = int(np.prod([mesh.shape[a] for a in batch_axes(mesh)]))
    if batch_size % ways:
        raise ConfigError(f"batch size {batch_size} is not divisible by data x fsdp = {ways} devices")
    return batch_size // ways


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `("data", "fsdp")`, the rest replicated (over `tensor` too)."""
    return NamedSharding(mesh, P(batch_axes(mesh)))


def shard_batch(batch, mesh: Mesh):
    """Places this process's rows of every leaf on the mesh as one global array per leaf."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def describe(mesh: Mesh | AbstractMesh, names: Sequence[str] = AXES) -> str:
    """`data=2,fsdp=4,tensor=1` (for logs)."""
    return ",".join(f"{a}={mesh.shape[a]}" for a in names if a in mesh.axis_names)
