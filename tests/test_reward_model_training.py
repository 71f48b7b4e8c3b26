"""Reward-model training (ORM, PRM): shrunk end-to-end runs, exact resume, head-only training, bad data."""

import importlib
import json

import jax
import numpy as np
import pytest

from helpers import assert_trees_close
from rtc.checkpoint import Checkpointer
from rtc.errors import ConfigError
from rtc.rewards.verifier_metrics import auroc
from rtc.metrics import read_metrics
from rtc.model import Model
from rtc.rewards import reward_model as rm
from rtc import recipes
from rtc.rewards import labelled_data
from rtc.rewards import training as rm_training
from rtc.rl import training as rl_training
from rtc.rewards.rm_data import Solution


def rm_config(name: str, arg: str = "tiny"):
    """`experiments/configs/{name}.py:get_config(arg)`."""
    return importlib.import_module(f"experiments.configs.{name}").get_config(arg)


@pytest.fixture(scope="module")
def runs(reward_model_runs):
    return reward_model_runs


def test_tiny_orm_and_prm_runs_train_evaluate_and_compare(runs, capsys):
    root, orm_results, prm_results = runs
    assert "orm/auroc" in orm_results
    best = prm_results["best_of_n"]
    assert {"single", "majority", "orm", "oracle"} <= set(best)
    assert {f"prm_{name}" for name in rm.AGGREGATIONS} <= set(best)
    assert set(prm_results["prm/steps"]) >= {"step_accuracy", "step_auroc", "steps"}
    assert set(prm_results["mc_agreement"]) == {"rollouts_1", "rollouts_2"}
    for run, results in (("orm", orm_results), ("prm", prm_results)):
        assert json.loads((root / run / "rm_eval.json").read_text()) == json.loads(json.dumps(results))
        assert Checkpointer(root / run / "checkpoints").all_steps() == [2, 4]
        logged = [r for r in read_metrics(root / run) if "train/loss" in r]
        assert [r["step"] for r in logged] == [2, 4]
    counts = json.loads((root / "prm" / "rm_data" / "train.json").read_text())["counts"]
    assert counts["solutions"] > 0 and counts["steps"] > 0


def test_a_trained_prm_loads_and_gives_step_rewards(runs, tokenizer):
    root, _, _ = runs
    model, params = rm_training.load_reward_model(root / "prm")
    description = rm_training.load_description(root / "prm")
    assert description["kind"] == "prm" and description["delimiter_id"] == tokenizer.step_id == 8
    with Checkpointer(root / "prm" / "checkpoints") as ckpt:
        assert ckpt.latest_step() == 4
    data = np.load(root / "prm" / "rm_data" / "train.npz")
    tokens, mask = data["tokens"][:2], data["completion_mask"][:2]
    fn = jax.jit(rm.prm_step_rewards, static_argnames=("model", "delimiter_id"))
    rewards, step_end = fn(model, params, tokens, mask, delimiter_id=description["delimiter_id"])
    np.testing.assert_array_equal(step_end, data["step_mask"][:2] > 0)  # the trained positions
    assert np.all((np.asarray(rewards) > 0) == np.asarray(step_end))


def test_rerun_of_a_finished_run_reuses_data_and_a_changed_config_is_refused(runs, data_dir):
    root, _, _ = runs
    prm = rm_config("prm")
    prm.data_dir = str(data_dir)
    prm.policy_workdir = str(root / "orm" / "policy")
    prm.eval_rm.compare_workdir = str(root / "orm")
    prm.rm_data.group_size = 3
    with pytest.raises(ConfigError, match="holds data of another config"):
        recipes.reward_model_recipe(prm, root / "prm")


# --- training on given arrays -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def policy(tokenizer):
    from rtc.pretrained.run_model import build_model

    model = build_model(rm_config("orm"), tokenizer.vocab_size)
    return model, model.init_params(jax.random.key(3))


def _orm_data(n: int = 16, t: int = 24) -> dict:
    rng = np.random.default_rng(0)
    mask = np.zeros((n, t), bool)
    mask[:, 6:18] = True
    return {
        "tokens": rng.integers(9, 900, (n, t)).astype(np.int32),
        "completion_mask": mask,
        "label": (rng.random(n) < 0.5).astype(np.float32),
    }


def test_resumed_training_equals_uninterrupted(policy, tmp_path):
    model, params = policy
    rm_model = Model(rm.with_head(model.config))
    config = rm_config("orm")
    config.rm.update(num_steps=6)  # checkpoints at 2, 4, 6
    whole = rm_training.train(config, config.rm, tmp_path / "a", rm_model, params, _orm_data())
    # killed after step 3: the rerun restarts from step 2
    rm_training.train(config, config.rm, tmp_path / "b", rm_model, params, _orm_data(), halt_after=3)
    resumed = rm_training.train(config, config.rm, tmp_path / "b", rm_model, params, _orm_data())
    assert int(whole["step"]) == int(resumed["step"]) == 6
    assert_trees_close(resumed, whole)


