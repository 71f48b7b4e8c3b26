"""SFT starting from a pretrained checkpoint: `experiments/configs/pretrained_sft.py:tiny` end to end."""

import numpy as np

from experiments.configs import pretrained_sft
from rtc.pretrained import from_config, load_model
from rtc import recipes


def test_pretrained_sft_tiny_trains_from_stories260k(tmp_path):
    config = pretrained_sft.get_config("tiny")
    config.data_dir = str(tmp_path / "data")
    results = recipes.sft_recipe(config, tmp_path / "run")
    assert set(results) == {"greedy", "sampled"}

    tokenizer, model, _ = from_config(config)
    assert model.config.vocab_size == tokenizer.vocab_size == 516 and model.config.num_layers == 5
    trained = recipes.restore_params(tmp_path / "run")
    _, _, stories = load_model(config.pretrained)
    # Four small AdamW steps from the checkpoint, not from a random init.
    moved = np.abs(np.asarray(trained["embedding"])[:512] - np.asarray(stories["embedding"]))
    assert 0 < moved.max() < 0.02
