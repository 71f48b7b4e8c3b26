"""Slot refill: a sample's tokens do not depend on the slot that ran it, greedy refill equals the plain
sampler, paged equals dense, and refilled slots stay busy."""

import dataclasses

import jax
import numpy as np
import pytest

from rtc.errors import ConfigError
from rtc.model import Model, model_config
from rtc.sampling import refill, sampler
from rtc.sampling.budget import ThinkingBudget
from rtc.sampling.rules import SamplingRule

VOCAB, STOP, THINK, END_THINK = 12, 2, 4, 5
PROMPTS = [[1, 6, 7, 8], [1, 9, 10, 11, 6, 7, 8]]


@pytest.fixture(scope="module")
def setup():
    config = model_config("test-tiny", vocab_size=VOCAB, max_seq_len=128)
    params = Model(config).init_params(jax.random.key(0))
    tokens, lengths = sampler.pad_prompts(PROMPTS, 0, 20, 128)
    return config, params, tokens, lengths


def cfg(temperature=1.0):
    budget = ThinkingBudget(THINK, END_THINK, max_thinking_tokens=6)  # budget state resets with each sample
    return sampler.SamplerConfig(
        max_new_tokens=20, stop_ids=(STOP,), rule=SamplingRule(temperature=temperature), budget=budget
    )


@pytest.mark.parametrize("page_size", [0, 4])
def test_refilled_samples_equal_samples_in_their_own_slots(setup, page_size):
    config, params, tokens, lengths = setup
    model = Model(dataclasses.replace(config, kv_page_size=page_size))
    run = lambda slots: refill.sample_refill(
        model, params, tokens, lengths, jax.random.key(1), cfg(), 8, slots
    )
    refilled, alone = run(3), run(8)  # 3 slots per prompt take 8 samples in turn; 8 slots take one each
    lengths_ = np.asarray(refilled.lengths)
    assert len(set(lengths_.tolist())) > 3 and (lengths_ < 20).any(), "lengths must vary for refill to matter"
    for field in ("tokens", "logprobs", "lengths", "thinking_tokens"):
        np.testing.assert_array_equal(getattr(refilled, field), getattr(alone, field), err_msg=field)
    assert int(refilled.steps) > int(alone.steps)  # fewer slots, more steps ...
    assert float(refilled.occupancy) > float(alone.occupancy)  # ... but busier ones


def test_paged_refill_equals_dense(setup):
    config, params, tokens, lengths = setup
    outs = [
        refill.sample_refill(
            Model(dataclasses.replace(config, kv_page_size=ps)), params, tokens, lengths, jax.random.key(2),
            cfg(), 6, 2,
        )
        for ps in (0, 4)
    ]  # fmt: skip
    np.testing.assert_array_equal(outs[0].tokens, outs[1].tokens)
    np.testing.assert_allclose(outs[0].logprobs, outs[1].logprobs, atol=1e-5)


def test_greedy_refill_equals_the_plain_sampler(setup):
    config, params, tokens, lengths = setup
    model = Model(config)
    out = refill.sample_refill(model, params, tokens, lengths, jax.random.key(1), cfg(0.0), 4, 2)
    plain = sampler.generate(model, params, PROMPTS, jax.random.key(1), cfg(0.0))
    for u in range(len(PROMPTS)):
        for i in range(4):
            np.testing.assert_array_equal(out.tokens[u * 4 + i], plain.tokens[u])
    np.testing.assert_array_equal(out.lengths.reshape(2, 4), np.repeat(plain.lengths[:, None], 4, axis=1))


