"""Mesh from config and sharding rules: pure parts in-process, resolution on 8 fake CPU devices."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from jax.sharding import PartitionSpec as P

from rtc.errors import ConfigError
from rtc.parallel import config_mesh, rules

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "sizes, devices, shape",
    [
        ({"data": -1, "fsdp": 1, "tensor": 1}, 8, (8, 1, 1)),
        ({}, 8, (8, 1, 1)),  # data takes the rest by default
        ({"fsdp": 4}, 8, (2, 4, 1)),
        ({"fsdp": -1}, 8, (1, 8, 1)),  # data defaults to 1 when another axis is -1
        ({"data": 2, "fsdp": -1, "tensor": 2}, 8, (2, 2, 2)),
        ({"data": 2, "fsdp": 2, "tensor": 2}, 8, (2, 2, 2)),
        ({"data": -1, "fsdp": 16}, 256, (16, 16, 1)),
    ],
)
def test_mesh_shape(sizes, devices, shape):
    assert config_mesh.mesh_shape(sizes, devices) == shape


@pytest.mark.parametrize(
    "sizes, match",
    [
        ({"data": 3}, r"has 3 devices but 8 are used"),
        ({"data": -1, "fsdp": 3}, r"fixed axes \(3 devices\) do not divide the 8 devices"),
        ({"data": -1, "fsdp": -1}, "at most one mesh axis may be -1"),
        ({"data": -1, "model": 2}, r"unknown mesh axes \['model'\]"),
        ({"data": 0}, "positive or -1"),
    ],
)
def test_bad_mesh_sizes(sizes, match):
    with pytest.raises(ConfigError, match=match):
        config_mesh.mesh_shape(sizes, 8)


def test_parse_mesh():
    assert config_mesh.parse_mesh("data=-1,fsdp=8") == {"data": -1, "fsdp": 8}
    assert config_mesh.parse_mesh(" tensor=2 , fsdp = 4 ") == {"tensor": 2, "fsdp": 4}
    for bad in ("fsdp", "fsdp=x", "fsdp=1.5"):
        with pytest.raises(ConfigError, match="is not AXIS=SIZE"):
            config_mesh.parse_mesh(bad)


def test_preset_for_mesh():
    assert [
        rules.preset_for(dict(zip(("data", "fsdp", "tensor"), s)))
        for s in [(8, 1, 1), (1, 8, 1), (2, 1, 4), (1, 4, 2)]
    ] == ["dp", "fsdp", "tp", "fsdp_tp"]
    assert rules.get_rules("auto", {"data": 2, "fsdp": 4, "tensor": 1}) == rules.PRESETS["fsdp"]


def test_rule_errors():
    sizes = {"data": 2, "fsdp": 4, "tensor": 1}
    with pytest.raises(ConfigError, match="unknown sharding rules 'zero3'"):
        rules.get_rules("zero3")
    with pytest.raises(ConfigError, match="no sharding rule matches parameter layer_0/w_q"):
        rules.leaf_spec("layer_0/w_q", (8, 2, 4), [("embedding", ())], sizes)
    with pytest.raises(ConfigError, match=r"gives \('fsdp', None\) \(2 dims\) to layer_0/w_q"):
        rules.leaf_spec("layer_0/w_q", (8, 2, 4), [("w_q", ("fsdp", None))], sizes)
    with pytest.raises(ConfigError, match=r"names mesh axes \['model'\]"):
        rules.leaf_spec("w", (8, 8), [(".*", ("model", None))], sizes)
    with pytest.raises(ConfigError, match="regex"):
        rules.get_rules([("w_(q", ())])


def test_rules_as_config_lists():
    """Specs written as lists (a config file's JSON-ish form) act as tuples; tuples of axes split over both."""
    sizes = {"data": 2, "fsdp": 2, "tensor": 2}
    checked = rules.get_rules([["w_q", [["fsdp", "tensor"], None, None]], [".*", []]])
    assert rules.leaf_spec("layer_0/w_q", (8, 2, 4), checked, sizes) == (
        P(("fsdp", "tensor"), None, None),
        None,
    )
    spec, note = rules.leaf_spec("layer_0/w_q", (6, 2, 4), checked, sizes)
    assert spec == P(None, None, None)
    assert note == "layer_0/w_q (6, 2, 4): dim 6 not divisible by fsdpxtensor=4, replicated on that dim"


def test_largest_divisible_dim():
    sizes = {"fsdp": 8}
    largest = [(".*", "largest:fsdp")]
    assert rules.leaf_spec("w", (64, 172), largest, sizes) == (P("fsdp", None), None)  # 172 % 8 != 0
    assert rules.leaf_spec("w", (4, 16, 64), largest, sizes) == (P(None, None, "fsdp"), None)
    assert rules.leaf_spec("w", (64, 64), largest, sizes) == (P("fsdp", None), None)  # ties: the first
    assert rules.leaf_spec("norm", (64,), largest, sizes) == (P(), None)  # vectors stay whole
    assert rules.leaf_spec("w", (3, 5), largest, sizes) == (
        P(),
        "w (3, 5): no dimension divisible by fsdp=8, replicated",
    )


# XLA_FLAGS must be set before jax is imported, hence a fresh process.
SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from rtc.model.config import model_config
    from rtc.model.transformer import init_params
    from rtc.parallel import config_mesh, rules
    from rtc.analysis.memory import train_state_shapes
    from rtc.train import optimizer as optimizer_lib
    from rtc.train.state import init_train_state

    report = {"devices": jax.device_count()}
    mesh = config_mesh.make_config_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    batch = config_mesh.shard_batch({"tokens": np.arange(8 * 5).reshape(8, 5)}, mesh)["tokens"]
    report["mesh"] = {"shape": dict(mesh.shape), "names": list(mesh.axis_names)}
    report["batch"] = {"spec": str(batch.sharding.spec), "devices": len(batch.sharding.device_set),
                       "shards": sorted({(s.data.shape[0], int(s.data[0, 0])) for s in batch.addressable_shards})}
    report["mesh4"] = dict(config_mesh.make_config_mesh({"fsdp": -1}, num_devices=4).shape)

    c = model_config("test-tiny", qkv_bias=True, tie_embeddings=False, scalar_head=True)
    optimizer = optimizer_lib.adamw(1e-3, 0.1, 1.0)
    state = init_train_state(init_params(c, jax.random.key(0)), optimizer, jax.random.key(1))
    meshes = {"dp": {"data": -1}, "fsdp": {"fsdp": 8}, "tp": {"data": 2, "tensor": 4},
              "fsdp_tp": {"fsdp": 4, "tensor": 2}}
    for preset, sizes in meshes.items():
        mesh = config_mesh.make_config_mesh(sizes)
        fallbacks = []
        shardings = rules.train_state_shardings(state, mesh, preset, fallbacks)
        placed = jax.device_put(state, shardings)
        leaves = lambda tree: jax.tree_util.tree_leaves_with_path(tree)
        report[preset] = {
            "params": {rules.path_str(p): [str(x.sharding.spec), list(x.addressable_shards[0].data.shape)]
                       for p, x in leaves(placed["params"])},
            "mu": {rules.path_str(p): str(x.sharding.spec) for p, x in leaves(placed["opt_state"][1][0].mu)},
            "scalars": sorted({str(x.sharding.spec) for x in jax.tree.leaves(placed["opt_state"]) if x.ndim == 0}),
            "fallbacks": fallbacks,
        }

    shapes = train_state_shapes(model_config("125m"))
    for preset, sizes in (("fsdp", {"fsdp": 8}), ("dp", {"data": 8})):
        shardings = rules.train_state_shardings(shapes, config_mesh.make_config_mesh(sizes), preset)
        report["125m_" + preset] = rules.replicated_leaves(shapes, shardings, min_bytes=1 << 20)
    print(json.dumps(report))
""")


@pytest.fixture(scope="module")
def report():
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_config_mesh_on_eight_devices(report):
    assert report["devices"] == 8
    assert report["mesh"] == {
        "shape": {"data": 2, "fsdp": 2, "tensor": 2},
        "names": ["data", "fsdp", "tensor"],
    }
    assert report["mesh4"] == {"data": 1, "fsdp": 4, "tensor": 1}
    # [8, 5] over data x fsdp = 4: rows 0-1, 2-3, 4-5, 6-7, each on both devices of its `tensor` pair.
    assert report["batch"] == {"spec": "P(('data', 'fsdp'),)", "devices": 8,
                               "shards": [[2, 0], [2, 10], [2, 20], [2, 30]]}  # fmt: skip


# test-tiny: V=1024, E=64, H=4, Hkv=2, D=16, F=172; leaf -> [spec, shard shape on one device].
EXPECTED = {
    "dp": {
        "embedding": ["P()", [1024, 64]],
        "layer_0/w_q": ["P()", [64, 4, 16]],
        "value_bias": ["P()", []],
    },
    "fsdp": {  # the largest dimension divisible by 8
        "embedding": ["P('fsdp', None)", [128, 64]],
        "lm_head": ["P(None, 'fsdp')", [64, 128]],
        "layer_0/w_q": ["P('fsdp', None, None)", [8, 4, 16]],
        "layer_0/w_k": ["P('fsdp', None, None)", [8, 2, 16]],
        "layer_0/w_o": ["P(None, None, 'fsdp')", [4, 16, 8]],
        "layer_0/w_gate": ["P('fsdp', None)", [8, 172]],  # 172 % 8 = 4: the 64
        "layer_0/w_down": ["P(None, 'fsdp')", [172, 8]],
        "layer_0/b_q": ["P(None, 'fsdp')", [4, 2]],
        "layer_0/attn_norm": ["P()", [64]],
        "value_head": ["P()", [64]],
        "value_bias": ["P()", []],
    },
    "tp": {  # tensor = 4: Hkv = 2 cannot split
        "embedding": ["P('tensor', None)", [256, 64]],
        "lm_head": ["P(None, 'tensor')", [64, 256]],
        "layer_0/w_q": ["P(None, 'tensor', None)", [64, 1, 16]],
        "layer_0/w_k": ["P(None, None, None)", [64, 2, 16]],
        "layer_0/w_o": ["P('tensor', None, None)", [1, 16, 64]],
        "layer_0/w_gate": ["P(None, 'tensor')", [64, 43]],
        "layer_0/w_up": ["P(None, 'tensor')", [64, 43]],
        "layer_0/w_down": ["P('tensor', None)", [43, 64]],
        "layer_0/b_q": ["P('tensor', None)", [1, 16]],
        "layer_0/b_v": ["P(None, None)", [2, 16]],
        "final_norm": ["P()", [64]],
    },
    "fsdp_tp": {  # fsdp = 4 on the embedding dimension, tensor = 2 on heads / hidden / vocab
        "embedding": ["P('tensor', 'fsdp')", [512, 16]],
        "lm_head": ["P('fsdp', 'tensor')", [16, 512]],
        "layer_0/w_q": ["P('fsdp', 'tensor', None)", [16, 2, 16]],
        "layer_0/w_v": ["P('fsdp', 'tensor', None)", [16, 1, 16]],
        "layer_0/w_o": ["P('tensor', None, 'fsdp')", [2, 16, 16]],
        "layer_0/w_gate": ["P('fsdp', 'tensor')", [16, 86]],
        "layer_0/w_down": ["P('tensor', 'fsdp')", [86, 16]],
        "layer_0/mlp_norm": ["P()", [64]],
    },
}


@pytest.mark.parametrize("preset", sorted(EXPECTED))
def test_rule_resolution_on_eight_devices(report, preset):
    resolved = report[preset]
    assert len(resolved["params"]) == 2 * 12 + 5  # every leaf got a sharding
    assert {k: resolved["params"][k] for k in EXPECTED[preset]} == EXPECTED[preset]
    assert all(v[0] == "P()" for k, v in resolved["params"].items() if k.endswith("_norm"))
    assert resolved["mu"] == {k: v[0] for k, v in resolved["params"].items()}  # Adam moments mirror params
    assert resolved["scalars"] == ["P()"]  # step counts replicated
    if preset == "tp":  # recorded, not silent
        assert sorted(resolved["fallbacks"]) == sorted(
            f"layer_{i}/{name} {shape}: dim 2 not divisible by tensor=4, replicated on that dim"
            for i in range(2)
            for name, shape in (
                ("w_k", (64, 2, 16)),
                ("w_v", (64, 2, 16)),
                ("b_k", (2, 16)),
                ("b_v", (2, 16)),
            )
        )
    else:
        assert resolved["fallbacks"] == []


def test_no_large_replicated_leaves_under_fsdp(report):
    assert report["125m_fsdp"] == []  # every matrix and moment of the 125m model split 8 ways
    replicated = dict(report["125m_dp"])
    assert replicated["params/embedding"] == 32000 * 768 * 4  # the check does see replication
    assert len(replicated) == 3 * (1 + 12 * 5)  # params, mu, nu: embedding, w_q, w_o, MLP (w_k, w_v < 1 MiB)
