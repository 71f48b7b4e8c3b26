"""The `search` CLI mode end to end on the tiny config: the session's tiny policy and PRM, every strategy
and budget searched, curves, compute-optimal table and plot written."""

import json
import shutil
from pathlib import Path

import pytest

from experiments.configs import search
from rtc.errors import ConfigError
from rtc.analysis import test_time_scaling as experiment


def tiny_config(data_dir):
    config = search.get_config("tiny")
    config.data_dir = str(data_dir)
    return config


def with_runs(config, reward_model_runs):
    """The config pointed at the session's PRM run and its policy."""
    root, _, _ = reward_model_runs
    config.prm_workdir = str(root / "prm")
    config.policy_workdir = str(root / "orm" / "policy")
    return config


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir, reward_model_runs):
    workdir = tmp_path_factory.mktemp("search")
    return workdir, experiment.run(with_runs(tiny_config(data_dir), reward_model_runs), str(workdir))


def test_without_a_prm_run_the_policy_and_prm_are_trained_first(
    data_dir, tmp_path, monkeypatch, reward_model_runs
):
    root, _, _ = reward_model_runs
    trained = []

    def reward_model_recipe(config, workdir):  # stands in for the real run: leaves a finished PRM run
        trained.append((config.mode, Path(workdir)))
        shutil.copytree(root / "prm", workdir)
        shutil.copytree(root / "orm" / "policy", Path(workdir) / "policy")

    monkeypatch.setattr(experiment.recipes, "reward_model_recipe", reward_model_recipe)
    models = experiment.load_models(tiny_config(data_dir), tmp_path)
    assert trained == [("prm", tmp_path / "prm")]
    assert models[3].config.scalar_head  # the verifier


def test_every_strategy_and_budget_is_reported(run):
    workdir, outputs = run
    curves = outputs["curves"]["curves"]
    assert set(curves) == {"majority", "weighted", "best_of_n", "pass", "beam", "dvts", "mcts", "best_first"}
    for method, by_n in curves.items():
        assert sorted(int(n) for n in by_n) == [2, 4], method
        for mean, low, high in by_n.values():
            assert 0.0 <= low <= mean <= high <= 1.0
    for strategy, by_n in outputs["searches"].items():
        tokens = [by_n[n]["generated_tokens"] for n in sorted(by_n)]
        assert tokens[0] < tokens[1], strategy  # a larger budget spends more
        assert all(by_n[n]["flops"] > 0 and by_n[n]["verifier_tokens"] > 0 for n in by_n)
    # pass@k bounds every selection rule drawn from the same samples
    for n in (2, 4):
        for method in ("majority", "weighted", "best_of_n"):
            assert curves[method][n][0] <= curves["pass"][n][0] + 1e-9
    assert len(outputs["router"]) == 6 and outputs["router"][0]["fraction_routed"] == 0.0
    assert set(outputs["compute_optimal"]) == {2, 4}


def test_files_are_written(run):
    workdir, outputs = run
    assert (workdir / "scaling.png").stat().st_size > 10_000
    assert "| beam |" in (workdir / "scaling.md").read_text()
    assert "compute-optimal" in (workdir / "compute_optimal.md").read_text()
    saved = json.loads((workdir / experiment.RESULTS_FILE).read_text())
    assert saved["problems"] == 4 and saved["large_n"] == 4
    assert (workdir / "scaling_by_difficulty.png").stat().st_size > 10_000
    assert "| beam | 4 |" in (workdir / "scaling_by_difficulty.md").read_text()
    binned = saved["by_oracle_difficulty"]
    assert sum(binned["problems"]) == 4
    # the bins split the problems: each strategy's overall accuracy is the size-weighted mean of its bins
    # each search's (and pass@N's, exact) overall accuracy is the size-weighted mean of its bins; the
    # subsampled rules are drawn apart from the overall curves, so only their presence is checked
    assert {"best_of_n", "majority", "weighted", "pass@N", "beam", "dvts", "mcts", "best_first"} == set(
        binned["accuracy"]
    )
    for strategy in ("beam", "dvts", "mcts", "best_first", "pass@N"):
        for n, accuracies in binned["accuracy"][strategy].items():
            total = sum(a * size for a, size in zip(accuracies, binned["problems"]) if a is not None)
            if strategy == "pass@N":
                overall = outputs["curves"]["curves"]["pass"][int(n)][0]
            else:
                overall = outputs["searches"][strategy][int(n)]["accuracy"][0]
            assert total / 4 == pytest.approx(overall, abs=1e-9)


