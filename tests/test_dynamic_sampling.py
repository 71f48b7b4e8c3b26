"""DAPO's dynamic sampling and overlong filtering: hand examples, and a run whose rounds resume exactly."""

import jax.numpy as jnp
import numpy as np
import pytest

from helpers import assert_trees_close
from rtc import recipes
from rtc.errors import ConfigError
from rtc.metrics import read_metrics
from rtc.rl import draws, dynamic_sampling
from rtc.rl.rollout import on_targets
from test_rl import grpo_config


def test_select_groups_takes_informative_groups_first_in_the_order_drawn():
    # informative: [F, T, F, T, T] (group 0 all 0, group 2 all 1)
    rewards = jnp.array([[0, 0], [0, 1], [1, 1], [1, 0], [0.5, 1]], jnp.float32)
    idx, informative = dynamic_sampling.select_groups(rewards, 2)
    assert idx.tolist() == [1, 3] and informative.tolist() == [True, True]
    idx, informative = dynamic_sampling.select_groups(rewards, 4)  # a shortfall: filled by group 0
    assert idx.tolist() == [1, 3, 4, 0] and informative.tolist() == [True, True, True, False]
    with pytest.raises(ValueError, match="cannot select 6 groups from 5"):
        dynamic_sampling.select_groups(rewards, 6)


def test_group_rows_and_take_rows():
    rows = dynamic_sampling.group_rows(jnp.array([2, 0]), 3)
    assert rows.tolist() == [6, 7, 8, 0, 1, 2]
    tree = {"a": jnp.arange(9), "b": jnp.arange(18).reshape(9, 2)}
    taken = dynamic_sampling.take_rows(tree, rows)
    assert taken["a"].tolist() == [6, 7, 8, 0, 1, 2] and taken["b"][0].tolist() == [12, 13]


def test_truncated_rows_are_full_without_a_stop_token():
    stop = (9,)
    tokens = jnp.array([[5, 9, 0], [5, 6, 7], [5, 6, 9], [5, 0, 0]])
    lengths = jnp.array([2, 3, 3, 1])
    # row 1 ran out of room; row 2 is full but stopped; rows 0 and 3 ended early
    assert dynamic_sampling.truncated(tokens, lengths, stop).tolist() == [False, True, False, False]


def test_sampler_logprobs_move_onto_the_target_indices():
    # prompt length 2: completion token j is token 2 + j, predicted at target index 1 + j
    values = jnp.array([[-1.0, -2.0, -3.0]])
    moved = on_targets(values, jnp.array([2]), 5)  # T = Pp + N - 1 with Pp = 3
    np.testing.assert_allclose(moved, [[0.0, -1.0, -2.0, -3.0, 0.0]])


def test_dynamic_sampling_settings_are_checked():
    config = grpo_config("tiny")
    config.rl.update(dynamic_sampling=True, oversample=1, max_rounds=1)
    with pytest.raises(ConfigError, match="more than one batch"):
        draws.draws_per_step(config)
    config.rl.update(oversample=2, max_rounds=3)
    assert draws.draws_per_step(config) == (2 * config.rl.prompts_per_step, 3)


@pytest.mark.parametrize("device_rewards", ["on", "off"])
def test_dynamic_sampling_run_reports_its_draws_and_resumes_exactly(
    tmp_path, data_dir, sft_run, device_rewards
):
    """On-device rewards with one round: one program; host rewards: rounds until the batch is full."""
    config = grpo_config("tiny")
    config.data_dir = str(data_dir)
    config.policy_workdir = str(sft_run)
    rounds = 1 if device_rewards == "on" else 3
    config.rl.update(
        num_steps=4,
        checkpoint_every=2,
        device_rewards=device_rewards,
        dynamic_sampling=True,
        oversample=2 if device_rewards == "on" else 1,
        max_rounds=rounds,
        overlong_filter=True,
    )
    recipes.rl_recipe(config, tmp_path / "whole")
    train = [m for m in read_metrics(tmp_path / "whole") if "train/loss" in m]
    assert [m["step"] for m in train] == [1, 2, 3, 4]
    for m in train:
        drawn = m["train/draw_groups_per_trained"]
        assert drawn == 2.0 if device_rewards == "on" else drawn in (1.0, 2.0, 3.0)
        # the trained batch holds as many informative groups as the draw offered, up to the batch
        offered = m["train/draw_informative_fraction"] * drawn
        assert m["train/informative_fraction"] == pytest.approx(min(offered, 1.0), abs=1e-6)
        assert 0.0 <= m["train/truncated_fraction"] <= 1.0
        assert m["train/logprob_parity_max"] < 1e-3
        assert m["train/sampled_tokens"] > 0

    assert recipes.rl_recipe(config, tmp_path / "resumed", halt_after=3) == {}
    recipes.rl_recipe(config, tmp_path / "resumed")
    assert_trees_close(
        recipes.restore_params(tmp_path / "resumed"), recipes.restore_params(tmp_path / "whole"), atol=0
    )


def test_level_weights_repeat_each_level_by_its_weight():
    records = [{"difficulty": d} for d in (1, 2, 3, 2, 5, 3)]
    assert draws.level_pool(records, "") is None
    assert draws.level_pool(records, "2:1,3:2").tolist() == [1, 2, 2, 3, 5, 5]
    with pytest.raises(ConfigError, match="selects no training problem"):
        draws.level_pool(records, "4:1")
    with pytest.raises(ConfigError, match="level:weight"):
        draws.level_pool(records, "2=1")
    with pytest.raises(ConfigError, match="weights >= 0"):
        draws.level_pool(records, "2:0")
