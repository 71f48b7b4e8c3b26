import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtc.model import Model, model_config
from rtc.model.transformer import apply_rope, rms_norm


def test_rms_norm_golden():
    x = jnp.array([[3.0, 4.0]])  # mean(x^2) = 12.5
    out = rms_norm(x, jnp.array([1.0, 2.0]), eps=0.0)
    np.testing.assert_allclose(out, [[3 / np.sqrt(12.5), 8 / np.sqrt(12.5)]], rtol=1e-6)


def test_rope_rotates_adjacent_pairs_golden():
    # head_dim 4: pair 0 rotates by pos * 1, pair 1 by pos * 10000^(-1/2) = pos / 100.
    x = jnp.array([1.0, 0.0, 1.0, 0.0]).reshape(1, 1, 1, 4)
    out = apply_rope(x, jnp.array([[2]]), theta=10000.0).reshape(4)
    np.testing.assert_allclose(out, [np.cos(2), np.sin(2), np.cos(0.02), np.sin(0.02)], rtol=1e-6)
    # (a, b) -> (a cos - b sin, a sin + b cos): the pair (0, 1) and the pair (3, 2)
    x = jnp.array([0.0, 1.0, 3.0, 2.0]).reshape(1, 1, 1, 4)
    out = apply_rope(x, jnp.array([[2]]), theta=10000.0).reshape(4)
    c, s = np.cos(0.02), np.sin(0.02)
    np.testing.assert_allclose(out, [-np.sin(2), np.cos(2), 3 * c - 2 * s, 3 * s + 2 * c], rtol=1e-6)


def test_param_count_matches_tree():
    for preset in ("test-tiny", "cpu-small"):
        for tied, head in ((True, False), (False, True)):
            config = model_config(preset, tie_embeddings=tied, scalar_head=head)
            shapes = jax.eval_shape(Model(config).init_params, jax.random.key(0))
            counted = sum(x.size for x in jax.tree.leaves(shapes)) - (1 if head else 0)  # value_bias
            assert counted == config.num_params


def test_kv_cache_decoding_equals_full_recomputation(tiny_model):
    model, params = tiny_model
    tokens = jax.random.randint(jax.random.key(1), (3, 20), 0, 64)
    positions = jnp.broadcast_to(jnp.arange(20), (3, 20))
    full, _, _ = model.apply(params, tokens, positions)
    cache = model.init_cache(3, 24)
    logits, _, cache = model.apply(params, tokens[:, :7], positions[:, :7], cache)
    pieces = [logits]
    for t in range(7, 20):
        logits, _, cache = model.apply(params, tokens[:, t : t + 1], positions[:, t : t + 1], cache)
        pieces.append(logits)
    np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), full, atol=2e-5)
    assert cache["index"].tolist() == [20, 20, 20]


def test_scalar_head_and_untied_embeddings():
    model = Model(model_config("test-tiny", vocab_size=32, scalar_head=True, tie_embeddings=False))
    params = model.init_params(jax.random.key(0))
    logits, values, cache = model.apply(params, jnp.zeros((2, 5), jnp.int32), jnp.zeros((2, 5), jnp.int32))
    assert logits.shape == (2, 5, 32) and values.shape == (2, 5) and cache is None
    assert "lm_head" in params


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model preset"):
        model_config("gpt-5")
    with pytest.raises(ValueError, match="num_layerz"):
        model_config("test-tiny", num_layerz=3)
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        model_config("test-tiny", num_heads=3, num_kv_heads=2)
    with pytest.raises(ValueError, match="exceeds the model's context"):
        Model(model_config("test-tiny")).init_cache(1, 10_000)
