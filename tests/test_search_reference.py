"""The compiled search equals the plain-Python reference (rtc/search/reference.py) field by field.

The random policy (test-tiny, vocabulary 64, untied output layer scaled x12 so its choices depend on
the context) emits the delimiter (50) often, and the stop ids (2, 10) often enough that some branches
finish early: each case checks both happened, or it would prove little.
"""

import dataclasses

import jax
import numpy as np
import pytest

from rtc.errors import ConfigError
from rtc.model import Model, model_config
from rtc.sampling.budget import ThinkingBudget
from rtc.sampling.rules import SamplingRule
from rtc.search import expand as expand_lib
from rtc.search.config import SearchConfig
from rtc.search.reference import reference_search
from rtc.search.tree_search import search

VOCAB, STOPS, DELIM, THINK_START, THINK_END = 64, (2, 10), 50, 20, 21
PROMPTS = np.array([[1, 5, 6, 7, 0, 0, 0, 0], [1, 9, 10, 11, 12, 13, 14, 0]], np.int32)  # i32[B, P]
LENGTHS = np.array([4, 7], np.int32)
THINKING_PROMPTS = np.array(
    [[1, 5, 6, 7, THINK_START, 0, 0, 0], [1, 9, 10, 11, 12, 13, 14, THINK_START]], np.int32
)
GREEDY, SAMPLED = SamplingRule(temperature=0.0), SamplingRule(temperature=1.0)


@pytest.fixture(scope="module")
def models():
    config = model_config("test-tiny", vocab_size=VOCAB, max_seq_len=128, tie_embeddings=False)
    policy = Model(config)
    params = policy.init_params(jax.random.key(0))
    params = {**params, "lm_head": params["lm_head"] * 12.0}
    verifier = Model(dataclasses.replace(config, tie_embeddings=True, scalar_head=True))
    vparams = verifier.init_params(jax.random.key(1))
    vparams = {**vparams, "value_head": jax.random.normal(jax.random.key(2), vparams["value_head"].shape)}
    return policy, params, verifier, vparams


def config(**overrides) -> SearchConfig:
    fields = dict(
        strategy="beam", n=4, m=2, depth=4, step_tokens=5, stop_ids=STOPS, delimiter_id=DELIM, rule=SAMPLED
    )
    return SearchConfig(**{**fields, **overrides})


def both(models, cfg, prompts=PROMPTS, lengths=LENGTHS, seed=3):
    """(compiled output as numpy, reference output) on the same inputs."""
    policy, params, verifier, vparams = models
    rng = jax.random.key(seed)
    compiled = search(policy, params, verifier, vparams, prompts, lengths, rng, cfg)
    return jax.tree.map(np.asarray, compiled), reference_search(
        policy, params, verifier, vparams, prompts, lengths, rng, cfg
    )


def assert_same(compiled, reference):
    for field in dataclasses.fields(compiled):
        a, b = getattr(compiled, field.name), getattr(reference, field.name)
        if field.name == "scores":
            np.testing.assert_allclose(a, b, atol=1e-5, err_msg=field.name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=field.name)


def assert_exercised(out, cfg):
    """Steps ended at the delimiter and some branch finished before the depth ran out."""
    if cfg.split_steps:
        assert (out.tokens == DELIM).any(), "no step ended at the delimiter"
    assert (out.finished & (out.lengths < cfg.max_path_tokens)).any(), "no branch finished early"


