"""Scaling curves: pass@k golden values and enumeration, oracle curve, k-subset accuracy, bootstrap, plot."""

import itertools
import json
import math

import numpy as np
import pytest

from rtc.analysis import scaling
from rtc.eval import voting


def test_pass_at_k_golden():
    # n=5, c=2, k=2: 1 - C(3, 2) / C(5, 2) = 1 - 3/10 = 0.7.
    assert scaling.pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # n=4, c=1, k=2: 1 - C(3, 2) / C(4, 2) = 1 - 3/6 = 0.5.
    assert scaling.pass_at_k(4, 1, 2) == pytest.approx(0.5)
    # k=1 is the fraction correct: 3/10.
    assert scaling.pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert scaling.pass_at_k(5, 0, 3) == 0.0  # nothing correct
    assert scaling.pass_at_k(5, 3, 3) == 1.0  # n - c = 2 < k = 3: every 3-subset holds a correct one


def test_pass_at_k_matches_enumerating_every_subset():
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(range(n), k))
                covered = sum(min(s) < c for s in subsets) / len(
                    subsets
                )  # samples 0..c-1 are the correct ones
                assert scaling.pass_at_k(n, c, k) == pytest.approx(covered, abs=1e-12)
                assert scaling.pass_at_k_array(n, np.array([c]), k)[0] == pytest.approx(covered, abs=1e-12)


def test_pass_at_k_array_is_stable_for_large_n():
    # n=1000, c=1, k=1000 covers the one correct sample for sure; n=1000, c=1, k=10: 10/1000.
    np.testing.assert_allclose(scaling.pass_at_k_array(1000, np.array([1, 0]), 1000), [1.0, 0.0])
    np.testing.assert_allclose(scaling.pass_at_k_array(1000, np.array([1]), 10), [0.01])
    with pytest.raises(ValueError):
        scaling.pass_at_k(3, 1, 4)
    with pytest.raises(ValueError):
        scaling.pass_at_k_array(3, np.array([4]), 1)


def test_oracle_curve_golden():
    # p = 0.5: 1 - 0.5, 1 - 0.25, 1 - 0.125.
    np.testing.assert_allclose(scaling.oracle_curve(0.5, [1, 2, 3]), [0.5, 0.75, 0.875])
    # Per problem p = 0, 1, 0.5 at N = 2: (0 + 1 + 0.75) / 3.
    np.testing.assert_allclose(scaling.oracle_curve(np.array([0.0, 1.0, 0.5]), [2]), [1.75 / 3])


def test_random_subsets_are_sorted_distinct_and_uniform():
    rng = np.random.default_rng(0)
    idx = scaling.random_subsets(6000, 4, 2, rng)
    assert idx.shape == (6000, 2)
    assert np.all(idx[:, 0] < idx[:, 1]) and idx.min() >= 0 and idx.max() <= 3
    counts = {s: np.sum(np.all(idx == s, axis=1)) for s in itertools.combinations(range(4), 2)}
    assert all(900 < c < 1100 for c in counts.values()), counts  # 6 subsets, 1000 expected each
    np.testing.assert_array_equal(scaling.random_subsets(3, 5, 5, rng), np.tile(np.arange(5), (3, 1)))


def test_subsample_accuracy_best_of_two_of_three():
    correct = np.array([[True, False, False]])
    scores = np.array([[0.9, 0.5, 0.1]])
    choose = scaling.subset_chooser(voting.best_of_n, scores)
    # k=2 subsets {0,1} -> 0 right, {0,2} -> 0 right, {1,2} -> 1 wrong: 2/3.
    accuracy = scaling.subsample_accuracy(correct, choose, 2, 3000, np.random.default_rng(0))
    assert accuracy[0] == pytest.approx(2 / 3, abs=0.03)
    # k=1 is the chance one sample is right, whatever the rule: 1/3.
    accuracy = scaling.subsample_accuracy(correct, choose, 1, 3000, np.random.default_rng(1))
    assert accuracy[0] == pytest.approx(1 / 3, abs=0.03)


def _run(num_problems=12, n=6, seed=0):
    rng = np.random.default_rng(seed)
    answers = rng.choice(["1", "2", "3", None], size=(num_problems, n), p=[0.4, 0.3, 0.2, 0.1]).tolist()
    correct = np.array([[a == "1" for a in row] for row in answers])
    scores = rng.random((num_problems, n))
    return correct, answers, scores


