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