def test_online_confidence_stop_under_refill_equals_the_plain_sampler(setup):
    """DeepConf's online stop (Fu et al. 2025) per sample: greedy, each prompt's threshold stopping some."""
    config, params, tokens, lengths = setup
    model = Model(config)
    conf = dataclasses.replace(cfg(0.0), confidence_k=4, confidence_window=3)
    free = sampler.generate(model, params, PROMPTS, jax.random.key(1), conf)
    threshold = np.asarray(free.trace.mean) + 0.05  # above the average: some window falls below it
    plain = sampler.generate(model, params, PROMPTS, jax.random.key(1), conf, stop_threshold=threshold)
    assert np.asarray(plain.stopped).any(), "no trace stopped: the test would prove little"
    out = refill.sample_refill(
        model, params, tokens, lengths, jax.random.key(1), conf, 4, 2, stop_threshold=threshold
    )
    for u in range(len(PROMPTS)):
        for i in range(4):
            np.testing.assert_array_equal(out.tokens[u * 4 + i], plain.tokens[u])
            np.testing.assert_allclose(out.confidences[u * 4 + i], plain.confidences[u], atol=1e-6)
            assert bool(out.stopped[u * 4 + i]) == bool(plain.stopped[u])
    np.testing.assert_allclose(out.trace.lowest_group[::4], plain.trace.lowest_group, atol=1e-6)


def test_sampled_confidence_stop_does_not_depend_on_the_slot(setup):
    config, params, tokens, lengths = setup
    conf = dataclasses.replace(cfg(), confidence_k=4, confidence_window=3)
    threshold = np.full((2,), 2.28, np.float32)  # near the traces' mean confidence: some stop, some not
    run = lambda slots: refill.sample_refill(
        Model(config), params, tokens, lengths, jax.random.key(3), conf, 8, slots, stop_threshold=threshold
    )
    refilled, alone = run(3), run(8)
    assert 0 < int(np.asarray(refilled.stopped).sum()) < 16
    for field in ("tokens", "lengths", "confidences", "stopped"):
        np.testing.assert_array_equal(getattr(refilled, field), getattr(alone, field), err_msg=field)


def test_bad_slot_counts_are_named(setup):
    config, params, tokens, lengths = setup
    with pytest.raises(ConfigError, match="slots"):
        refill.sample_refill(Model(config), params, tokens, lengths, jax.random.key(1), cfg(), 4, 5)


@pytest.mark.parametrize("page_size", [0, 2])
def test_a_shared_queue_draws_the_same_samples_in_fewer_steps(setup, page_size):
    """`shared=True`: every prompt's samples queue for every slot. Prompt 0's traces stop early (a high
    DeepConf threshold) and prompt 1's run on, so with a queue per prompt prompt 0's slots idle while prompt
    1 finishes; shared, they take prompt 1's samples. Same samples (keys per sample), fewer steps. Pages
    of 2 tokens: the prompts' shared prefix is read once per run of rows until the queue is shared."""
    config, params, tokens, lengths = setup
    model = Model(dataclasses.replace(config, kv_page_size=page_size))
    conf = dataclasses.replace(cfg(), confidence_k=4, confidence_window=3)
    threshold = np.array([9.0, -np.inf], np.float32)  # prompt 0: stop once a window is full; prompt 1: never
    run = lambda shared: refill.sample_refill(
        model, params, tokens, lengths, jax.random.key(3), conf, 8, 2, stop_threshold=threshold, shared=shared
    )
    own, shared = run(False), run(True)
    stopped, lengths_ = np.asarray(own.stopped), np.asarray(own.lengths)
    assert stopped[:8].any() and not stopped[8:].any() and lengths_[:8].max() < lengths_[8:].mean()
    for field in ("tokens", "lengths", "thinking_tokens", "stopped"):
        np.testing.assert_array_equal(getattr(shared, field), getattr(own, field), err_msg=field)
    for field in ("logprobs", "confidences"):  # paged: the prompt read in its own softmax block or not
        np.testing.assert_allclose(getattr(shared, field), getattr(own, field), atol=1e-5, err_msg=field)
    assert int(shared.steps) < int(own.steps) and float(shared.occupancy) > float(own.occupancy)
