"""Where a training run's arrays live: the mesh named in config, the train state placed by sharding
rules, the batch split over the batch axes. One code path for one CPU, 8 fake CPU devices, several
processes (`jax.distributed`) and a TPU pod.

Config fields (optional, on any training config):
- `mesh`: axis sizes such as `"data=-1,fsdp=8"` (`config_mesh.parse_mesh`); "" = data parallel
  over every device (`num_devices` limits the count on one process).
- `sharding_rules`: a preset of `rtc.parallel.rules` (`auto` picks the one that uses every axis of
  size > 1: data parallel alone replicates, `fsdp` splits every matrix, ...).
The train state is built by `jax.jit(init, out_shardings=...)`, so a large model's parameters and
optimizer state are created already split and never held whole by one device.
"""

import logging

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from rtc.parallel import config_mesh, rules


def mesh_from_config(config) -> jax.sharding.Mesh:
    """The (data, fsdp, tensor) mesh of `config.mesh` ("" = data parallel over every device)."""
    text = config.get("mesh", "") or ""
    sizes = config_mesh.parse_mesh(text) if text else {"data": -1}
    mesh = config_mesh.make_config_mesh(sizes, config.get("num_devices", 0) or None)
    logging.info(
        "mesh %s over %d devices, %d processes", config_mesh.describe(mesh), mesh.size, jax.process_count()
    )
    return mesh


def rules_from_config(config, mesh) -> list[tuple]:
    return rules.get_rules(config.get("sharding_rules", "auto") or "auto", dict(mesh.shape))


def init_sharded(init_fn, args: tuple, mesh, rule_set) -> tuple:
    """`(state, shardings)`: `init_fn(*args)` run under `jit` with every leaf placed by `rule_set`."""
    shapes = jax.eval_shape(init_fn, *args)
    fallbacks = []
    shardings = rules.train_state_shardings(shapes, mesh, rule_set, fallbacks)
    if fallbacks:
        logging.info("sharding fell back to replication on %d dimensions (not divisible)", len(fallbacks))
    return jax.jit(init_fn, out_shardings=shardings)(*args), shardings


def jit_update(update, state_shardings, mesh):
    """`jax.jit(update)` for `update(state, batch) -> (state, metrics)`: the state keeps its shardings and
    is donated, the batch is split over the batch axes, metrics are replicated. It runs with `mesh`
    set, so the model's activations follow their logical axes (`rtc.parallel.logical`)."""
    jitted = jax.jit(
        update,
        donate_argnums=0,
        in_shardings=(state_shardings, config_mesh.batch_sharding(mesh)),
        out_shardings=(state_shardings, NamedSharding(mesh, P())),
    )

    def call(state, batch):
        with jax.set_mesh(mesh):
            return jitted(state, batch)

    call.jitted = jitted
    return call


def replicated_template(tree, mesh=None):
    """`jax.ShapeDtypeStruct`s of `tree`'s leaves, replicated over `mesh` (default: every device of
    every process): a checkpoint restored into it is one global array per leaf, usable by any jitted
    program over those devices, on one process or many."""
    if mesh is None:
        mesh = config_mesh.make_config_mesh({"data": -1})
    sharding = NamedSharding(mesh, P())
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
