"""The `search` CLI mode end to end on the tiny config: policy and PRM trained, every strategy and
budget searched, curves, compute-optimal table and plot written."""

import importlib.util
import json

import pytest

from helpers import REPO
from rtc.errors import ConfigError
from rtc.search import search_loop


def tiny_config(data_dir):
    spec = importlib.util.spec_from_file_location("search", REPO / "experiments/configs/search.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("tiny")
    config.data_dir = str(data_dir)
    return config


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir):
    workdir = tmp_path_factory.mktemp("search")
    return workdir, search_loop.run(tiny_config(data_dir), str(workdir))


def test_every_strategy_and_budget_is_reported(run):
    workdir, outputs = run
    curves = outputs["curves"]["curves"]
    assert set(curves) == {"majority", "weighted", "best_of_n", "pass", "beam", "dvts", "mcts"}
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
    saved = json.loads((workdir / search_loop.RESULTS_FILE).read_text())
    assert saved["problems"] == 4 and saved["large_n"] == 4
    assert (workdir / "scaling_by_difficulty.png").stat().st_size > 10_000
    assert "| beam | 4 |" in (workdir / "scaling_by_difficulty.md").read_text()
    binned = saved["by_oracle_difficulty"]
    assert sum(binned["problems"]) == 4
    # the bins split the problems: each strategy's overall accuracy is the size-weighted mean of its bins
    # each search's (and pass@N's, exact) overall accuracy is the size-weighted mean of its bins; the
    # subsampled rules are drawn apart from the overall curves, so only their presence is checked
    assert {"best_of_n", "majority", "weighted", "pass@N", "beam", "dvts", "mcts"} == set(binned["accuracy"])
    for strategy in ("beam", "dvts", "mcts", "pass@N"):
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
        search_loop.run(config, str(tmp_path))
    config = tiny_config(data_dir)
    config.prm_workdir = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="not a finished PRM run"):
        search_loop.run(config, str(tmp_path))


def test_reasoning_effort_sets_one_budget(run, data_dir, tmp_path):
    """`search.reasoning_effort=low` runs every strategy at the knob's N (2), depth and thinking share."""
    workdir, _ = run
    config = tiny_config(data_dir)
    config.prm_workdir = str(workdir / "prm")  # the PRM the first run trained
    config.search.update(reasoning_effort="low", strategies=("best_of_n", "beam"))
    outputs = search_loop.run(config, str(tmp_path))
    assert list(outputs["searches"]["beam"]) == [2]
    assert list(outputs["curves"]["curves"]["majority"]) == [2]
    # low effort searches half the depth (2 of 4 steps): N x 2 steps x step_tokens at most per problem
    assert outputs["searches"]["beam"][2]["generated_tokens"] <= 2 * 2 * config.search.step_tokens
