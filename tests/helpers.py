"""Helpers shared by the SFT tests (importable because pytest puts tests/ on sys.path)."""

import importlib.util
from pathlib import Path

import jax
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def quickstart_config(arg: str = "tiny"):
    """`experiments/configs/quickstart.py:get_config(arg)`, loaded from its file as the CLI does."""
    spec = importlib.util.spec_from_file_location("quickstart", REPO / "experiments/configs/quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def assert_trees_close(actual, expected, atol=1e-6):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    jax.tree.map(
        lambda a, e: np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=0, atol=atol),
        actual,
        expected,
    )


def run_on_fake_devices(script: str, *args: str, devices: int = 8, timeout: int = 900):
    """Runs `python -c script args...` in the repo with `devices` fake CPU devices (XLA_FLAGS must be set
    before jax is imported, hence a fresh process); fails the test with its stderr if it fails."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a jax.distributed coordinator)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_all(processes, timeout: int) -> list[tuple[str, str]]:
    """`communicate()` of every process, each killed afterwards (a process whose peer died would wait at a
    collective until jax's heartbeat timeout); fails the test with their output unless all exit 0."""
    try:
        outputs = [p.communicate(timeout=timeout) for p in processes]
    finally:
        for p in processes:
            p.kill()
    codes = [p.returncode for p in processes]
    assert codes == [0] * len(processes), "\n".join(
        ((out or "") + (err or ""))[-3000:] for out, err in outputs
    )
    return outputs


def start_processes(commands: list[list[str]], devices: int) -> list:
    """One `subprocess.Popen` per argv in `commands` (run in the repo, stdout and stderr together), each
    with `devices` fake CPU devices; pair with `wait_all`."""
    import os
    import subprocess

    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }
    return [
        subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for argv in commands
    ]