def test_bad_search_configs_are_named(data_dir, tmp_path):
    config = tiny_config(data_dir)
    config.search.strategies = ("best_of_n", "greedy")
    with pytest.raises(ConfigError, match="unknown search.strategies"):
        experiment.run(config, str(tmp_path))
    config = tiny_config(data_dir)
    config.prm_workdir = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="not a finished PRM run"):
        experiment.run(config, str(tmp_path))


def test_reasoning_effort_sets_one_budget(run, data_dir, tmp_path, reward_model_runs):
    """`search.reasoning_effort=low` runs every strategy at the knob's N (2), depth and thinking share."""
    config = with_runs(tiny_config(data_dir), reward_model_runs)
    config.search.update(reasoning_effort="low", strategies=("best_of_n", "beam"))
    outputs = experiment.run(config, str(tmp_path))
    assert list(outputs["searches"]["beam"]) == [2]
    assert list(outputs["curves"]["curves"]["majority"]) == [2]
    # low effort searches half the depth (2 of 4 steps): N x 2 steps x step_tokens at most per problem
    assert outputs["searches"]["beam"][2]["generated_tokens"] <= 2 * 2 * config.search.step_tokens


def test_confidence_strategies_run_beside_the_others(data_dir, tmp_path, reward_model_runs):
    """The verifier-free confidence strategies through the same path: curves against the tokens they
    generate, no verifier tokens, consensus rounds of `round_size` traces up to N; every problem's traces
    (best-of-N's paths too) through one row by slot refill (`search.slots`)."""
    config = with_runs(tiny_config(data_dir), reward_model_runs)
    config.search.update(strategies=("best_of_n", "deepconf_low", "consensus"), tau=0.5, slots=1)
    outputs = experiment.run(config, str(tmp_path))
    curves = outputs["curves"]["curves"]
    assert {"deepconf_low", "consensus", "majority"} <= set(curves)
    path_tokens = config.search.depth * config.search.step_tokens  # one whole completion at most
    for strategy, by_n in outputs["searches"].items():
        assert sorted(by_n) == [2, 4], strategy
        for n, point in by_n.items():
            assert point["verifier_tokens"] == 0 and 0 < point["generated_tokens"] <= n * path_tokens
            assert point["stopped"] <= point["traces"] <= n
            assert outputs["curves"]["compute"][strategy][n] == point["generated_tokens"]
    # deepconf_low at N=2: both traces are the warm-up (n_init = max(2, N/4)), so none is stopped
    low = outputs["searches"]["deepconf_low"][2]
    assert (low["traces"], low["stopped"]) == (2.0, 0.0)
    # consensus draws rounds of round_size=2 traces: 2 at N=2, 2 or 4 per problem at N=4
    assert outputs["searches"]["consensus"][2]["traces"] == 2.0
    assert 2.0 <= outputs["searches"]["consensus"][4]["traces"] <= 4.0
    pool = outputs["pool_seconds"]  # the best-of-N pool, through slot refill here, timed per batch
    assert pool["batches"] >= 1 and pool["total"] >= pool["first"] > 0
    assert "| consensus |" in (tmp_path / "scaling.md").read_text()
    assert (tmp_path / "scaling.png").stat().st_size > 10_000


def test_the_policy_checks_itself_without_a_reward_model(data_dir, tmp_path, reward_model_runs):
    """`search.verifier_kind=self`: no PRM run is read or trained; the search spends no verifier tokens."""
    root, _, _ = reward_model_runs
    config = tiny_config(data_dir)
    config.search.update(
        verifier_kind="self", aggregation="min", strategies=("best_of_n", "beam"), budgets=(2,)
    )
    with pytest.raises(ConfigError, match="needs policy_workdir"):
        experiment.run(config, str(tmp_path / "no_policy"))
    config.policy_workdir = str(root / "orm" / "policy")
    outputs = experiment.run(config, str(tmp_path / "self"))
    assert not (tmp_path / "self" / "prm").exists()
    point = outputs["searches"]["beam"][2]
    assert point["verifier_tokens"] == 0 and point["generated_tokens"] > 0
    assert set(outputs["curves"]["curves"]) >= {"majority", "best_of_n", "beam"}
