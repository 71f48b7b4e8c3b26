"""Checkpointer: round trip, retention, shardings, and refusal of bad saves and damaged files."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from rtc.checkpoint import CheckpointError, Checkpointer, checkpointer, tree_fingerprint


def make_state(seed: int, step: int = 0) -> dict:
    """A train state like the training loop's: params, adamw state, step, rng key data."""
    key = jax.random.PRNGKey(seed)
    params = {"w": jax.random.normal(key, (64, 64)), "b": jnp.full((8,), float(seed))}
    opt_state = optax.adamw(1e-3).init(params)
    opt_state = jax.tree.map(lambda x: x + seed if jnp.issubdtype(x.dtype, jnp.floating) else x, opt_state)
    return {
        "params": params,
        "opt_state": opt_state,
        "step": jnp.int32(step),
        "rng": jax.random.key_data(key),
    }


def assert_trees_equal(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    jax.tree.map(np.testing.assert_array_equal, actual, expected)


@pytest.fixture
def three_steps(tmp_path):
    """A directory with steps 2 and 3 kept out of 1, 2, 3 (max_to_keep=2)."""
    with Checkpointer(tmp_path / "ckpt", max_to_keep=2) as ckpt:
        for step in (1, 2, 3):
            assert ckpt.save(step, make_state(step, step), {"data_position": 10 * step})
    return tmp_path / "ckpt"


def test_keeps_last_steps_and_round_trips(three_steps):
    with Checkpointer(three_steps, max_to_keep=2) as ckpt:
        assert ckpt.all_steps() == [2, 3]
        assert ckpt.latest_step() == 3
        state, meta = ckpt.restore(make_state(0))
        assert_trees_equal(state, make_state(3, 3))
        assert meta == {"data_position": 30}
        assert type(state["opt_state"][0]) is type(make_state(0)["opt_state"][0])
        state, meta = ckpt.restore(make_state(0), step=2)
        assert_trees_equal(state, make_state(2, 2))
        assert meta == {"data_position": 20}


def test_restore_uses_template_shardings(tmp_path):
    mesh = jax.make_mesh((1,), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    template = jax.tree.map(
        lambda x: jax.device_put(x, sharding if x.ndim else NamedSharding(mesh, P())), make_state(0)
    )
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, make_state(1, 1), {})
        state, _ = ckpt.restore(template)
    assert_trees_equal(state, make_state(1, 1))
    assert jax.tree.leaves(jax.tree.map(lambda x, t: x.sharding == t.sharding, state, template)) == [
        True
    ] * len(jax.tree.leaves(state))


def test_restore_without_checkpoint_names_directory(tmp_path):
    with Checkpointer(tmp_path / "empty") as ckpt:
        with pytest.raises(CheckpointError, match=f"no checkpoint.*{tmp_path / 'empty'}"):
            ckpt.restore(make_state(0))
        ckpt.save(1, make_state(1), {})
        with pytest.raises(CheckpointError, match=r"step 5.*\[1\]"):
            ckpt.restore(make_state(0), step=5)


def test_missing_file_raises_for_step_and_latest(three_steps):
    os.remove(three_steps / "3" / "state" / "_METADATA")
    with Checkpointer(three_steps, max_to_keep=2) as ckpt:
        with pytest.raises(CheckpointError, match=f"step 3 at {three_steps / '3'}"):
            ckpt.restore(make_state(0), step=3)
        with pytest.raises(CheckpointError, match=r"step 3 .*other steps on disk.*\[2\]"):
            ckpt.restore(make_state(0))
        state, _ = ckpt.restore(make_state(0), step=2)
    assert_trees_equal(state, make_state(2, 2))


def test_flipped_data_byte_is_detected(three_steps):
    """Orbax restores a flipped byte inside an array chunk silently; the fingerprint catches it."""
    chunks = three_steps / "3" / "state" / "ocdbt.process_0" / "d"
    largest = max(chunks.iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(largest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    largest.write_bytes(bytes(data))
    with Checkpointer(three_steps, max_to_keep=2) as ckpt:
        with pytest.raises(CheckpointError, match=r"step 3 .*content differs"):
            ckpt.restore(make_state(0), step=3)


def test_damaged_meta_raises(three_steps):
    (three_steps / "3" / "meta" / "metadata").write_text('{"data_pos')
    with Checkpointer(three_steps, max_to_keep=2) as ckpt:
        with pytest.raises(CheckpointError, match="step 3"):
            ckpt.restore(make_state(0))


def test_existing_step_is_not_overwritten(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.save(1, make_state(1, 1), {"run": "first"})
        assert not ckpt.save(1, make_state(2, 1), {"run": "second"}, force=True)
        state, meta = ckpt.restore(make_state(0))
    assert_trees_equal(state, make_state(1, 1))
    assert meta == {"run": "first"}


def test_non_finite_state_is_refused(tmp_path):
    bad = make_state(2, 2)
    bad["params"]["b"] = bad["params"]["b"].at[3].set(jnp.nan)
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, make_state(1, 1), {})
        with pytest.raises(CheckpointError, match="step 2.*nan or inf"):
            ckpt.save(2, bad, {})
        assert ckpt.all_steps() == [1]
        state, _ = ckpt.restore(make_state(0))
    assert_trees_equal(state, make_state(1, 1))


def test_step_older_than_latest_is_refused(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(5, make_state(5), {})
        with pytest.raises(CheckpointError, match="step 4.*later step 5"):
            ckpt.save(4, make_state(4), {})
        assert ckpt.all_steps() == [5]


def test_save_interval_and_force(tmp_path):
    with Checkpointer(tmp_path, save_interval_steps=10) as ckpt:
        assert ckpt.save(10, make_state(1), {})
        assert not ckpt.save(15, make_state(1), {})
        assert ckpt.save(17, make_state(1), {}, force=True)
        assert ckpt.all_steps() == [10, 17]


def test_fingerprint_sees_one_changed_element():
    tree = {
        "w": jnp.arange(12.0).reshape(3, 4),
        "h": jnp.ones((5,), jnp.bfloat16),
        "m": jnp.array([True, False]),
    }
    base = tree_fingerprint(tree)
    assert base == tree_fingerprint(jax.tree.map(jnp.copy, tree))
    assert (
        tree_fingerprint({**tree, "w": tree["w"].at[2, 1].add(1e-6)})["['w']"]["hash"]
        != base["['w']"]["hash"]
    )
    assert tree_fingerprint({**tree, "h": tree["h"].at[4].set(2)})["['h']"]["hash"] != base["['h']"]["hash"]
    assert tree_fingerprint({**tree, "m": tree["m"][::-1]})["['m']"]["hash"] != base["['m']"]["hash"]
    assert (
        tree_fingerprint({**tree, "w": tree["w"].T.reshape(3, 4)})["['w']"]["hash"] != base["['w']"]["hash"]
    )


def test_restore_may_cast_dtype(tmp_path):
    template = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(
            x.shape, jnp.bfloat16 if x.dtype == jnp.float32 else x.dtype, sharding=x.sharding
        ),
        make_state(0),
    )
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, make_state(1, 1), {})
        state, _ = ckpt.restore(template)
    assert state["params"]["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(state["params"]["w"], make_state(1, 1)["params"]["w"].astype(jnp.bfloat16))


@pytest.mark.parametrize(
    "url", ["gs://bucket/run/checkpoints", "s3://bucket/run", "gs://bucket/../run/./checkpoints/"]
)
def test_cloud_directory_reaches_orbax_unchanged(url, monkeypatch):
    """No network: orbax's manager is replaced by one that records the directory it is given."""
    given = []
    monkeypatch.setattr(
        checkpointer.ocp, "CheckpointManager", lambda directory, options: given.append(directory)
    )
    assert checkpointer.checkpoint_directory(url) == url
    assert Checkpointer(url).directory == url
    assert given == [url]


def test_local_directory_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert checkpointer.checkpoint_directory("run/checkpoints") == str(tmp_path / "run" / "checkpoints")
    assert checkpointer.checkpoint_directory(tmp_path / "a" / ".." / "b") == str(tmp_path / "b")
    with Checkpointer("run/checkpoints") as ckpt:
        assert ckpt.directory == str(tmp_path / "run" / "checkpoints")
        assert ckpt.save(1, make_state(1, 1), {})
    assert (tmp_path / "run" / "checkpoints" / "1").is_dir()
