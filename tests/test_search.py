"""The compiled search: incremental scores equal re-scoring, best-of-1 equals sampling, bad input, caps."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtc.errors import ConfigError
from rtc.model import Model, model_config
from rtc.rewards import reward_model as rm
from rtc.sampling.budget import ThinkingBudget
from rtc.sampling.rules import SamplingRule
from rtc.sampling.sampler import SamplerConfig, generate
from rtc.search import runner
from rtc.search.config import SearchConfig, from_effort

# A vocabulary of 12 makes a random model emit the delimiter (3) and the stop id (2) often enough
# that steps end at delimiters and some branches finish early.
VOCAB, STOP, DELIM, THINK_START, THINK_END = 12, 2, 3, 4, 5
PROMPTS = [[1, 6, 7, 8], [1, 9, 10, 11, 6, 7, 8]]


@pytest.fixture(scope="module")
def models():
    policy = Model(model_config("test-tiny", vocab_size=VOCAB, max_seq_len=128))
    params = policy.init_params(jax.random.key(0))
    verifier = Model(dataclasses.replace(policy.config, scalar_head=True))
    vparams = verifier.init_params(jax.random.key(1))
    vparams = {**vparams, "value_head": jax.random.normal(jax.random.key(2), vparams["value_head"].shape)}
    return policy, params, verifier, vparams


def config(strategy="beam", **overrides):
    fields = dict(
        strategy=strategy,
        n=4,
        m=2,
        depth=4,
        step_tokens=5,
        stop_ids=(STOP,),
        delimiter_id=DELIM,
        rule=SamplingRule(temperature=1.0),
    )
    fields.update(overrides)
    return SearchConfig(**fields)


def rescored(verifier, vparams, prompts, result, cfg):
    """f32[B, K]: each final path scored from scratch by the reward model's own functions."""
    out = np.zeros(result.scores.shape, np.float32)
    for b, prompt in enumerate(prompts):
        for i in range(result.scores.shape[1]):
            path = result.tokens[b, i, : result.lengths[b, i]].tolist()
            tokens = jnp.array([prompt + path])
            mask = jnp.array([[False] * len(prompt) + [True] * len(path)])
            if cfg.verifier_kind == "prm":
                probs, step_end = rm.prm_step_rewards(verifier, vparams, tokens, mask, cfg.delimiter_id)
                out[b, i] = float(rm.aggregate(cfg.aggregation, probs, step_end)[0])
    return out


@pytest.mark.parametrize(
    "strategy, aggregation",
    [("best_of_n", "product"), ("beam", "last"), ("beam", "min"), ("dvts", "mean"), ("dvts", "product")],
)
def test_incremental_scores_equal_rescoring(models, strategy, aggregation):
    policy, params, verifier, vparams = models
    cfg = config(strategy, aggregation=aggregation)
    result = runner.run(policy, params, verifier, vparams, PROMPTS, jax.random.key(3), cfg)
    assert (result.tokens == DELIM).any(), "no step ended at a delimiter: the test would prove little"
    np.testing.assert_allclose(result.scores, rescored(verifier, vparams, PROMPTS, result, cfg), atol=1e-5)


def test_best_of_one_equals_sampling(models):
    policy, params, verifier, vparams = models
    cfg = config("best_of_n", n=1, m=1, depth=1, step_tokens=20)
    rng = jax.random.key(5)
    result = runner.run(policy, params, verifier, vparams, PROMPTS, rng, cfg)
    sampled = generate(
        policy,
        params,
        PROMPTS,
        jax.random.fold_in(rng, 0),
        SamplerConfig(max_new_tokens=20, stop_ids=(STOP,), rule=SamplingRule(temperature=1.0)),
    )
    np.testing.assert_array_equal(result.tokens[:, 0], np.asarray(sampled.tokens))
    np.testing.assert_array_equal(result.lengths[:, 0], np.asarray(sampled.lengths))


def test_best_of_n_rows_are_independent_samples(models):
    """N rows of one prompt equal sampling that prompt N times in one batch."""
    policy, params, verifier, vparams = models
    cfg = config("best_of_n", n=3, m=1, depth=1, step_tokens=12)
    rng = jax.random.key(6)
    result = runner.run(policy, params, None, None, PROMPTS, rng, cfg)
    repeated = [p for p in PROMPTS for _ in range(3)]
    sampled = generate(
        policy,
        params,
        repeated,
        jax.random.fold_in(rng, 0),
        SamplerConfig(max_new_tokens=12, stop_ids=(STOP,), rule=SamplingRule(temperature=1.0)),
    )
    np.testing.assert_array_equal(result.tokens.reshape(6, -1), np.asarray(sampled.tokens))
    assert (result.scores == 0).all() and (result.verifier_tokens == 0).all()


def test_other_problems_do_not_leak(models):
    """Problems of different prompt lengths share one batch: a problem's search does not depend on
    the other problem's prompt or on the padded width."""
    policy, params, verifier, vparams = models
    cfg = config("beam")
    a = runner.run(policy, params, verifier, vparams, [PROMPTS[0], PROMPTS[1]], jax.random.key(7), cfg)
    b = runner.run(policy, params, verifier, vparams, [PROMPTS[0], [1, 6] * 10], jax.random.key(7), cfg)
    np.testing.assert_array_equal(a.tokens[0], b.tokens[0])
    np.testing.assert_allclose(a.scores[0], b.scores[0], atol=1e-6)


