"""ORM / PRM heads: the token each score is read at, golden losses, aggregations."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtc.errors import ConfigError
from rtc.model import Model, model_config
from rtc.rewards import reward_model as rm

DELIM = 8


@dataclasses.dataclass(frozen=True)
class HeadAt:
    """A stand-in model whose head outputs a known logit per position: `values[b, t] = table[b, t]`."""

    table: tuple  # nested tuples f32[B, T] (hashable, so the model can be a static jit argument)

    def apply(self, params, tokens, positions, cache=None):
        return None, jnp.asarray(self.table, jnp.float32)[:, : tokens.shape[1]], cache


def _index_model(b: int, t: int) -> HeadAt:
    """values[b, t] = 100 b + t: the value read tells which position was read."""
    return HeadAt(tuple(tuple(float(100 * i + j) for j in range(t)) for i in range(b)))


# Row 0: [bos, q, \n | a, \n, b, \n, </answer>, pad]; row 1: [bos, q, q, \n | c, \n, pad, pad, pad].
TOKENS = np.array(
    [[2, 50, DELIM, 60, DELIM, 61, DELIM, 7, 0], [2, 50, 51, DELIM, 62, DELIM, 0, 0, 0]], np.int32
)
MASK = np.array([[0, 0, 0, 1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 1, 1, 0, 0, 0]], bool)


def test_orm_reads_the_last_completion_token():
    model = _index_model(2, 9)
    # Row 0's completion ends at index 7 (</answer>), row 1's at index 5: not 8 (pad), not 6.
    np.testing.assert_array_equal(rm.orm_logits(model, None, TOKENS, MASK), [7.0, 105.0])


def test_step_ends_are_the_completion_delimiters_only():
    expected = np.zeros_like(MASK)
    expected[0, [4, 6]] = True  # index 2 is the prompt's own delimiter
    expected[1, [5]] = True
    np.testing.assert_array_equal(rm.step_end_mask(TOKENS, MASK, DELIM), expected)


def test_prm_step_rewards_are_sigmoid_of_the_head_at_step_ends_jitted():
    model = HeadAt(((0.0, 0.0, 9.0, 0.0, math.log(3.0), 5.0, -math.log(3.0), 5.0, 5.0), (0.0,) * 9))
    fn = jax.jit(rm.prm_step_rewards, static_argnames=("model", "delimiter_id"))
    rewards, step_end = fn(model, None, TOKENS, MASK, delimiter_id=DELIM)
    # sigmoid(ln 3) = 3 / (3 + 1) = 0.75 at index 4; sigmoid(-ln 3) = 0.25 at index 6; row 1: sigmoid(0) = 0.5.
    expected = np.zeros((2, 9), np.float32)
    expected[0, 4], expected[0, 6], expected[1, 5] = 0.75, 0.25, 0.5
    np.testing.assert_allclose(rewards, expected, atol=1e-6)
    np.testing.assert_array_equal(step_end, rm.step_end_mask(TOKENS, MASK, DELIM))


def test_completion_without_delimiter_gets_no_step_reward():
    tokens = np.array([[2, 50, DELIM, 60, 61, 7]], np.int32)
    mask = np.array([[0, 0, 0, 1, 1, 1]], bool)
    rewards, step_end = rm.prm_step_rewards(_index_model(1, 6), None, tokens, mask, DELIM)
    assert not np.asarray(step_end).any() and not np.asarray(rewards).any()


def test_orm_loss_golden():
    model = HeadAt(((0.0, 0.0, 0.0), (0.0, 0.0, 2.0)))
    batch = {
        "tokens": np.zeros((2, 3), np.int32),
        "completion_mask": np.array([[0, 1, 0], [0, 1, 1]], bool),  # read at index 1 and 2
        "label": np.array([0.0, 1.0], np.float32),
    }
    loss, metrics = rm.orm_loss(None, batch, model)
    # Row 0: z = 0, y = 0: -log(1 - 1/2) = ln 2 = 0.693147. Row 1: z = 2, y = 1: log(1 + e^-2) = 0.126928.
    # Mean: (0.693147 + 0.126928) / 2 = 0.410038.
    assert float(loss) == pytest.approx(0.410038, abs=1e-6)
    assert float(metrics["accuracy"]) == 1.0  # z = 0 predicts "wrong" (row 0), z = 2 "right" (row 1)


def test_prm_loss_golden_ignores_positions_without_a_label():
    model = HeadAt(((50.0, 0.0, -50.0, math.log(3.0)),))
    batch = {
        "tokens": np.zeros((1, 4), np.int32),
        "step_labels": np.array([[0.0, 1.0, 1.0, 0.0]], np.float32),
        "step_mask": np.array([[0.0, 1.0, 0.0, 1.0]], np.float32),
    }
    loss, metrics = rm.prm_loss(None, batch, model)
    # Index 1: z = 0, y = 1: ln 2 = 0.693147. Index 3: p = 0.75, y = 0: -ln 0.25 = ln 4 = 1.386294.
    # Mean over the 2 labelled steps: 1.039721. Indices 0 and 2 (huge losses if read) are ignored.
    assert float(loss) == pytest.approx(1.039721, abs=1e-6)
    assert float(metrics["steps"]) == 2.0
    assert (
        float(metrics["accuracy"]) == 0.0
    )  # z = 0 says "bad" for a good step; p = 0.75 says "good" for a bad one


def test_soft_labels_in_the_prm_loss():
    model = HeadAt(((0.0,),))
    batch = {"tokens": np.zeros((1, 1), np.int32), "step_labels": np.full((1, 1), 0.25, np.float32)}
    loss, _ = rm.prm_loss(None, {**batch, "step_mask": np.ones((1, 1), np.float32)}, model)
    # p = 1/2: -(0.25 ln 0.5 + 0.75 ln 0.5) = ln 2.
    assert float(loss) == pytest.approx(math.log(2.0), abs=1e-6)


# Row 0: step probabilities 0.9, 0.5, 0.8 (and non-step values that must not count); row 1: no step.
PROBS = np.array([[0.1, 0.9, 0.3, 0.5, 0.8, 0.99], [0.7, 0.7, 0.7, 0.7, 0.7, 0.7]], np.float32)
ENDS = np.array([[0, 1, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0]], bool)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("last", 0.8),  # the last step
        ("min", 0.5),  # min(0.9, 0.5, 0.8)
        ("product", 0.36),  # 0.9 * 0.5 * 0.8
        ("mean", 2.2 / 3),  # (0.9 + 0.5 + 0.8) / 3 = 0.733333
    ],
)
def test_aggregations_on_a_hand_example(name, expected):
    scores = rm.aggregate(name, PROBS, ENDS)
    np.testing.assert_allclose(scores, [expected, 0.0], atol=1e-6)  # no step: 0, below any solution


def test_unknown_aggregation_is_named():
    with pytest.raises(ConfigError, match="unknown PRM aggregation 'max'"):
        rm.aggregate("max", PROBS, ENDS)


# --- the real transformer -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def head_model():
    model = Model(model_config("test-tiny", vocab_size=64, max_seq_len=32, scalar_head=True))
    params = model.init_params(jax.random.key(0))
    params["value_head"] = jax.random.normal(jax.random.key(1), params["value_head"].shape)
    return model, params


def test_orm_score_sees_the_whole_completion_and_nothing_after(head_model):
    model, params = head_model
    tokens = np.array([[2, 10, DELIM, 20, 21, 22, 0, 0]], np.int32)
    mask = np.array([[0, 0, 0, 1, 1, 1, 0, 0]], bool)
    score = rm.orm_logits(model, params, tokens, mask)
    after = tokens.copy()
    after[0, 6:] = 33  # tokens after the completion cannot change its score (causal attention)
    np.testing.assert_allclose(rm.orm_logits(model, params, after, mask), score, atol=1e-6)
    last = tokens.copy()
    last[0, 5] = 23  # the last completion token must change it
    assert abs(float(rm.orm_logits(model, params, last, mask)[0] - score[0])) > 1e-4


def test_init_from_policy_copies_the_trunk_and_zeroes_the_head(head_model):
    model, _ = head_model
    policy = Model(dataclasses.replace(model.config, scalar_head=False))
    policy_params = policy.init_params(jax.random.key(5))
    params = rm.init_from_policy(model, policy_params, jax.random.key(6))
    assert float(jnp.abs(params["value_head"]).sum()) == 0.0 and float(params["value_bias"]) == 0.0
    np.testing.assert_array_equal(params["embedding"], policy_params["embedding"])
    assert params["embedding"] is not policy_params["embedding"]  # a copy: the update donates it
    wider = Model(dataclasses.replace(policy.config, num_layers=3)).init_params(jax.random.key(0))
    with pytest.raises(ConfigError, match="must name the policy's architecture"):
        rm.init_from_policy(model, wider, jax.random.key(6))


def test_reward_model_without_a_head_is_named():
    model = Model(model_config("test-tiny", vocab_size=64, max_seq_len=32))
    with pytest.raises(ConfigError, match="no scalar head"):
        rm.head_logits(model, model.init_params(jax.random.key(0)), np.zeros((1, 4), np.int32))