def test_head_only_training_leaves_the_trunk_as_the_policy(policy, tmp_path):
    model, params = policy
    rm_model = Model(rm.with_head(model.config))
    config = rm_config("orm")
    config.rm.update(head_only=True, learning_rate=1e-2)
    state = rm_training.train(config, config.rm, tmp_path, rm_model, params, _orm_data())
    trunk = {k: v for k, v in state["params"].items() if k not in rm.HEAD_PARAMS}
    assert_trees_close(trunk, params, atol=0)
    assert float(np.abs(state["params"]["value_head"]).sum()) > 0


def test_prm_data_with_no_step_is_an_error_with_counts(policy, tokenizer):
    model, params = policy
    config = rm_config("prm")
    record = {"question": "Compute 1+1.", "answer": "2", "step_values": ["2"], "difficulty": 1}
    solutions = [
        Solution(record, (2, 10), tuple(tokenizer.encode("<think>1+1=2</think><answer>2</answer>")))
    ] * 3
    with pytest.raises(ConfigError, match=r"none of the 3 .* \(skipped: \{'no_delimiter': 3\}\)"):
        labelled_data.label_solutions(config, tokenizer, model, params, solutions, jax.random.key(0))


def test_unknown_step_label_source_is_named(policy, tokenizer):
    model, params = policy
    config = rm_config("prm")
    config.rm_data.labels = "oracle"
    with pytest.raises(ConfigError, match="unknown rm_data.labels 'oracle'"):
        labelled_data.make_labeler(config, tokenizer, model, params, jax.random.key(0))


def test_prm_trains_on_a_prm800k_file(policy, tokenizer, tmp_path):
    from test_prm800k import MISSING_FIRST, PHASE1_HUMAN, PHASE2_ERROR

    path = tmp_path / "prm800k.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (PHASE2_ERROR, PHASE1_HUMAN, MISSING_FIRST)))
    model, params = policy
    config = rm_config("prm")
    config.rm_data.update(labels="human", human_path=str(path))
    data = labelled_data.training_data(config, tmp_path, tokenizer, model, params)
    # Two usable records (the third has no rated step): labels [1, 1, 0] and [1, 1, 1].
    assert data["step_mask"].sum(axis=1).tolist() == [3.0, 3.0]
    assert data["step_labels"][data["step_mask"] > 0].tolist() == [1, 1, 0, 1, 1, 1]
    counts = json.loads((tmp_path / "rm_data" / "train.json").read_text())["counts"]
    assert counts == {"solutions": 2, "steps": 6, "positive_rate": pytest.approx(5 / 6)}


def test_orm_learns_a_visible_correctness_cue(policy, tmp_path):
    # The verdict is the last completion token (100 = right, 200 = wrong), placed at varying
    # positions: a head read one token early or late, or on padding, cannot learn it.
    model, params = policy
    rng = np.random.default_rng(1)
    data = _orm_data(n=64)
    ends = rng.integers(10, 20, 64)
    data["completion_mask"] = np.arange(24)[None, :] < ends[:, None]
    data["completion_mask"][:, :6] = False
    data["tokens"][np.arange(64), ends - 1] = np.where(data["label"] > 0.5, 100, 200)
    config = rm_config("orm")
    config.rm.update(num_steps=40, learning_rate=3e-3, log_every=20, checkpoint_every=40)
    state = rm_training.train(config, config.rm, tmp_path, Model(rm.with_head(model.config)), params, data)
    held_out = _orm_data(n=32)
    held_out["tokens"][:, 17] = np.where(held_out["label"] > 0.5, 100, 200)
    scores = rm.orm_logits(
        Model(rm.with_head(model.config)), state["params"], held_out["tokens"], held_out["completion_mask"]
    )
    assert auroc(np.asarray(scores), held_out["label"] > 0.5) == 1.0


def test_process_supervised_grpo_trains_with_the_prm(runs, data_dir, tmp_path):
    """The PRM's step rewards drive GRPO's advantages (DeepSeekMath process supervision) end to end."""
    root, _, _ = runs
    config = rm_config("grpo")
    config.data_dir = str(data_dir)
    config.rl.process_supervision = True
    config.rewards.prm_workdir = str(root / "prm")
    config.rl.num_steps = 2
    results = recipes.rl_recipe(config, tmp_path)
    assert "accuracy" in results["greedy"]
    logged = [m for m in read_metrics(tmp_path) if "train/loss" in m]
    assert len(logged) == 2 and all(np.isfinite(m["train/loss"]) for m in logged)
    config.rewards.prm_workdir = str(root / "orm")
    with pytest.raises(ConfigError, match="not a PRM"):
        rl_training.process_reward(config)