def test_beam_keeps_the_best_and_counts_compute(models):
    policy, params, verifier, vparams = models
    cfg = config("beam", n=4, m=2, depth=3)
    result = runner.run(policy, params, verifier, vparams, PROMPTS, jax.random.key(8), cfg)
    # the chosen branch is finished if any is, and the best-scoring among those
    for b in range(2):
        candidates = ~result.duplicate[b]
        pool = candidates & result.finished[b] if (candidates & result.finished[b]).any() else candidates
        assert result.scores[b, result.best[b]] == result.scores[b][pool].max()
    # caps: a path holds at most depth x step_tokens tokens; pruned branches count as generated
    assert (result.lengths <= cfg.depth * cfg.step_tokens).all()
    assert (result.generated_tokens >= result.lengths.max(axis=1)).all()
    assert (result.verifier_tokens == result.generated_tokens + result.prompt_tokens).all()
    policy_flops = runner.forward_flops_per_token(policy, params)
    verifier_flops = runner.forward_flops_per_token(verifier, vparams)
    assert policy_flops == 2 * sum(x.size for x in jax.tree.leaves(params))  # tied: embedding counted once
    np.testing.assert_allclose(
        result.flops,
        policy_flops * (result.prompt_tokens + result.generated_tokens)
        + verifier_flops * result.verifier_tokens,
    )


def test_every_branch_finishing_ends_the_search_early(models):
    policy, params, verifier, vparams = models
    # greedy continues with the prompt's last token, so making it the stop id ends every branch at once
    cfg = config("beam", stop_ids=(8,), rule=SamplingRule(temperature=0.0), depth=6)
    result = runner.run(policy, params, verifier, vparams, [PROMPTS[0]], jax.random.key(9), cfg)
    assert result.steps == 1
    assert result.finished.all() and (result.lengths == 1).all()
    assert not result.duplicate.any()  # a group that has all finished is not pruned: every path stays
    assert result.best[0] == 0


def test_verifier_nan_is_skipped_and_counted(models):
    policy, params, verifier, vparams = models
    nan_params = {**vparams, "value_bias": jnp.array(jnp.nan)}
    cfg = config("beam", verifier_kind="orm")  # an ORM reads every step, so every problem sees NaN
    result = runner.run(policy, params, verifier, nan_params, PROMPTS, jax.random.key(10), cfg)
    assert (result.scores == 0).all()  # no finite step reading: every path scores 0
    assert (result.verifier_nan > 0).all()
    assert np.isfinite(result.scores).all() and (result.best >= 0).all()


def test_thinking_budget_caps_every_strategy(models):
    policy, params, verifier, vparams = models
    budget = ThinkingBudget(THINK_START, THINK_END, max_thinking_tokens=6)
    prompts = [p + [THINK_START] for p in PROMPTS]  # the prompt opens the thinking block
    for strategy in ("best_of_n", "beam", "dvts", "mcts"):
        cfg = config(strategy, budget=budget, depth=4, step_tokens=5)
        result = runner.run(policy, params, verifier, vparams, prompts, jax.random.key(11), cfg)
        assert (result.thinking_tokens <= 6).all(), strategy
        for rows in result.completions():
            for path in rows:
                if len(path) > 6:  # thinking ended by the model or forced at the budget
                    assert THINK_END in path[:7], (strategy, path)


def test_bad_configs_are_named():
    with pytest.raises(ConfigError, match="not divisible by beam width"):
        config("beam", n=6, m=4)
    with pytest.raises(ConfigError, match="below one search step"):
        config("beam", budget=ThinkingBudget(THINK_START, THINK_END, max_thinking_tokens=3), step_tokens=5)
    with pytest.raises(ConfigError, match="unknown search strategy"):
        config("greedy")
    config("best_of_n", n=6, m=4, budget=ThinkingBudget(THINK_START, THINK_END, max_thinking_tokens=0))


def test_prompt_too_long_is_an_error(models):
    policy, params, verifier, vparams = models
    with pytest.raises(ConfigError, match="exceeds the model's context"):
        runner.run(policy, params, verifier, vparams, [[1] * 120], jax.random.key(0), config("beam"))


def test_reasoning_effort_spans_compute():
    base = dict(step_tokens=8, stop_ids=(STOP,), delimiter_id=DELIM)
    budget = ThinkingBudget(THINK_START, THINK_END)
    low = from_effort("low", "beam", max_depth=8, max_thinking_tokens=64, budget=budget, **base)
    high = from_effort("high", "beam", max_depth=8, max_thinking_tokens=64, budget=budget, **base)
    assert (low.n, low.m, low.depth, low.budget.max_thinking_tokens) == (2, 2, 4, 16)
    assert (high.n, high.m, high.depth, high.budget.max_thinking_tokens) == (16, 4, 8, 64)
    with pytest.raises(ConfigError, match="unknown reasoning_effort"):
        from_effort("max", "beam", max_depth=8, max_thinking_tokens=64, **base)
