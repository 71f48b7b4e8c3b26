"""Shared fixtures: small models that compile in seconds."""

import jax
import pytest

from rtc.model import Model, model_config


@pytest.fixture(scope="session")
def tiny_model():
    model = Model(model_config("test-tiny", vocab_size=64, max_seq_len=128))
    return model, model.init_params(jax.random.key(0))