CASES = {
    "best_of_n-greedy": dict(strategy="best_of_n", m=1, rule=GREEDY),
    "best_of_n-sampled": dict(strategy="best_of_n", m=1),
    "beam-greedy": dict(rule=GREEDY),
    "beam-sampled": dict(),
    "dvts-greedy": dict(strategy="dvts", rule=GREEDY),
    "dvts-sampled": dict(strategy="dvts"),
    "beam-orm": dict(verifier_kind="orm"),
    "dvts-orm-min": dict(strategy="dvts", verifier_kind="orm", aggregation="min"),
    "beam-lookahead": dict(lookahead=1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_compiled_search_equals_reference(models, case):
    cfg = config(**CASES[case])
    compiled, reference = both(models, cfg)
    assert_exercised(compiled, cfg)
    if cfg.rule.greedy:  # both greedy paths reach a stop id: the search ends before `depth`
        assert compiled.finished.all() and compiled.steps < cfg.depth
    assert_same(compiled, reference)


def test_thinking_budget_forcing_equals_reference(models):
    """`</think>` forced at the budget (Muennighoff et al. 2025) the same way in both."""
    cfg = config(budget=ThinkingBudget(THINK_START, THINK_END, max_thinking_tokens=6))
    compiled, reference = both(models, cfg, prompts=THINKING_PROMPTS, lengths=LENGTHS + 1)
    assert_exercised(compiled, cfg)
    assert (compiled.thinking_tokens == 6).any() and (compiled.tokens == THINK_END).any()
    assert_same(compiled, reference)


def test_budget_reached_at_a_delimiter_still_emits_think_end(models):
    """A row that ended its step at the delimiter keeps its budget state while others decode, so when
    its thinking reaches the budget the forced `</think>` is emitted in its next step."""
    cfg = config(
        n=8, step_tokens=6, depth=3, budget=ThinkingBudget(THINK_START, THINK_END, max_thinking_tokens=8)
    )
    compiled, reference = both(models, cfg, prompts=THINKING_PROMPTS, lengths=LENGTHS + 1)
    assert_same(compiled, reference)


def test_delimiter_is_not_an_attempt_to_end_thinking(models):
    """Below min_thinking_tokens the delimiter still ends a step: only stop ids and `</think>` are
    attempts to end thinking that the continuation cue replaces."""
    # One problem, greedy, beams in lockstep: no row idles while another decodes (the bug above).
    budget = ThinkingBudget(THINK_START, THINK_END, min_thinking_tokens=8, cue_ids=(30,))
    cfg = config(rule=GREEDY, n=2, m=2, delimiter_id=47, budget=budget)
    compiled, reference = both(models, cfg, prompts=THINKING_PROMPTS[:1], lengths=LENGTHS[:1] + 1)
    assert (reference.tokens == 47).any()
    assert_same(compiled, reference)


SELF_CASES = {
    "best_of_n": dict(strategy="best_of_n", m=1),
    "beam": dict(),
    "dvts-min": dict(strategy="dvts", aggregation="min"),
}


@pytest.mark.parametrize("case", list(SELF_CASES))
def test_self_verifier_equals_reference(models, case):
    """`verifier_kind="self"`: the compiled search reads the sampler's own log-probs; the reference
    recomputes them from the whole prefix, so both rank the same beams."""
    policy, params, _, _ = models
    cfg = config(verifier_kind="self", **SELF_CASES[case])
    compiled, reference = both((policy, params, None, None), cfg)
    assert_exercised(compiled, cfg)
    assert (
        (compiled.scores > 0).all() and (compiled.scores < 1).any() and (compiled.verifier_tokens == 0).all()
    )
    assert_same(compiled, reference)


def test_self_readings_by_hand():
    logprobs = np.log(
        np.array([[0.5, 0.25, 0.9, 1.0], [0.8, 0.1, 0.6, 1.0], [0.3, 1.0, 1.0, 1.0]], np.float32)
    )
    forced = np.array([[0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]], bool)  # row 1's 0.1 was forced
    lengths = np.array([3, 3, 1], np.int32)  # row 2 wrote one token, and it was forced
    probs, read = expand_lib.self_readings(logprobs, forced, lengths)
    np.testing.assert_array_equal(read, [[0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(np.asarray(probs)[:2, 2], [0.25, 0.6], rtol=1e-6)


def test_checker_readings_are_step_probabilities_by_hand():
    logprobs = np.log(np.array([[0.5, 0.25, 0.9, 1.0], [0.8, 0.1, 0.6, 1.0]], np.float32))
    forced = np.array([[0, 0, 0, 0], [0, 1, 0, 0]], bool)  # row 1's 0.1 was forced: left out
    probs, read = expand_lib.self_readings(logprobs, forced, np.array([3, 4], np.int32), reduce="sum")
    np.testing.assert_array_equal(read, [[0, 0, 1, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(
        np.asarray(probs)[[0, 1], [2, 3]], [0.5 * 0.25 * 0.9, 0.8 * 0.6 * 1.0], rtol=1e-6
    )


def test_self_verifier_needs_sampling():
    with pytest.raises(ConfigError, match="temperature > 0"):
        config(verifier_kind="self", rule=GREEDY)
    with pytest.raises(ConfigError, match="lookahead=0"):
        config(verifier_kind="self", lookahead=1)


CHECKER_CASES = {
    "best_of_n-greedy": dict(strategy="best_of_n", m=1, rule=GREEDY),
    "beam": dict(),
    "dvts-min": dict(strategy="dvts", aggregation="min"),
    "beam-lookahead": dict(lookahead=1),
}


@pytest.mark.parametrize("case", list(CHECKER_CASES))
def test_checker_verifier_equals_reference(models, case):
    """`verifier_kind="checker"`: another language model reads each step's probability; the compiled search
    feeds it the step through its cache after its logits of the path so far, the reference re-reads the
    whole prefix in one pass, so both score and rank the same beams."""
    policy, params, _, _ = models
    checker = Model(model_config("test-tiny", vocab_size=VOCAB, max_seq_len=128, tie_embeddings=False))
    cparams = checker.init_params(jax.random.key(5))
    cparams = {**cparams, "lm_head": cparams["lm_head"] * 6.0}  # readings well inside (0, 1)
    cfg = config(verifier_kind="checker", **CHECKER_CASES[case])
    compiled, reference = both((policy, params, checker, cparams), cfg)
    assert_exercised(compiled, cfg)
    assert (
        (compiled.scores > 0).all() and (compiled.scores < 0.5).any() and (compiled.verifier_tokens > 0).all()
    )
    assert_same(compiled, reference)
