"""Token-level beam search: a hand-computed bigram case, greedy at one beam, parity with transformers."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtc.errors import ConfigError
from rtc.sampling.beam_search import BeamSearchConfig, beam_search, best_completions
from rtc.sampling.sampler import SamplerConfig, completions, generate

START, A, B, END = 0, 1, 2, 3
# P(next | previous) over (START, A, B, END); START is never emitted.
BIGRAM = (
    (0.0, 0.5, 0.2, 0.3),  # after START
    (0.0, 0.45, 0.3, 0.25),  # after A
    (0.0, 0.9, 0.05, 0.05),  # after B
    (0.0, 0.9, 0.05, 0.05),  # after END
)


@dataclasses.dataclass(frozen=True)
class BigramModel:
    """A model whose logits are log P(next | last token): beam search's arithmetic by hand."""

    max_seq_len: int = 64

    def apply(self, params, tokens, positions, cache=None):
        """params: f32[V, V] log-probabilities; tokens: i32[B, T] -> logits f32[B, T, V]."""
        new_cache = None if cache is None else {"index": cache["index"] + tokens.shape[1]}
        return params[tokens], None, new_cache

    def init_cache(self, batch_size, max_len, dtype=jnp.float32):
        return {"index": jnp.zeros((batch_size,), jnp.int32)}

    def grow_cache(self, cache, max_len):
        return cache


def _bigram_params():
    return jnp.log(jnp.maximum(jnp.array(BIGRAM), 1e-30))


@pytest.mark.parametrize(
    "stop_ids, length_penalty, expected",
    [
        # no stop: A (.5) and END (.3) survive step 1; END A (.27) beats A A (.225), greedy's choice
        ((), 1.0, [([END, A], math.log(0.27) / 2), ([A, A], math.log(0.225) / 2)]),
        # END stops: [END] (.3, ranked 2nd of 4 candidates) enters the bank; A A (.225) and B A (.18)
        # beat it once scores are divided by length ...
        ((END,), 1.0, [([A, A], math.log(0.225) / 2), ([B, A], math.log(0.18) / 2)]),
        # ... but not without the length penalty
        ((END,), 0.0, [([END], math.log(0.3)), ([A, A], math.log(0.225))]),
    ],
)
def test_bigram_by_hand(stop_ids, length_penalty, expected):
    cfg = BeamSearchConfig(num_beams=2, max_new_tokens=2, stop_ids=stop_ids, length_penalty=length_penalty)
    out = beam_search(BigramModel(), _bigram_params(), [[START]], cfg)
    hypotheses = [out.tokens[0, i, : out.lengths[0, i]].tolist() for i in range(2)]
    assert hypotheses == [tokens for tokens, _ in expected]
    np.testing.assert_allclose(out.scores[0], [score for _, score in expected], rtol=1e-5)


def test_one_beam_is_greedy(tiny_model):
    model, params = tiny_model
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]
    n = 10
    greedy = generate(model, params, prompts, jax.random.key(0), SamplerConfig(max_new_tokens=n, stop_ids=()))
    out = beam_search(model, params, prompts, BeamSearchConfig(num_beams=1, max_new_tokens=n))
    assert best_completions(out) == completions(greedy)
    assert out.lengths[:, 0].tolist() == [n] * len(prompts)


def test_rejects_bad_input(tiny_model):
    model, params = tiny_model
    with pytest.raises(ConfigError, match="num_beams"):
        BeamSearchConfig(num_beams=0, max_new_tokens=4)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        BeamSearchConfig(num_beams=2, max_new_tokens=0)
    with pytest.raises(ConfigError, match="exceeds the model's context"):
        beam_search(model, params, [[5] * 120], BeamSearchConfig(num_beams=2, max_new_tokens=16))
    with pytest.raises(ConfigError, match="candidates"):
        beam_search(
            BigramModel(), _bigram_params(), [[START]], BeamSearchConfig(num_beams=4, max_new_tokens=2)
        )


torch = pytest.importorskip("torch", reason="the parity tests need torch (pip install -e '.[test]')")
transformers = pytest.importorskip(
    "transformers", reason="the parity tests need transformers (pip install -e '.[test]')"
)

from rtc.model import Model  # noqa: E402
from rtc.pretrained import load_model  # noqa: E402
from test_pretrained_parity import _COMMON, FAMILIES, VOCAB, _randomize  # noqa: E402

NUM_BEAMS, NEW_TOKENS = 4, 12


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """A random `LlamaForCausalLM` (test_pretrained_parity's config) and the same weights loaded by rtc."""
    config = transformers.LlamaConfig(**_COMMON, **FAMILIES["llama"][1])
    torch.manual_seed(0)
    reference = transformers.LlamaForCausalLM(config).eval()
    _randomize(reference, "llama")
    directory = tmp_path_factory.mktemp("llama")
    reference.save_pretrained(directory, safe_serialization=True)
    rtc_config, _, params = load_model(directory)
    return reference, Model(rtc_config), params


def _hf_beam_search(reference, prompt: list[int], eos: int | None, length_penalty: float):
    """transformers' `num_beams` best hypotheses for one prompt as (token lists, f32[K] scores)."""
    reference.generation_config.eos_token_id = eos  # None: no stop id (generate's kwarg cannot unset it)
    input_ids = torch.tensor([prompt])
    with torch.no_grad():
        out = reference.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=False,
            num_beams=NUM_BEAMS,
            num_return_sequences=NUM_BEAMS,
            max_new_tokens=NEW_TOKENS,
            length_penalty=length_penalty,
            early_stopping=False,
            pad_token_id=0,
            return_dict_in_generate=True,
            output_scores=True,
        )
    lengths = (out.beam_indices >= 0).sum(dim=1).tolist()
    tokens = out.sequences[:, len(prompt) :].tolist()
    return [row[:length] for row, length in zip(tokens, lengths)], out.sequences_scores.numpy()


@pytest.mark.parametrize("length_penalty", [1.0, 0.0])
def test_equals_transformers_beam_search(llama, length_penalty):
    """Ragged prompts in one rtc batch against one `generate` per prompt; with the stop id, the first
    problem's bank fills with finished hypotheses, so the `early_stopping=False` heuristic comes into play."""
    reference, model, params = llama
    rows = np.random.default_rng(2).integers(1, VOCAB, (3, 9)).tolist()
    prompts = [rows[0][:7], rows[1][:4], rows[2]]
    unstopped = beam_search(
        model, params, prompts, BeamSearchConfig(num_beams=NUM_BEAMS, max_new_tokens=NEW_TOKENS)
    )
    eos = int(unstopped.tokens[0, 0, 2])  # emitted early by the best beams
    for stop_ids in [(), (eos,)]:
        cfg = BeamSearchConfig(
            num_beams=NUM_BEAMS, max_new_tokens=NEW_TOKENS, stop_ids=stop_ids, length_penalty=length_penalty
        )
        out = beam_search(model, params, prompts, cfg)
        for b, prompt in enumerate(prompts):
            expected, expected_scores = _hf_beam_search(
                reference, prompt, stop_ids[0] if stop_ids else None, length_penalty
            )
            actual = [out.tokens[b, k, : out.lengths[b, k]].tolist() for k in range(NUM_BEAMS)]
            assert actual == expected, (stop_ids, b)
            np.testing.assert_allclose(out.scores[b], expected_scores, rtol=0, atol=1e-4)
        if stop_ids:
            assert (
                out.lengths[0].max() < NEW_TOKENS
            )  # every kept hypothesis of problem 0 ended on the stop id
