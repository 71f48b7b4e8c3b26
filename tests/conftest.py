"""Shared fixtures: small models that compile in seconds."""

import jax
import pytest

from rtc.model import Model, model_config


@pytest.fixture(scope="session")
def tiny_model():
    model = Model(model_config("test-tiny", vocab_size=64, max_seq_len=128))
    return model, model.init_params(jax.random.key(0))


@pytest.fixture(scope="module")
def tokenizer():
    from rtc.tokenizer.tokenizer import Tokenizer

    return Tokenizer.load()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One prepared copy of the tiny arithmetic splits for every run of a test module."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def tiny_config(data_dir):
    from helpers import quickstart_config

    config = quickstart_config("tiny")
    config.data_dir = str(data_dir)
    return config


@pytest.fixture(scope="module")
def model(tokenizer):
    from helpers import quickstart_config
    from rtc.train import sft_loop

    return sft_loop.build_model(quickstart_config("tiny"), tokenizer.vocab_size)
