"""A checker: an SFT run that starts from the policy's params, and the generative verifier it becomes.

The checker config starts from `policy_workdir` (params equal, optimizer fresh) and refuses another
network; `checker_workdir` is refused unless it is an SFT run read with the policy's tokenizer; the
verifier runs score the checker's reading beside the policy's own check, by the same formula.
"""

import jax
import numpy as np
import pytest

from helpers import assert_trees_close
from rtc import recipes
from rtc.errors import ConfigError
from rtc.rewards import self_check
from rtc.train import loop


@pytest.fixture(scope="module")
def checker_run(tmp_path_factory, data_dir, sft_run):
    """A tiny checker trained from the tiny quickstart policy."""
    from experiments.configs import checker

    config = checker.get_config("tiny")
    config.data_dir = str(data_dir)
    config.policy_workdir = str(sft_run)
    workdir = tmp_path_factory.mktemp("checker")
    recipes.sft_recipe(config, workdir)
    return workdir


def test_the_checker_starts_from_the_policy_and_trains_on(checker_run, sft_run):
    config = recipes.read_config(checker_run)
    _, _, model, _ = recipes.load_run(checker_run)
    assert_trees_close(recipes.start_from(sft_run, model), recipes.restore_params(sft_run), atol=0)
    assert loop.latest_step(checker_run) == config.sft.num_steps
    moved = jax.tree.map(
        lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
        recipes.restore_params(checker_run),
        recipes.restore_params(sft_run),
    )
    assert max(jax.tree.leaves(moved)) > 0  # its own steps changed the policy's weights


def test_the_checker_refuses_a_policy_of_another_network(sft_run):
    from experiments.configs import checker

    config = checker.get_config("tiny")
    config.model.preset = "test-tiny-wide"
    _, model, _ = recipes.load_model(config)
    with pytest.raises(ConfigError, match="another network"):
        recipes.start_from(sft_run, model)


def test_checker_workdir_must_be_an_sft_run_with_the_policys_tokenizer(
    checker_run, reward_model_runs, tokenizer
):
    from experiments.configs import prm

    config = prm.get_config("tiny")
    assert recipes.load_checker(config, tokenizer) == {}  # unset: no checker
    config.checker_workdir = str(checker_run)
    ((name, (model, params)),) = recipes.load_checker(config, tokenizer).items()
    assert name == "checker" and model.config.vocab_size == tokenizer.vocab_size
    config.checker_workdir = str(reward_model_runs[0] / "prm")
    with pytest.raises(ConfigError, match="is a 'prm' run"):
        recipes.load_checker(config, tokenizer)
    config.checker_workdir = str(checker_run)
    config.tokenizer_path = "another/tokenizer.model"
    with pytest.raises(ConfigError, match="tokenizer_path"):
        recipes.load_checker(config, tokenizer)


def test_the_verifier_evaluation_scores_the_checker_as_the_self_check(
    checker_run, sft_run, data_dir, tmp_path, monkeypatch
):
    """A tiny ORM run given the checker: its `checker` score is `checker_scores` under the checker's params
    (the policy's own check under the policy's), reported with the same metrics as every scorer."""
    from experiments.configs import orm
    from rtc.rewards import rm_evaluate

    read_with = {}

    def recording(name, score):
        def read(model, params, *args):
            read_with[name] = params
            return score(model, params, *args)

        return read

    monkeypatch.setattr(rm_evaluate, "self_check_scores", recording("self", self_check.self_check_scores))
    monkeypatch.setattr(rm_evaluate, "checker_scores", recording("checker", self_check.checker_scores))
    config = orm.get_config("tiny")
    config.data_dir = str(data_dir)
    config.policy_workdir = str(sft_run)
    config.checker_workdir = str(checker_run)
    results = recipes.reward_model_recipe(config, tmp_path)
    assert_trees_close(read_with["self"], recipes.restore_params(sft_run), atol=0)
    assert_trees_close(read_with["checker"], recipes.restore_params(checker_run), atol=0)
    for metric in ("within_problem_auroc", "pairwise_accuracy", "auroc", "ece"):
        assert f"checker/{metric}" in results
    assert "checker" in results["best_of_n"]


def test_verifier_curves_with_the_checker_alone(checker_run, sft_run, data_dir, tmp_path):
    """`verifiers.reward_models=()`: no reward model is trained or read; the checker's curves and AUROC
    stand beside the policy's own check."""
    from experiments.configs import verifiers
    from rtc.analysis import verifier_scaling

    config = verifiers.get_config("tiny")
    config.data_dir = str(data_dir)
    config.policy_workdir = str(sft_run)
    config.checker_workdir = str(checker_run)
    config.verifiers.reward_models = ()
    outputs = verifier_scaling.run(config, tmp_path)
    assert set(outputs["within_problem_auroc"]) == {"self_check", "checker"}
    assert {"best-of-N checker", "weighted checker", "majority"} <= set(outputs["curves"])
    assert not (tmp_path / "orm").exists() and not (tmp_path / "prm").exists()
    config.verifiers.reward_models = ("critic",)
    with pytest.raises(ConfigError, match="reward_models"):
        verifier_scaling.run(config, tmp_path)


