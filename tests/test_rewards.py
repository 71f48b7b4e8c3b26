"""Rule rewards: host and device versions agree; failures are counted, never fatal; DAPO's overlong golden."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from rtc.data.tasks import get_task
from rtc.errors import ConfigError
from rtc.rewards import device, rule

# (completion text, gold answer): correct and well-formed as the host verifier sees them
CASES = [
    ("<think>3+4=7\n</think><answer>7</answer>", 7),
    ("<think>8-20=-12\n</think><answer>-12</answer>", -12),
    ("<think>x</think><answer>12</answer>", 13),
    ("<answer>7</answer>", 7),
    ("<think>x</think><answer>7", 7),
    ("<think>x</think><answer>7a</answer>", 7),
    ("<think>x<think></think><answer>7</answer>", 7),
    ("<think></think><answer>7</answer>", 7),
    ("<think>x</think><answer></answer>", 7),
    ("<think>x</think><answer>+5</answer>", 5),
    ("<think>x</think><answer>007</answer>", 7),
    ("<think>x</think><answer>-</answer>", 0),
    ("<think>x</think><answer>1-2</answer>", -1),
    ("<think>x</think>1<answer>3</answer>", 3),
    ("<think>x</think><answer><answer>3</answer>", 3),
]


def _encode(tokenizer, texts, width=24):
    tokens = np.zeros((len(texts), width), np.int32)
    lengths = np.zeros(len(texts), np.int32)
    for i, text in enumerate(texts):
        ids = tokenizer.encode(text)
        tokens[i, : len(ids)] = ids
        lengths[i] = len(ids)
    return jnp.asarray(tokens), jnp.asarray(lengths)


def test_device_rewards_equal_host_rewards(tokenizer):
    texts = [text for text, _ in CASES]
    records = [{"answer": str(gold)} for _, gold in CASES]
    tokens, lengths = _encode(tokenizer, texts)
    fns = rule.make_reward_fns(get_task("arithmetic"), max_tokens=24, overlong_cache=4)
    weights = (("correct", 1.0), ("format", 0.5), ("overlong", 1.0))
    host_total, host, failures = rule.score(
        fns, rule.RewardSpec(weights), texts, records, np.asarray(lengths)
    )
    total, ours = device.rewards(
        tokens,
        lengths,
        jnp.array([gold for _, gold in CASES], jnp.int32),
        device.answer_tables(tokenizer),
        device.SpecialIds.of(tokenizer),
        weights,
        max_tokens=24,
        overlong_cache=4,
    )
    for name in host:
        np.testing.assert_array_equal(np.asarray(ours[name]), host[name], err_msg=name)
    np.testing.assert_allclose(total, host_total)
    assert host["correct"].tolist()[:4] == [1, 1, 0, 1] and host["format"].tolist()[:4] == [1, 1, 1, 0]
    assert failures == {"correct": 0, "format": 0, "overlong": 0}


def test_device_parser_rejects_more_than_nine_digits(tokenizer):
    tokens, lengths = _encode(tokenizer, ["<think>x</think><answer>1234567890</answer>"])
    _, valid = device.parse_integer_answer(
        tokens, lengths, device.answer_tables(tokenizer), device.SpecialIds.of(tokenizer)
    )
    assert not bool(valid[0])  # documented: int32 answers only


def test_overlong_penalty_golden():
    # DAPO eq. 13 with L_max = 10, L_cache = 4: free up to 6, then (6 - L) / 4, and -1 past 10
    for length, value in ((5, 0.0), (6, 0.0), (8, -0.5), (10, -1.0), (11, -1.0)):
        assert rule.overlong_penalty(length, 10, 4) == pytest.approx(value)
        assert float(device.overlong_penalty(jnp.array([length]), 10, 4)[0]) == pytest.approx(value)


def test_failing_reward_functions_are_counted_and_scored_on_error():
    def raises(text, record, length):
        raise RuntimeError("verifier crashed")

    fns = {"ok": lambda t, r, n: 1.0, "raises": raises, "nan": lambda t, r, n: math.nan}
    spec = rule.RewardSpec.from_dict({"ok": 1.0, "raises": 1.0, "nan": 2.0}, on_error=-0.5)
    total, per_fn, failures = rule.score(fns, spec, ["a", "b"], [{}, {}], [1, 1])
    assert failures == {"ok": 0, "raises": 2, "nan": 2}
    np.testing.assert_allclose(per_fn["raises"], [-0.5, -0.5])
    np.testing.assert_allclose(total, [1.0 - 0.5 - 1.0] * 2)


def test_unknown_reward_name_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown reward function 'corect'"):
        rule.score(
            {"correct": lambda t, r, n: 1.0}, rule.RewardSpec.from_dict({"corect": 1.0}), ["a"], [{}], [1]
        )