def test_method_accuracy_at_k_equal_n_is_the_rule_on_all_columns():
    correct, answers, scores = _run()
    rows = np.arange(len(correct))
    expected = {
        "majority": correct[rows, voting.majority_vote(answers)],
        "weighted": correct[rows, voting.weighted_vote(answers, scores)],
        "best_of_n": correct[rows, voting.best_of_n(scores)],
        "pass": correct.any(axis=1),
    }
    for method, hits in expected.items():
        got = scaling.method_accuracy(method, correct, answers, scores, 6, 3, np.random.default_rng(0))
        np.testing.assert_array_equal(got, hits.astype(float), err_msg=method)
    with pytest.raises(ValueError):
        scaling.method_accuracy("beam", correct, answers, scores, 6, 3, np.random.default_rng(0))


def test_pass_method_is_the_unbiased_estimator_and_agrees_with_sampling():
    correct, answers, scores = _run()
    exact = scaling.method_accuracy("pass", correct, answers, scores, 2, 1, np.random.default_rng(0))
    np.testing.assert_allclose(exact, scaling.pass_at_k_array(6, correct.sum(axis=1), 2))
    any_correct = lambda idx: idx[np.arange(len(idx)), np.argmax(np.take_along_axis(correct, idx, 1), axis=1)]
    sampled = scaling.subsample_accuracy(correct, any_correct, 2, 2000, np.random.default_rng(0))
    np.testing.assert_allclose(sampled, exact, atol=0.05)


def test_bootstrap_interval_contains_the_mean_and_shrinks_with_more_problems():
    rng = np.random.default_rng(0)
    small = rng.random(40) < 0.5
    large = rng.random(4000) < 0.5
    low_s, high_s = scaling.bootstrap_interval(small, 1000, 0.05, rng)
    low_l, high_l = scaling.bootstrap_interval(large, 1000, 0.05, rng)
    assert low_s < small.mean() < high_s and low_l < large.mean() < high_l
    # The width goes as 1/sqrt(P): about 10x narrower for 100x the problems; 2 * 1.96 * 0.5 / sqrt(40) = 0.31.
    assert high_s - low_s == pytest.approx(0.31, abs=0.06)
    assert (high_l - low_l) < (high_s - low_s) / 5
    assert scaling.bootstrap_interval(np.full(10, 0.3)) == pytest.approx((0.3, 0.3))


def test_curve_table_rows():
    curves = {"majority": {1: (0.5, 0.4, 0.6), 4: (0.625, 0.5, 0.75)}}
    table = scaling.curve_table(curves, {"majority": {1: 200.0, 4: 800.0}}).splitlines()
    assert table[0] == "| method | k | compute | accuracy | interval |"
    assert table[1] == "|---|---|---|---|---|"
    assert table[3] == "| majority | 4 | 800 | 0.625 | [0.500, 0.750] |"
    assert scaling.curve_table(curves).splitlines()[2] == "| majority | 1 | 0.500 | [0.400, 0.600] |"


def test_plot_curves_writes_a_png(tmp_path):
    curves = {
        "majority": {1: (0.5, 0.4, 0.6), 4: (0.6, 0.5, 0.7)},
        "pass": {1: (0.5, 0.4, 0.6), 4: (0.8, 0.7, 0.9)},
    }
    compute = {m: {1: 100.0, 4: 400.0} for m in curves}
    for name, compute_x in (("tokens.png", compute), ("k.png", None)):
        path = tmp_path / name
        scaling.plot_curves(curves, compute_x, str(path), "test", oracle={1: 0.5, 4: 0.9375})
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_scaling_curves_end_to_end_is_json_and_consistent():
    correct, answers, scores = _run(num_problems=20, n=8)
    tokens = np.full((20, 8), 50.0)
    tokens[:, 0] = 130.0  # mean tokens per sample: (130 + 7 * 50) / 8 = 60
    out = scaling.scaling_curves(
        correct, answers, scores, [1, 2, 8], tokens, 20, np.random.default_rng(0), 200
    )
    json.dumps(out)
    assert set(out["curves"]) == set(scaling.METHODS)
    for by_k in out["curves"].values():
        for mean, low, high in by_k.values():
            assert low <= mean <= high
    rows = np.arange(20)
    assert out["curves"]["majority"][8][0] == pytest.approx(
        correct[rows, voting.majority_vote(answers)].mean()
    )
    assert out["curves"]["pass"][2][0] == pytest.approx(scaling.pass_at_k_array(8, correct.sum(1), 2).mean())
    assert out["compute"]["weighted"] == {
        1: pytest.approx(60.0),
        2: pytest.approx(120.0),
        8: pytest.approx(480.0),
    }
    p = correct.mean(axis=1)
    assert out["oracle"][1] == pytest.approx(p.mean())
    assert out["oracle"][8] == pytest.approx(np.mean(1 - (1 - p) ** 8))
    assert scaling.scaling_curves(correct, answers, scores, [1], None, 2, num_resamples=10)["compute"] is None
    assert math.isclose(out["curves"]["pass"][1][0], out["curves"]["best_of_n"][1][0], abs_tol=0.1)
