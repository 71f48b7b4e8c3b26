"""Parity with Hugging Face transformers (PyTorch CPU) for tiny random Llama, Qwen2 and Gemma models.

Each model is built from transformers' config class with every weight random (norms and biases
included, so a mis-mapped tensor shows), saved with `save_pretrained` (safetensors), loaded by rtc,
and compared: logits to float32 tolerance, greedy generation token for token. Exports go the other
way: rtc -> safetensors -> transformers.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the parity tests need torch (pip install -e '.[test]')")
transformers = pytest.importorskip(
    "transformers", reason="the parity tests need transformers (pip install -e '.[test]')"
)

from rtc.pretrained import export, load_model  # noqa: E402
from rtc.model import Model  # noqa: E402
from rtc.sampling.sampler import SamplerConfig, completions, generate  # noqa: E402

STORIES = Path(__file__).parent / "data" / "stories260K" / "stories260K.bin"  # shipped with the tests
VOCAB = 160
ATOL = 1e-4  # float32; the measured max |diff| is printed (pytest -s) and is ~1e-6

_COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=48,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=128,
    rms_norm_eps=1e-5,
)
FAMILIES = {
    # Llama 3.1 rotary scaling with a short original context so every frequency band is exercised.
    "llama": (
        "LlamaConfig",
        dict(
            tie_word_embeddings=False,
            rope_theta=50000.0,
            rope_scaling=dict(
                rope_type="llama3",
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=32,
            ),
        ),
    ),
    "qwen2": ("Qwen2Config", dict(tie_word_embeddings=True, rope_theta=1000.0)),
    "gemma": ("GemmaConfig", dict(tie_word_embeddings=True)),
}


def _randomize(model: "torch.nn.Module", family: str) -> None:
    """Every parameter random: norms around their identity (Gemma stores w - 1), biases nonzero."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if "norm" in name:
                p.copy_(0.2 * noise + (0.0 if family == "gemma" else 1.0))
            elif "embed" in name and family == "gemma":  # scaled by sqrt(48) in the forward pass
                p.copy_(0.03 * noise)
            else:
                p.copy_(0.15 * noise)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def hf_model(request, tmp_path_factory):
    family = request.param
    config_class, extra = FAMILIES[family]
    config = getattr(transformers, config_class)(**_COMMON, **extra)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    _randomize(model, family)
    directory = tmp_path_factory.mktemp(family)
    model.save_pretrained(directory, safe_serialization=True)
    return family, model, directory


def _tokens(batch: int, length: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, (batch, length), dtype=np.int64)


def _rtc_logits(model: Model, params, tokens: np.ndarray) -> np.ndarray:
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    logits, _, _ = model.apply(params, jnp.asarray(tokens, jnp.int32), positions)
    return np.asarray(logits)


def _hf_logits(model, tokens: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(tokens)).logits.numpy()


def test_logits_equal_transformers(hf_model):
    family, reference, directory = hf_model
    config, loaded_family, params = load_model(directory)
    assert loaded_family == family
    tokens = _tokens(2, 48)  # past the llama3 original context of 32
    actual, expected = _rtc_logits(Model(config), params, tokens), _hf_logits(reference, tokens)
    print(f"{family}: max |logit diff| {np.abs(actual - expected).max():.2e}")
    np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL)


def test_greedy_generation_equals_transformers(hf_model):
    family, reference, directory = hf_model
    config, _, params = load_model(directory)
    prompts = _tokens(2, 7, seed=2)
    n = 24
    reference.generation_config.eos_token_id = None
    with torch.no_grad():
        expected = reference.generate(
            torch.from_numpy(prompts), do_sample=False, max_new_tokens=n, min_new_tokens=n, pad_token_id=0
        )[:, prompts.shape[1] :].numpy()
    out = generate(
        Model(config),
        params,
        prompts.tolist(),
        jax.random.key(0),
        SamplerConfig(max_new_tokens=n, stop_ids=(VOCAB + 1,), pad_id=0),
    )
    assert completions(out) == expected.tolist()


def test_export_loads_in_transformers_with_equal_logits(hf_model, tmp_path):
    family, reference, directory = hf_model
    config, _, params = load_model(directory)
    export(tmp_path, config, params, max_shard_bytes=40_000)  # several shards + index
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True).eval()
    assert type(reloaded) is type(reference)
    tokens = _tokens(1, 40, seed=3)
    np.testing.assert_allclose(_hf_logits(reloaded, tokens), _hf_logits(reference, tokens), rtol=0, atol=ATOL)


def test_stories260k_exported_runs_in_transformers(tmp_path):
    config, _, params = load_model(STORIES)
    export(tmp_path, config, params)
    reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True).eval()
    tokens = np.array([[1, 403, 407, 261, 378, 432, 383, 286, 261, 376]])  # <s> Once upon a time, there
    actual, expected = _rtc_logits(Model(config), params, tokens), _hf_logits(reference, tokens)
    print(f"stories260K via HF Llama: max |logit diff| {np.abs(actual - expected).max():.2e}")
    np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL)
