"""Golden values, computed by hand from the papers, for every advantage, loss mode, clip and KL estimator."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtc.errors import ConfigError
from rtc.rl import advantages as adv
from rtc.rl import losses


def test_grpo_sample_and_population_std():
    r = jnp.array([[1.0, 0.0, 0.0, 1.0]])
    # mean 0.5; sample std sqrt((4 * 0.25) / 3) = 0.57735 -> 0.5 / 0.57735 = 0.866025
    np.testing.assert_allclose(
        adv.grpo(r, eps=0.0, ddof=1), [[0.866025, -0.866025, -0.866025, 0.866025]], 1e-5
    )
    # population std 0.5 -> +-1
    np.testing.assert_allclose(adv.grpo(r, eps=0.0, ddof=0), [[1.0, -1.0, -1.0, 1.0]], 1e-6)


def test_equal_reward_groups_get_zero_advantage_and_no_nan():
    r = jnp.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    for name in adv.ADVANTAGES:
        out = adv.get_advantage_fn(name)(r)
        assert np.all(np.isfinite(out)) and np.all(out == 0.0), name
    np.testing.assert_array_equal(
        adv.zero_variance_groups(jnp.array([[1.0, 1.0], [0.0, 1.0]])), [True, False]
    )


def test_dr_grpo_rloo_batch_std():
    r = jnp.array([[1.0, 0.0, 0.0, 1.0]])
    np.testing.assert_allclose(adv.dr_grpo(r), [[0.5, -0.5, -0.5, 0.5]])
    # RLOO: 1 - mean(0, 0, 1) = 2/3; 0 - mean(1, 0, 1) = -2/3
    np.testing.assert_allclose(adv.rloo(r), [[2 / 3, -2 / 3, -2 / 3, 2 / 3]], 1e-6)
    # batch std of [1, 0, 1, 1] (ddof 1) = sqrt(0.75 / 3) = 0.5; centered [[.5, -.5], [0, 0]]
    r2 = jnp.array([[1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(adv.batch_std(r2, eps=0.0), [[1.0, -1.0], [0.0, 0.0]], 1e-6)


def test_unknown_estimator_and_rloo_group_of_one():
    with pytest.raises(ConfigError, match="unknown advantage estimator 'ppo2'"):
        adv.get_advantage_fn("ppo2")
    with pytest.raises(ConfigError, match="at least 2"):
        adv.rloo(jnp.ones((2, 1)))


def test_process_advantages_deepseekmath():
    # One group, two completions of 4 tokens. Step rewards: completion 0 has 1.0 at t=1 and 0.5 at t=3,
    # completion 1 has 0.0 at t=3. R = {1, 0.5, 0}: mean 0.5, population std sqrt(0.5/3) = 0.408248;
    # normalised 1.224745, 0, -1.224745. A_t = sum of normalised rewards of steps ending at or after t.
    rewards = jnp.array([[[0.0, 1.0, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0]]])
    ends = jnp.array([[[False, True, False, True], [False, False, False, True]]])
    mask = jnp.ones_like(ends)
    out = adv.process_advantages(rewards, ends, mask, eps=0.0)
    k = 1.224745
    np.testing.assert_allclose(out, [[[k, k, 0.0, 0.0], [-k, -k, -k, -k]]], 1e-5)


def _gae_loop(rewards, values, gamma, lam):
    """A hand-unrolled GAE over one row (no mask)."""
    t_len = len(rewards)
    out, next_adv = [0.0] * t_len, 0.0
    for t in reversed(range(t_len)):
        next_value = values[t + 1] if t + 1 < t_len else 0.0
        delta = rewards[t] + gamma * next_value - values[t]
        next_adv = delta + gamma * lam * next_adv
        out[t] = next_adv
    return out


def test_gae_golden_and_masked():
    # delta_2 = 1 - .7 = .3; delta_1 = .7 - .6 = .1; delta_0 = .6 - .5 = .1
    # A_2 = .3; A_1 = .1 + .5 * .3 = .25; A_0 = .1 + .5 * .25 = .225
    r, v = jnp.array([[0.0, 0.0, 1.0]]), jnp.array([[0.5, 0.6, 0.7]])
    a, ret = adv.gae(r, v, jnp.ones((1, 3), bool), gamma=1.0, lam=0.5)
    np.testing.assert_allclose(a, [[0.225, 0.25, 0.3]], 1e-6)
    np.testing.assert_allclose(ret, [[0.725, 0.85, 1.0]], 1e-6)
    # The same completion after a 1-token prompt and followed by padding.
    r2 = jnp.array([[9.0, 0.0, 0.0, 1.0, 9.0]])
    v2 = jnp.array([[9.0, 0.5, 0.6, 0.7, 9.0]])
    m2 = jnp.array([[False, True, True, True, False]])
    a2, _ = adv.gae(r2, v2, m2, gamma=1.0, lam=0.5)
    np.testing.assert_allclose(a2, [[0.0, 0.225, 0.25, 0.3, 0.0]], 1e-6)


def test_gae_equals_loop_on_random_values():
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=(3, 7)), rng.normal(size=(3, 7))
    a, _ = adv.gae(jnp.array(r), jnp.array(v), jnp.ones((3, 7), bool), gamma=0.9, lam=0.8)
    expected = [_gae_loop(r[i], v[i], 0.9, 0.8) for i in range(3)]
    np.testing.assert_allclose(a, expected, rtol=1e-5, atol=1e-6)


def test_kl_estimators():
    # d = log(0.25 / 0.5) = -0.693147: k1 = 0.693147, k2 = d^2 / 2 = 0.240227, k3 = e^d - d - 1 = 0.193147
    logp, ref = jnp.log(jnp.array([0.5])), jnp.log(jnp.array([0.25]))
    for name, value in (("k1", 0.693147), ("k2", 0.240227), ("k3", 0.193147)):
        np.testing.assert_allclose(losses.kl_penalty(logp, ref, name), [value], 1e-5)
    # k3 is never negative and zero when the policies agree
    assert float(losses.kl_penalty(logp, logp, "k3")[0]) == 0.0


def test_aggregations():
    per_token = jnp.array([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = jnp.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert float(losses.aggregate(per_token, mask, "token_mean")) == pytest.approx(10 / 4)
    assert float(losses.aggregate(per_token, mask, "sequence_mean")) == pytest.approx((2 + 4) / 2)
    assert float(losses.aggregate(per_token, mask, "constant", max_tokens=3)) == pytest.approx(10 / 6)
    # an empty row (a masked zero-variance group) is left out of the sequence count
    empty = jnp.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    assert float(losses.aggregate(per_token, empty, "sequence_mean")) == pytest.approx(2.0)


def _surrogate(log_ratio, advantage, **kw):
    cfg = losses.PolicyLossConfig(**kw)
    ratio = jnp.exp(jnp.array([[log_ratio]]))
    loss, low, high = losses.clipped_surrogate(ratio, jnp.array([[advantage]]), cfg)
    return float(loss[0, 0]), bool(low[0, 0]), bool(high[0, 0])


def test_clipping_golden():
    # r = 1.5, A = 1: clip to 1.2 -> loss -min(1.5, 1.2) = -1.2, clipped high
    assert _surrogate(math.log(1.5), 1.0) == pytest.approx((-1.2, False, True))
    # clip-higher (DAPO) eps_high = 0.6: 1.5 is inside the range
    assert _surrogate(math.log(1.5), 1.0, epsilon_high=0.6) == pytest.approx((-1.5, False, False))
    # r = 0.5, A = -1: -min(-0.5, -0.8) = 0.8, clipped low
    assert _surrogate(math.log(0.5), -1.0) == pytest.approx((0.8, True, False))
    # dual clip c = 3, r = 4, A = -1: the PPO loss 4 is capped at -c A = 3
    assert _surrogate(math.log(4.0), -1.0, dual_clip=3.0)[0] == pytest.approx(3.0)
    assert _surrogate(math.log(4.0), -1.0)[0] == pytest.approx(4.0)


def test_gradient_is_zero_where_clipped():
    cfg = losses.PolicyLossConfig(aggregation="token_mean")
    old = jnp.zeros((1, 3))
    logp = jnp.log(jnp.array([[1.5, 0.5, 1.1]]))
    advantages = jnp.array([[1.0, -1.0, 1.0]])
    mask = jnp.ones((1, 3))
    grad = jax.grad(lambda lp: losses.policy_loss(lp, old, advantages, mask, cfg)[0])(logp)
    # clipped high, clipped low, and inside the clip range: d(-r A)/d logp = -r A / 3 tokens
    np.testing.assert_allclose(grad, [[0.0, 0.0, -1.1 / 3]], 1e-6)


def test_sequence_level_ratio_gspo():
    # per-token log ratios [log 2, 0]: the sequence ratio is exp(log 2 / 2) = sqrt 2 on both tokens
    ratio = losses.importance_ratio(
        jnp.array([[math.log(2.0), 0.0]]), jnp.zeros((1, 2)), jnp.ones((1, 2)), "sequence"
    )
    np.testing.assert_allclose(ratio, [[math.sqrt(2), math.sqrt(2)]], 1e-6)


def test_policy_loss_with_kl_and_metrics():
    cfg = losses.PolicyLossConfig(kl_coef=0.5, kl_estimator="k1", aggregation="token_mean")
    logp = jnp.log(jnp.array([[0.5, 0.5]]))
    loss, metrics = losses.policy_loss(
        logp,
        logp,
        jnp.array([[1.0, -1.0]]),
        jnp.array([[1.0, 1.0]]),
        cfg,
        ref_logp=jnp.log(jnp.array([[0.25, 0.25]])),
    )
    # ratio 1: surrogate mean (-1 + 1) / 2 = 0; k1 = 0.693147 on both tokens; loss = 0.5 * 0.693147
    assert float(loss) == pytest.approx(0.5 * 0.693147, rel=1e-5)
    assert float(metrics["kl"]) == pytest.approx(0.693147, rel=1e-5)
    assert float(metrics["clip_fraction_low"]) == 0.0 and float(metrics["ratio_mean"]) == pytest.approx(1.0)


def test_value_loss_clipped():
    # V = 1, V_old = 0.5, R = 2, c = 0.2: (1 - 2)^2 = 1; clipped V = 0.7: (0.7 - 2)^2 = 1.69 -> 0.5 * 1.69
    loss, fraction = losses.value_loss(
        jnp.array([[1.0]]), jnp.array([[0.5]]), jnp.array([[2.0]]), jnp.ones((1, 1)), clip=0.2
    )
    assert float(loss) == pytest.approx(0.845) and float(fraction) == 1.0
    unclipped, _ = losses.value_loss(
        jnp.array([[1.0]]), jnp.array([[0.5]]), jnp.array([[2.0]]), jnp.ones((1, 1)), None
    )
    assert float(unclipped) == pytest.approx(0.5)


def test_bad_loss_config_names_the_field():
    with pytest.raises(ConfigError, match="aggregation 'mean'"):
        losses.PolicyLossConfig(aggregation="mean")
    with pytest.raises(ConfigError, match="dual_clip"):
        losses.PolicyLossConfig(dual_clip=0.5)


def test_token_logprobs_and_entropy():
    logits = jnp.log(jnp.array([[[0.5, 0.25, 0.25]]]))
    logp, entropy = losses.token_logprobs(logits, jnp.array([[1]]), temperature=1.0)
    assert float(logp[0, 0]) == pytest.approx(math.log(0.25), rel=1e-6)
    # H = -(0.5 ln 0.5 + 2 * 0.25 ln 0.25) = 1.039721
    assert float(entropy[0, 0]) == pytest.approx(1.039721, rel=1e-5)
