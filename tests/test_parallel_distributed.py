"""`initialize` joins processes from flags or the environment, and is a no-op for one process."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import pytest

from helpers import free_port, wait_all
from rtc.errors import ConfigError
from rtc.parallel import distributed

REPO = Path(__file__).resolve().parents[1]

PROCESS = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from rtc.parallel import config_mesh, distributed

    if sys.argv[1] == "flags":
        joined = distributed.initialize(f"127.0.0.1:{sys.argv[2]}", num_processes=2, process_id=int(sys.argv[3]))
    else:  # JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID
        joined = distributed.initialize()
    mesh = config_mesh.make_config_mesh({"fsdp": -1})
    rows = config_mesh.shard_batch(np.full((2, 3), jax.process_index(), np.float32), mesh)  # 2 rows here
    total = float(jax.jit(jnp.sum, out_shardings=jax.sharding.NamedSharding(mesh, jax.P()))(rows))
    print(json.dumps({"joined": joined, "primary": distributed.is_primary(), "processes": jax.process_count(),
                      "devices": jax.device_count(), "mesh": dict(mesh.shape), "total": total}))
""")


@pytest.mark.parametrize("source", ["flags", "env"])
def test_two_processes_join(source):
    port = str(free_port())
    base = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    envs = [
        {
            **base,
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "JAX_NUM_PROCESSES": "2",
            "JAX_PROCESS_ID": str(i),
        }
        if source == "env"
        else base
        for i in range(2)
    ]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS, source, port, str(i)],
            cwd=REPO,
            env=envs[i],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = wait_all(processes, timeout=120)
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    common = {"joined": True, "processes": 2, "devices": 4, "mesh": {"data": 1, "fsdp": 4, "tensor": 1}}
    # The global batch: process 0's two rows of 0s and process 1's two rows of 1s: sum 6.
    assert reports == [{**common, "primary": True, "total": 6.0}, {**common, "primary": False, "total": 6.0}]


def test_single_process_is_a_no_op(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.initialize() is False  # no cluster here
    assert distributed.initialize(num_processes=1) is False
    assert not jax.distributed.is_initialized()
    assert distributed.is_primary()
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ConfigError, match="JAX_NUM_PROCESSES='two' is not an integer"):
        distributed.initialize()
