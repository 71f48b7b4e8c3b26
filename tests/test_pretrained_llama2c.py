"""llama2.c checkpoints: the real stories260K file, round trips, truncated and malformed files."""

import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from helpers import assert_trees_close
from rtc.data import paths
from rtc.errors import PretrainedError
from rtc.pretrained import export, load_model, load_pretrained
from rtc.pretrained.checkpoint import resolve
from rtc.pretrained.llama2c import read_header
from rtc.sampling.sampler import SamplerConfig, completions, generate

SHIPPED = Path(__file__).resolve().parent / "data"
STORIES = str(SHIPPED / "stories260K" / "stories260K.bin")
# llama2.c test_all.py's expected output of `run stories260K.bin -z tok512.bin -t 0.0` (its start).
REFERENCE_STORY = (
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
    "One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n"
    "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do."
)


@pytest.fixture(scope="module")
def stories():
    return load_pretrained(STORIES)


def test_header_and_config_match_the_readme():
    header = read_header(STORIES)
    assert tuple(header.values()) == (64, 172, 5, 8, 4, 512, 512)
    config, family, params = load_model(STORIES)
    assert family == "llama2c" and config.tie_embeddings and "lm_head" not in params
    assert config.num_params == 260_032  # the README's count (frequency tables excluded)
    # First floats of wq and the final norm as stored (README: wq at byte 132380).
    raw = np.memmap(STORIES, dtype="<f4", mode="r")
    wq_layer0 = raw[132380 // 4 :][: 64 * 64].reshape(64, 64)  # [out, in]
    np.testing.assert_array_equal(np.asarray(params["layer_0"]["w_q"]).reshape(64, 64), wq_layer0.T)


def test_greedy_story_is_the_reference(stories):
    tokenizer, model, params = stories
    prompt = [tokenizer.bos_id] + tokenizer.encode("Once upon a time")
    cfg = SamplerConfig(max_new_tokens=120, stop_ids=(tokenizer.eos_id,), pad_id=tokenizer.pad_id)
    out = generate(model, params, [prompt], jax.random.key(0), cfg)
    text = tokenizer.decode(prompt + completions(out)[0])
    assert text.isascii() and text.startswith(REFERENCE_STORY)
    words = set(text.lower().replace(",", " ").replace(".", " ").split())
    assert {"there", "was", "little", "girl", "play", "she"} <= words


def test_grown_vocabulary_keeps_the_story_logits(stories):
    tokenizer, model, params = stories
    config, _, original = load_model(STORIES)
    assert model.config.vocab_size == tokenizer.vocab_size == 516
    tokens = np.array([[1, 403, 407, 261, 378]])
    grown, _, _ = model.apply(params, tokens, np.arange(5)[None])
    base, _, _ = type(model)(config).apply(original, tokens, np.arange(5)[None])
    np.testing.assert_allclose(grown[..., :512], base, atol=1e-6)


def test_load_export_load_round_trip(tmp_path):
    config, _, params = load_model(STORIES)
    export(tmp_path, config, params)
    again_config, family, again = load_model(tmp_path)
    assert family == "llama" and again_config == config
    assert_trees_close(again, params, atol=0)


def _copy(tmp_path, transform):
    path = tmp_path / "model.bin"
    shutil.copy(STORIES, path)
    path.chmod(0o644)
    path.write_bytes(transform(path.read_bytes()))
    return path


@pytest.mark.parametrize(
    "cut, message",
    [
        (10, "shorter than the 28-byte header"),
        (28 + 1000, r"tensor token_embedding_table \(512, 64\) needs bytes 28\.\.131100"),
        (300_000, r"tensor wo \(5, 64, 64\) needs bytes 296220\.\.378140"),
        (1_056_540 - 4, r"tensor freq_cis_imag"),
    ],
)
def test_truncated_file_names_the_cut_tensor(tmp_path, cut, message):
    path = _copy(tmp_path, lambda data: data[:cut])
    with pytest.raises(PretrainedError, match=f"truncated.*{message}|{message}"):
        load_model(path)


def test_malformed_files_are_errors(tmp_path):
    with pytest.raises(PretrainedError, match="bytes after its last tensor"):
        load_model(_copy(tmp_path, lambda data: data + b"\0" * 8))
    versioned = np.array([0x616B3432, 1], "<u4").tobytes() + b"\0" * 300
    with pytest.raises(PretrainedError, match="versioned llama2.c export"):
        load_model(_copy(tmp_path, lambda data: versioned))
    bad_heads = np.array([64, 172, 5, 7, 4, 512, 512], "<i4").tobytes()
    with pytest.raises(PretrainedError, match="do not divide into heads"):
        load_model(_copy(tmp_path, lambda data: bad_heads + data[28:]))
    with pytest.raises(PretrainedError, match="no tokenizer beside"):
        load_pretrained(_copy(tmp_path, lambda data: data))


def test_relative_names_resolve_under_the_data_root_then_the_shipped_copy(monkeypatch, tmp_path):
    name = "stories260K/stories260K.bin"
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path))
    assert resolve(name) == SHIPPED / name  # a data root without it: the copy in tests/data
    (tmp_path / "stories260K").mkdir()
    shutil.copy(STORIES, tmp_path / name)
    assert resolve(name) == tmp_path / name
    with pytest.raises(
        PretrainedError, match=rf"stories260K/absent.bin does not exist \(nor under {tmp_path}, "
    ):
        resolve("stories260K/absent.bin")
    with pytest.raises(PretrainedError, match=r"/absent.bin does not exist$"):
        resolve(tmp_path / "absent.bin")


# XLA_FLAGS must be set before jax is imported, hence a fresh process.
SHARDED_SCRIPT = """
import sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
from rtc.model import Model
from rtc.pretrained import load_model

mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(AxisType.Auto, AxisType.Auto))
SPECS = {"w_q": P(None, "model"), "w_k": P(None, "model"), "w_v": P(None, "model"), "w_o": P("model"),
         "w_gate": P(None, "model"), "w_up": P(None, "model"), "w_down": P("model")}

def sharding(path, shape):
    return NamedSharding(mesh, SPECS.get(path.split("/")[-1], P()))

config, _, sharded = load_model(sys.argv[1], sharding=sharding)
assert sharded["layer_3"]["w_q"].sharding.spec == P(None, "model")
assert sharded["layer_3"]["w_q"].addressable_shards[0].data.shape == (64, 2, 8)
_, _, plain = load_model(sys.argv[1])
tokens = jnp.array([[1, 403, 407, 261, 378]])
apply = jax.jit(Model(config).apply)
a = apply(sharded, tokens, jnp.arange(5)[None])[0]
b = apply(jax.device_put(plain, jax.devices()[0]), tokens, jnp.arange(5)[None])[0]
np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-4)  # reduction order
"""


def test_loads_straight_onto_a_sharding_on_8_devices():
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", SHARDED_SCRIPT, STORIES],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
