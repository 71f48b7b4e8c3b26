"""Verifier curves (PRM vs ORM vs majority as N grows) on hand-made samples."""

import importlib.util

import numpy as np
import pytest

from helpers import REPO
from rtc.errors import ConfigError
from rtc.analysis import verifier_scaling
from rtc.analysis import scaling

# 3 problems x 4 samples; problem 0 has one right sample, problem 1 two, problem 2 none
CORRECT = np.array([[0, 0, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]], bool)
ANSWERS = [["1", "1", "7", "1"], ["5", "2", "5", "3"], ["9", "8", "8", "6"]]
SCORES = {
    "perfect": CORRECT.astype(float) + 0.01 * np.arange(4),  # ranks every right sample first
    "backwards": 1.0 - CORRECT.astype(float),
}


def curves(ks=(1, 2, 4)):
    return verifier_scaling.verifier_curves(
        CORRECT, ANSWERS, SCORES, list(ks), 200, np.random.default_rng(0), 50
    )


def test_rules_at_one_sample_agree_and_at_all_samples_follow_their_rule():
    c = curves()
    assert set(c) == {
        "pass@k",
        "majority",
        "best-of-N perfect",
        "best-of-N backwards",
        "weighted perfect",
        "weighted backwards",
    }
    # k = 1: every rule picks the one sample it sees; the same subsets make the sampled rules equal exactly,
    # and pass@1 (computed exactly) is the mean of the problems' right fractions
    at_one = {name: by_k[1][0] for name, by_k in c.items() if name != "pass@k"}
    assert len(set(at_one.values())) == 1
    assert c["pass@k"][1][0] == pytest.approx(CORRECT.mean(axis=1).mean())
    assert at_one["majority"] == pytest.approx(c["pass@k"][1][0], abs=0.06)  # 200 draws of a 1-subset
    # k = N: a perfect verifier is pass@N (2 of 3 problems); the backwards one picks a wrong sample wherever
    # there is one (problem 0 and 1 have wrong ones): 0; majority: problem 0 votes "1" (wrong), problem 1
    # votes "5" (right), problem 2 nothing right: 1/3
    assert c["best-of-N perfect"][4][0] == pytest.approx(2 / 3)
    assert c["pass@k"][4][0] == pytest.approx(scaling.pass_at_k_array(4, CORRECT.sum(axis=1), 4).mean())
    assert c["best-of-N backwards"][4][0] == 0.0
    assert c["majority"][4][0] == pytest.approx(1 / 3)
    for by_k in c.values():
        for mean, low, high in by_k.values():
            assert low <= mean + 1e-12 and mean <= high + 1e-12


def test_report_lists_every_rule_and_auroc():
    outputs = {
        "problems": 3,
        "large_n": 4,
        "sample_accuracy": float(CORRECT.mean()),
        "curves": curves((1, 4)),
        "within_problem_auroc": {"perfect": 1.0, "backwards": 0.0},
        "pooled_auroc": {"perfect": 1.0, "backwards": 0.0},
    }
    text = verifier_scaling.report(outputs)
    assert "| rule | N=1 | N=4 |" in text
    assert "| best-of-N perfect | " in text and "| 0.667 [" in text and "| perfect | 1.000 | 1.000 |" in text
    assert "3 problems x 4 samples, 25.0% of the samples correct." in text


def test_bad_budgets_are_named_before_anything_runs(tmp_path):
    spec = importlib.util.spec_from_file_location("verifiers", REPO / "experiments/configs/verifiers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("tiny")
    config.verifiers.budgets = (0, 2)
    with pytest.raises(ConfigError, match="verifiers.budgets"):
        verifier_scaling.run(config, str(tmp_path))
    config.verifiers.budgets = (2, 8)  # above large_n = 4
    with pytest.raises(ConfigError, match="verifiers.budgets"):
        verifier_scaling.run(config, str(tmp_path))
