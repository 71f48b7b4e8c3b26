"""The model a run trains or samples: a pretrained checkpoint's (`config.pretrained`), else rtc's tokenizer
and the preset named by `config.model.preset`."""

import logging

import ml_collections

from rtc.model import Model, model_config
from rtc.pretrained.checkpoint import from_config
from rtc.tokenizer.build import ensure_model
from rtc.tokenizer.tokenizer import Tokenizer


def build_model(config: ml_collections.ConfigDict, vocab_size: int) -> Model:
    """The model named by `config.model.preset`, with any non-None field of `config.model` overriding it."""
    overrides = {k: v for k, v in config.model.items() if k != "preset" and v is not None}
    return Model(model_config(config.model.preset, vocab_size=vocab_size, **overrides))


def load_model(config: ml_collections.ConfigDict) -> tuple:
    """`(tokenizer, model, params | None)`: a pretrained checkpoint's, else rtc's tokenizer and the preset's
    model with no params yet (a random init is the trainer's)."""
    loaded = from_config(config)
    if loaded is None:
        tokenizer = Tokenizer.load(ensure_model(config.tokenizer_path or None))
        loaded = tokenizer, build_model(config, tokenizer.vocab_size), None
    name = config.get("pretrained") or config.model.preset
    logging.info("model %s: %.2fM parameters", name, loaded[1].config.num_params / 1e6)
    return loaded
