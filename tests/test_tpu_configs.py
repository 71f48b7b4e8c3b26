"""experiments/configs/tpu.py: every variant's mesh, batch and context fit its slice, and FSDP shards the 1b
train state. Shapes only (`jax.eval_shape`, `AbstractMesh`): no TPU and no fake devices needed."""

import importlib.util
from pathlib import Path

import pytest

from rtc.model.config import model_config
from rtc.parallel import config_mesh, rules
from rtc.analysis.memory import train_state_shapes

REPO = Path(__file__).resolve().parents[1]


def tpu_module():
    """The config module, loaded from its file as the CLI does."""
    spec = importlib.util.spec_from_file_location("tpu", REPO / "experiments/configs/tpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TPU = tpu_module()


@pytest.mark.parametrize("name", sorted(TPU.VARIANTS))
def test_variant_fits_its_slice(name):
    variant, config = TPU.VARIANTS[name], TPU.get_config(name)
    mesh = config_mesh.abstract_mesh(config_mesh.parse_mesh(config.mesh), variant.chips)
    assert mesh.size == variant.chips
    rows = config_mesh.batch_size_per_chip(config.sft.batch_size, mesh)  # raises unless divisible
    assert rows * mesh.shape["data"] * mesh.shape["fsdp"] == config.sft.batch_size
    assert config.sft.batch_size % variant.hosts == 0  # each host feeds its own rows
    assert config.eval.batch_size % variant.chips == 0  # evaluation splits over every chip
    assert (
        rules.get_rules(config.sharding_rules, mesh.shape)
        == rules.PRESETS["dp" if variant.preset == "125m" else "fsdp"]
    )
    model = model_config(config.model.preset)
    assert config.sft.seq_len <= model.max_seq_len
    assert config.eval.max_new_tokens + 64 <= model.max_seq_len  # room for the prompt
    assert variant.memory_gib < variant.hbm_gib


@pytest.mark.parametrize("vocab_size", [32_000, 1024])  # the preset's, rtc's shipped tokenizer's
@pytest.mark.parametrize("name", sorted(n for n, v in TPU.VARIANTS.items() if v.preset == "1b"))
def test_1b_train_state_fully_sharded(name, vocab_size):
    config = TPU.get_config(name)
    mesh = config_mesh.abstract_mesh(config_mesh.parse_mesh(config.mesh), TPU.VARIANTS[name].chips)
    shapes = train_state_shapes(model_config(config.model.preset, vocab_size=vocab_size))
    fallbacks = []
    shardings = rules.train_state_shardings(shapes, mesh, config.sharding_rules, fallbacks)
    assert rules.replicated_leaves(shapes, shardings, min_bytes=1 << 20) == []
    assert fallbacks == []


def test_unknown_variant_lists_known():
    with pytest.raises(ValueError, match="unknown tpu variant 'v6e-8'; known: v5e-8, v5e-8-1b, v4-8"):
        TPU.get_config("v6e-8")