def test_search_with_the_checker_loads_it_and_needs_it(checker_run, sft_run, tmp_path):
    from experiments.configs import search
    from rtc.analysis import test_time_scaling

    config = search.get_config("tiny")
    config.search.verifier_kind = "checker"
    config.policy_workdir = str(sft_run)
    with pytest.raises(ConfigError, match="checker_workdir"):
        test_time_scaling.load_models(config, tmp_path)
    config.checker_workdir = str(checker_run)
    _, policy, _, verifier, verifier_params = test_time_scaling.load_models(config, tmp_path)
    assert verifier.config == policy.config  # the checker is the policy's network, trained further
    assert_trees_close(verifier_params, recipes.restore_params(checker_run), atol=0)


def test_the_search_experiment_runs_with_the_checker(checker_run, sft_run, data_dir, tmp_path):
    """The `search` mode end to end with `verifier_kind="checker"`: every strategy searched and scored by
    the checker (its tokens counted as verifier tokens), curves written."""
    from experiments.configs import search
    from rtc.analysis import test_time_scaling

    config = search.get_config("tiny")
    config.data_dir = str(data_dir)
    config.policy_workdir = str(sft_run)
    config.checker_workdir = str(checker_run)
    config.search.update(verifier_kind="checker", aggregation="product", strategies=("best_of_n", "beam"))
    outputs = test_time_scaling.run(config, str(tmp_path))
    assert {"best_of_n", "beam", "majority", "weighted"} <= set(outputs["curves"]["curves"])
    for by_n in outputs["searches"].values():
        for result in by_n.values():
            assert result["verifier_tokens"] > 0
    assert (tmp_path / "scaling.png").is_file()


def test_the_api_searches_with_a_checker_run_as_the_verifier(checker_run, sft_run):
    """`Reasoner.search(verifier=<a checker's SFT run>)`: each step scored by the checker's probability of
    it, a path by the product; the pick is the best finished path."""
    import rtc
    from rtc.api.results import load_verifier

    verifier = load_verifier(checker_run)
    assert (verifier.kind, verifier.aggregation) == ("checker", "product")
    r = rtc.load(sft_run).search(
        "Compute 7+2*3.", verifier=checker_run, strategy="beam", n=4, max_new_tokens=32, step_tokens=8
    )
    scores = np.array(r.scores)
    assert len(r.candidates) == 4 and np.all((scores >= 0) & (scores <= 1))
    finished = np.array([c.finished for c in r.candidates])
    rank = np.where(np.array(r.duplicate), -np.inf, scores + 2.0 * finished)
    assert r.best == int(np.argmax(rank))


def test_grpo_with_the_checkers_step_rewards(checker_run, sft_run, data_dir, tmp_path, reward_model_runs):
    """Process-supervised GRPO reads each step's probability under the checker: the run trains (the tiny
    policy writes no steps, so the reading is checked on a hand-made completion), and one step verifier
    must be named (a PRM or a checker, not both; the checker an SFT run)."""
    from experiments.configs import grpo
    from rtc.metrics import read_metrics
    from rtc.rl import training as rl_training

    config = grpo.get_config("tiny")
    config.data_dir = str(data_dir)
    config.policy_workdir = str(sft_run)
    config.rl.update(process_supervision=True, num_steps=2, dynamic_sampling=False)
    config.rewards.checker_workdir = str(checker_run)
    results = recipes.rl_recipe(config, tmp_path)
    assert "accuracy" in results["greedy"]
    logged = [m for m in read_metrics(tmp_path) if "train/loss" in m]
    assert len(logged) == 2 and all(np.isfinite(m["train/loss"]) for m in logged)
    # the step rewards are the checker's, read at the policy's step delimiter
    _, tokenizer, model, _ = recipes.load_run(sft_run)
    step_reward_fn, params = rl_training.process_reward(config, tokenizer)
    assert_trees_close(params, recipes.restore_params(checker_run), atol=0)
    d = tokenizer.step_id
    a, b, c, e = [i for i in range(20, 30) if i != d][:4]  # four tokens that are not the delimiter
    tokens = np.array([[1, a, b, d, c, d, e, 0]], np.int32)
    mask = np.array([[0, 1, 1, 1, 1, 1, 1, 0]], bool)
    got, ends = step_reward_fn(params, tokens, mask)
    want, _ = self_check.checker_step_rewards(model, params, tokens, mask, d)
    np.testing.assert_array_equal(np.asarray(ends)[0], [0, 0, 0, 1, 0, 1, 0, 0])
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
    config.rewards.checker_step_reduce = "mean"  # the geometric mean of a step's token probabilities
    got, _ = rl_training.process_reward(config, tokenizer)[0](params, tokens, mask)
    want, _ = self_check.checker_step_rewards(model, params, tokens, mask, d, reduce="mean")
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)
    config.rewards.checker_step_reduce = "max"
    with pytest.raises(ConfigError, match="checker_step_reduce"):
        rl_training.process_reward(config, tokenizer)
    config.rewards.checker_step_reduce = "sum"
    config.rewards.prm_workdir = str(reward_model_runs[0] / "prm")
    with pytest.raises(ConfigError, match="not both"):
        rl_training.process_reward(config, tokenizer)
    config.rewards.update(prm_workdir=None, checker_workdir=str(reward_model_runs[0] / "prm"))
    with pytest.raises(ConfigError, match="is a 'prm' run"):
        rl_training.process_reward(config, tokenizer)
