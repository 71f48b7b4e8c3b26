"""The policy as its own verifier: teacher-forced token log-probs and the least likely written token; a
checker's score, the probability of the whole completion."""

import jax
import numpy as np
import pytest

from rtc.errors import ConfigError
from rtc.rewards.self_check import checker_scores, checker_step_rewards, self_check_scores, token_logprobs


def test_token_logprobs_and_min_probability_by_hand(tiny_model):
    model, params = tiny_model
    tokens = np.array([[1, 5, 9, 3, 7, 0], [1, 4, 4, 4, 2, 8], [1, 6, 2, 2, 2, 2]], np.int32)
    mask = np.array(
        [[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1], [0, 0, 0, 1, 0, 0]], bool
    )  # completions of 3, 5 and 1 tokens
    logits = np.asarray(
        model.apply(params, tokens, np.broadcast_to(np.arange(6), tokens.shape))[0], np.float64
    )
    logp_all = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = np.zeros(tokens.shape)
    for b in range(3):
        for t in range(1, 6):  # token t is predicted at position t - 1
            expected[b, t] = logp_all[b, t - 1, tokens[b, t]]
    np.testing.assert_allclose(np.asarray(token_logprobs(model, params, tokens)), expected, atol=1e-5)
    want = [np.exp(expected[b][mask[b]].min()) for b in range(3)]
    # batch size 2: the second batch is padded, the padding's scores are dropped
    np.testing.assert_allclose(self_check_scores(model, params, tokens, mask, 2), want, rtol=1e-5)
    whole = [np.exp(expected[b][mask[b]].sum()) for b in range(3)]  # the product of the probabilities
    np.testing.assert_allclose(checker_scores(model, params, tokens, mask, 2), whole, rtol=1e-5)


def test_an_unlikely_written_token_scores_lower(tiny_model):
    model, params = tiny_model
    prompt = np.array([[1, 5, 9, 3, 7, 0]], np.int32)
    logits = np.asarray(model.apply(params, prompt, np.arange(6)[None])[0])[0, 3]  # predicts token 4
    likely, unlikely = int(np.argmax(logits)), int(np.argmin(logits))
    tokens = np.repeat(prompt, 2, axis=0)
    tokens[0, 4], tokens[1, 4] = likely, unlikely
    mask = np.zeros(tokens.shape, bool)
    mask[:, 4] = True
    scores = self_check_scores(model, params, tokens, mask, 2)
    assert scores[0] > scores[1]
    np.testing.assert_allclose(scores[0], np.max(np.asarray(jax.nn.softmax(logits))), rtol=1e-5)


def test_checker_step_rewards_by_hand(tiny_model):
    """Each step's reward is the product of the checker's probabilities of the step's tokens (after the
    previous delimiter, through its own), placed at its delimiter; the answer after the last delimiter
    and the prompt's own delimiter score nothing."""
    model, params = tiny_model
    d = 3  # the delimiter
    tokens = np.array([[1, 3, 5, 9, 3, 7, 3, 8, 0], [1, 4, 3, 6, 6, 3, 2, 0, 0]], np.int32)
    mask = np.array([[0, 0, 1, 1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1, 1, 0, 0]], bool)
    logp = np.asarray(token_logprobs(model, params, tokens), np.float64)
    expected = np.zeros(tokens.shape)
    expected[0, 4] = np.exp(logp[0, 2:5].sum())  # step "5 9 3"
    expected[0, 6] = np.exp(logp[0, 5:7].sum())  # step "7 3"; "8" is the answer, unread
    expected[1, 2] = np.exp(logp[1, 1:3].sum())  # step "4 3"
    expected[1, 5] = np.exp(logp[1, 3:6].sum())  # step "6 6 3"
    rewards, ends = checker_step_rewards(model, params, tokens, mask, d)
    np.testing.assert_array_equal(np.asarray(ends), expected > 0)
    np.testing.assert_allclose(np.asarray(rewards), expected, rtol=1e-5)
    # reduce="mean": the geometric mean of the step's token probabilities, the same steps
    expected[0, 4] = np.exp(logp[0, 2:5].mean())
    expected[0, 6] = np.exp(logp[0, 5:7].mean())
    expected[1, 2] = np.exp(logp[1, 1:3].mean())
    expected[1, 5] = np.exp(logp[1, 3:6].mean())
    rewards, ends = checker_step_rewards(model, params, tokens, mask, d, reduce="mean")
    np.testing.assert_array_equal(np.asarray(ends), expected > 0)
    np.testing.assert_allclose(np.asarray(rewards), expected, rtol=1e-5)
    with pytest.raises(ConfigError, match="'sum' or 'mean'"):
        checker_step_rewards(model, params, tokens, mask, d, reduce="max")
