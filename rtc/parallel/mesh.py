"""The device mesh and the shardings every training and sampling step uses.

One code path serves 1 CPU, 8 fake CPU devices, several processes and a TPU pod: batches are split
over the mesh's `data` axis and parameters are replicated (data parallelism). Rules for `fsdp` and
`tensor` axes extend this without changing callers.
"""

import jax
from jax.experimental import multihost_utils
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
from rtc.errors import ConfigError

DATA = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh over `num_devices` (default: all devices of all processes) named `data`.

    With several processes the mesh must span every device: the first `n` devices would leave some
    processes without a device of the mesh to feed their rows of the batch to.
    """
    n = num_devices or jax.device_count()
    if jax.process_count() > 1 and n != jax.device_count():
        raise ConfigError(
            f"num_devices={n} with {jax.process_count()} processes: a multi-process run uses all "
            f"{jax.device_count()} devices (set num_devices to 0 or {jax.device_count()})"
        )
    return jax.make_mesh((n,), (DATA,), axis_types=(AxisType.Auto,), devices=jax.devices()[:n])


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `data`."""
    return NamedSharding(mesh, P(DATA))


def check_divisible(batch_size: int, mesh: Mesh) -> None:
    if batch_size % mesh.size:
        raise ConfigError(f"batch size {batch_size} is not divisible by the {mesh.size} devices of the mesh")


def shard_batch(batch, mesh: Mesh):
    """Places a host batch (this process's rows of every leaf) on the mesh, split over `data`."""
    sharding = batch_sharded(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch)


def replicate(tree, mesh: Mesh):
    """Places a pytree (e.g. params) on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))


def jit_data_parallel(update, state, mesh: Mesh):
    """`jax.jit(update)` for `update(state, batch) -> (state, metrics)`: state replicated and donated,
    batch rows split over the mesh, metrics replicated."""
    state_sharding = jax.tree.map(lambda _: replicated(mesh), state)
    return jax.jit(
        update,
        donate_argnums=0,
        in_shardings=(state_sharding, batch_sharded(mesh)),
        out_shardings=(state_sharding, replicated(mesh)),
    )


def to_host(tree):
    """numpy copies of `tree`'s arrays, whole even when their rows live on other processes' devices
    (then every process gathers every row: `multihost_utils.process_allgather`)."""

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(one, tree)
