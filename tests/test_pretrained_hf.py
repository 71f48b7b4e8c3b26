"""Hugging Face checkpoints without torch: export -> load round trips, config mapping, bad input."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from helpers import assert_trees_close
from rtc.errors import ConfigError, PretrainedError
from rtc.model import Model, ModelConfig
from rtc.pretrained import export, from_config, load_model
from rtc.pretrained.hf_config import hf_config_from_model, infer_family, model_config_from_hf
from rtc.pretrained.layout import rope_permutation, to_hf, to_rtc
from rtc.pretrained.resize import grow_vocab

_BASE = dict(vocab_size=96, num_layers=2, embed_dim=32, num_heads=4, num_kv_heads=2, head_dim=8, mlp_dim=64)
CONFIGS = {
    "llama": ModelConfig(
        **_BASE,
        tie_embeddings=False,
        rope_theta=500000.0,
        rope_scaling="llama3",
        rope_scaling_factor=8.0,
        rope_original_max_len=64,
    ),
    "qwen2": ModelConfig(**_BASE, qkv_bias=True, norm_eps=1e-6),
    "gemma": ModelConfig(
        **_BASE, norm_offset=1.0, embed_scale=math.sqrt(32), activation="gelu_tanh", norm_eps=1e-6
    ),
}


def random_params(config: ModelConfig, seed: int = 0) -> dict:
    """`init_params` with noise on every leaf (norms and biases included)."""
    params = Model(config).init_params(jax.random.key(seed))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    return jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


@pytest.fixture(params=sorted(CONFIGS))
def exported(request, tmp_path):
    config = CONFIGS[request.param]
    params = random_params(config)
    export(tmp_path, config, params)
    return request.param, config, params, tmp_path


def _edit_config(directory, **changes):
    path = directory / "config.json"
    hf = json.loads(path.read_text())
    hf.update(changes)
    path.write_text(json.dumps(hf))


# --- layout and config mapping ----------------------------------------------------------------------


def test_rope_permutation_interleaves_halves():
    assert rope_permutation(8).tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


def test_layout_round_trips_every_leaf():
    config = CONFIGS["qwen2"]
    flat = {"w_q": (32, 4, 8), "w_k": (32, 2, 8), "w_v": (32, 2, 8), "w_o": (4, 8, 32), "w_down": (64, 32)}
    flat.update(b_q=(4, 8), b_k=(2, 8), lm_head=(32, 96), attn_norm=(32,))
    for leaf, shape in flat.items():
        x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        np.testing.assert_array_equal(to_rtc(leaf, to_hf(leaf, x, config), config), x)


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_config_json_round_trips(family):
    config = CONFIGS[family]
    assert infer_family(config) == family
    assert model_config_from_hf(hf_config_from_model(config, family)) == (config, family)


def test_transformers5_rope_parameters_are_read():
    hf = hf_config_from_model(CONFIGS["llama"], "llama")
    scaling = hf.pop("rope_scaling")
    hf["rope_parameters"] = {**scaling, "rope_theta": hf.pop("rope_theta")}
    assert model_config_from_hf(hf)[0] == CONFIGS["llama"]


# --- export -> load ---------------------------------------------------------------------------------


def test_export_then_load_is_identity(exported):
    family, config, params, directory = exported
    loaded_config, loaded_family, loaded = load_model(directory)
    assert (loaded_config, loaded_family) == (config, family)
    assert_trees_close(loaded, params, atol=0)
    assert sum(x.size for x in jax.tree.leaves(loaded)) == config.num_params  # q/k/v biases counted


def test_sharded_bfloat16_export_with_scalar_head(tmp_path):
    config = dataclasses.replace(CONFIGS["qwen2"], scalar_head=True)
    params = random_params(config)
    export(tmp_path, config, params, dtype="bfloat16", max_shard_bytes=10_000)
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 1
    assert (tmp_path / "model.safetensors.index.json").exists()
    loaded_config, _, loaded = load_model(tmp_path)
    assert loaded_config == config
    rounded = jax.tree.map(lambda x: x.astype(jnp.bfloat16).astype(jnp.float32), params)
    assert_trees_close(loaded, rounded, atol=0)


def test_sharding_callable_places_each_tensor(tmp_path):
    config = CONFIGS["llama"]
    export(tmp_path, config, random_params(config))
    device = jax.devices()[0]
    calls = []

    def sharding(path, shape):
        calls.append((path, shape))
        return jax.sharding.SingleDeviceSharding(device)

    _, _, params = load_model(tmp_path, sharding=sharding)
    assert ("layer_1/w_q", (32, 4, 8)) in calls and ("lm_head", (32, 96)) in calls
    assert len(calls) == len(jax.tree.leaves(params))
    assert all(x.sharding == jax.sharding.SingleDeviceSharding(device) for x in jax.tree.leaves(params))


# --- bad input --------------------------------------------------------------------------------------


def test_missing_tensor_is_named(exported):
    _, _, _, directory = exported
    tensors = load_file(directory / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, directory / "model.safetensors")
    with pytest.raises(PretrainedError, match=r"missing tensor model\.layers\.1\.mlp\.up_proj\.weight"):
        load_model(directory)


def test_unexpected_tensor_is_named(exported):
    _, _, _, directory = exported
    tensors = load_file(directory / "model.safetensors")
    tensors["model.layers.0.self_attn.q_norm.weight"] = np.ones(8, np.float32)
    save_file(tensors, directory / "model.safetensors")
    with pytest.raises(PretrainedError, match=r"unexpected tensor model\.layers\.0\.self_attn\.q_norm"):
        load_model(directory)


def test_shape_mismatch_is_named(exported):
    _, _, _, directory = exported
    _edit_config(directory, intermediate_size=72)
    with pytest.raises(PretrainedError, match=r"tensor model\.layers\.0\.mlp\.\w+_proj\.weight has shape"):
        load_model(directory)


def test_truncated_safetensors_is_an_error(exported):
    _, _, _, directory = exported
    path = directory / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(PretrainedError, match="model.safetensors is truncated"):
        load_model(directory)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(architectures=["Gemma2ForCausalLM"], model_type="gemma2"), r"Gemma2ForCausalLM.*not supported"),
        (dict(architectures=None, model_type="mistral"), r"model_type='mistral' is not supported"),
        (dict(rope_scaling={"rope_type": "yarn", "factor": 4.0}), r"rope_type='yarn' is not supported"),
        (dict(hidden_size=None), r"lacks the field 'hidden_size'"),
        (dict(hidden_act="gelu"), r"hidden_act='gelu'"),
        (dict(use_sliding_window=True), r"use_sliding_window=True is not supported"),
    ],
)
def test_unsupported_config_is_named(tmp_path, changes, message):
    config = CONFIGS["qwen2"]
    export(tmp_path, config, random_params(config))
    _edit_config(tmp_path, **changes)
    with pytest.raises(PretrainedError, match=message):
        load_model(tmp_path)


def test_missing_checkpoint_and_errors_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(PretrainedError, match="cannot read .*config.json"):
        load_model(tmp_path)


# --- fitting a loaded model to a run -----------------------------------------------------------------


def test_grow_vocab_keeps_old_logits():
    config = CONFIGS["llama"]
    params = random_params(config)
    grown_config, grown = grow_vocab(config, params, 100)
    assert grown["embedding"].shape == (100, 32) and grown["lm_head"].shape == (32, 100)
    np.testing.assert_allclose(grown["embedding"][99], params["embedding"].mean(0), rtol=1e-6)
    tokens = jnp.arange(12)[None]
    old, _, _ = Model(config).apply(params, tokens, tokens)
    new, _, _ = Model(grown_config).apply(grown, tokens, tokens)
    np.testing.assert_allclose(new[..., :96], old, atol=1e-6)


def test_from_config_contract(tmp_path):
    import ml_collections

    config = CONFIGS["gemma"]
    export(tmp_path / "model", config, random_params(config))
    assert from_config(ml_collections.ConfigDict({"pretrained": ""})) is None
    assert from_config(ml_collections.ConfigDict({"seed": 0})) is None

    run = ml_collections.ConfigDict(
        {"pretrained": str(tmp_path / "model"), "model": {"preset": "cpu-small", "scalar_head": True}}
    )
    _write_word_tokenizer(tmp_path / "model")
    tokenizer, model, params = from_config(run)
    assert model.config.scalar_head and params["value_head"].shape == (32,)
    assert model.config.vocab_size >= tokenizer.vocab_size
    assert tokenizer.think_start_id < model.config.vocab_size
    logits, values, _ = model.apply(params, jnp.zeros((1, 3), jnp.int32), jnp.arange(3)[None])
    assert logits.shape[-1] == model.config.vocab_size and float(jnp.abs(values).max()) == 0.0

    run.model.num_layers = 5
    with pytest.raises(PretrainedError, match=r"config\.model\.num_layers=5 conflicts"):
        from_config(run)


def _write_word_tokenizer(directory):
    """A tiny word-level tokenizer.json (ids 0..95) beside a checkpoint."""
    import tokenizers

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "[UNK]": 3, "\n": 4}
    vocab.update({f"w{i}": i for i in range(5, 96)})
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok.save(str(directory / "tokenizer.json"))
    _edit_config(directory, bos_token_id=2, eos_token_id=1, pad_token_id=0)
