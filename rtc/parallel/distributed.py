"""Joining a multi-process run (one process per host) with `jax.distributed`, before any device is touched.

Where the coordinator, process count and id come from, first found first:
1. the arguments (`--coordinator`, `--num_processes`, `--process_id` flags);
2. `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID` in the environment;
3. JAX's cluster detection: Cloud TPU VMs and pod slices (metadata server), GKE, Slurm, Open MPI.
With none of these, or with one process, `initialize` does nothing: a single-host run is unchanged.
"""

import logging
import os

import jax

from rtc.errors import ConfigError


def _from_env(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError as e:
        raise ConfigError(f"{name}={value!r} is not an integer") from e


def initialize(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> bool:
    """Calls `jax.distributed.initialize` when this is one process of several; returns whether it is.

    On the CPU (`JAX_PLATFORMS=cpu`) collectives between processes go through gloo.
    """
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    num_processes = num_processes if num_processes is not None else _from_env("JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _from_env("JAX_PROCESS_ID")
    if num_processes == 1:
        return False
    collectives = jax.config.jax_cpu_collectives_implementation
    if os.environ.get("JAX_PLATFORMS", "").split(",")[0] == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    explicit = (coordinator, num_processes, process_id) != (None, None, None)
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    except RuntimeError as e:  # JAX already ran in this process: too late to join a cluster
        if explicit:
            raise ConfigError(f"jax.distributed.initialize: {e}") from e
        jax.config.update("jax_cpu_collectives_implementation", collectives)
        logging.warning("not joining a multi-process run: JAX was already initialised in this process")
        return False
    except ValueError as e:
        if explicit or "coordinator_address should be defined" not in str(e):
            raise ConfigError(f"jax.distributed.initialize: {e}") from e
        jax.config.update("jax_cpu_collectives_implementation", collectives)
        return False  # no cluster detected: a single process
    logging.info(
        "process %d of %d, %d local devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
    )
    return jax.process_count() > 1


def is_primary() -> bool:
    """Whether this process writes metrics, logs and plots (process 0)."""
    return jax.process_index() == 0
