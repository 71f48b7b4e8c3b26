"""Compute-optimal selection on hand-built results: difficulty bins, per-bin choice, disjoint
cross-validation, and the reasoning-mode router's accuracy/tokens tradeoff."""

import numpy as np
import pytest

from rtc.analysis import compute_optimal as co


def test_estimate_pass_rate():
    np.testing.assert_allclose(
        co.estimate_pass_rate([[1, 0, 1, 1], [0, 0, 0, 0], [0.2, 0.4, 0.6, 0.8]]), [0.75, 0, 0.5]
    )


def test_difficulty_bins_hand_examples():
    # Distinct rates, one problem per bin: the rank is the bin, hardest (lowest rate) in bin 0.
    assert co.difficulty_bins(np.array([0.9, 0.1, 0.5, 0.3, 0.7])).tolist() == [4, 0, 2, 1, 3]
    # Ten problems in 5 bins: two per bin, floor(rank * 5 / 10).
    assert co.difficulty_bins(np.arange(10)[::-1] / 10).tolist() == [4, 4, 3, 3, 2, 2, 1, 1, 0, 0]
    # Ties share the bin of their lowest rank: three zeros have 0 problems below -> bin 0; 0.5 has 3 below ->
    # floor(3 * 5 / 5) = 3; 1.0 has 4 below -> 4. Bins 1 and 2 stay empty.
    assert co.difficulty_bins(np.array([0.0, 0.0, 0.0, 0.5, 1.0])).tolist() == [0, 0, 0, 3, 4]
    # Fewer distinct rates than bins: 0.8 has 2 of 4 below -> floor(2 * 5 / 4) = 2.
    assert co.difficulty_bins(np.array([0.2, 0.8, 0.2, 0.8])).tolist() == [0, 2, 0, 2]
    assert co.difficulty_bins(np.full(4, 0.5)).tolist() == [0, 0, 0, 0]
    assert co.difficulty_bins(np.array([0.4, 0.1, 0.3, 0.2]), num_bins=2).tolist() == [1, 0, 1, 0]


# Beam search wins on the hard bin 0, best-of-N on the easy bin 1, at both budgets; majority only has 64.
RESULTS = {
    "best_of_n": {4: np.array([0.0, 0.0, 1.0, 1.0]), 16: np.array([1.0, 0.0, 1.0, 1.0])},
    "beam": {4: np.array([1.0, 1.0, 0.0, 0.0]), 16: np.array([1.0, 1.0, 0.0, 1.0])},
    "majority": {64: np.array([0.0, 1.0, 0.0, 1.0])},
}
BINS = np.array([0, 0, 1, 1])


def test_select_strategies_picks_the_best_mean_per_bin_and_budget():
    selection = co.select_strategies(RESULTS, BINS)
    # Budget 4: bin 0 beam 1.0 vs best_of_n 0.0; bin 1 best_of_n 1.0 vs 0.0.
    # Budget 16: bin 0 beam 1.0 vs 0.5; bin 1 best_of_n 1.0 vs beam 0.5. Budget 64: only majority.
    assert selection == {
        4: {0: "beam", 1: "best_of_n"},
        16: {0: "beam", 1: "best_of_n"},
        64: {0: "majority", 1: "majority"},
    }
    tied = {"a": {1: np.array([0.5, 0.5])}, "b": {1: np.array([0.5, 0.5])}}
    assert co.select_strategies(tied, np.array([0, 0])) == {1: {0: "a"}}  # ties go to the first listed


def test_apply_selection_uses_each_bins_strategy():
    accuracy = co.apply_selection(RESULTS, BINS, co.select_strategies(RESULTS, BINS))
    np.testing.assert_array_equal(accuracy[4], [1, 1, 1, 1])
    np.testing.assert_array_equal(accuracy[16], [1, 1, 1, 1])
    np.testing.assert_array_equal(accuracy[64], [0, 1, 0, 1])
    # Bins 1 and 2 were not fitted: bin 1 takes bin 0's strategy (distance 1), bin 2 takes bin 3's.
    selection = {4: {0: "beam", 3: "best_of_n"}}
    accuracy = co.apply_selection(RESULTS, np.array([1, 1, 2, 2]), selection)
    np.testing.assert_array_equal(accuracy[4], [1, 1, 1, 1])
    # Bin 1 is as close to 0 as to 2: the lower bin wins, beam: [1, 1, 0, 0].
    accuracy = co.apply_selection(RESULTS, np.array([1, 1, 1, 1]), {4: {0: "beam", 2: "best_of_n"}})
    np.testing.assert_array_equal(accuracy[4], [1, 1, 0, 0])


def test_split_half_is_a_disjoint_cover():
    fit, evaluate = co.split_half(11, np.random.default_rng(0))
    assert len(fit) == 5 and len(evaluate) == 6
    assert set(fit.tolist()).isdisjoint(evaluate.tolist())
    assert sorted(fit.tolist() + evaluate.tolist()) == list(range(11))


def test_cross_validated_scores_each_problem_with_a_selection_fitted_elsewhere():
    # One problem per bin: beam is right on problem 0, best-of-N on problem 1. Fitted on the same problem the
    # selection would be perfect; fitted on the other, it picks the other problem's strategy and scores 0.
    results = {"beam": {4: np.array([1.0, 0.0])}, "best_of_n": {4: np.array([0.0, 1.0])}}
    bins = np.array([0, 1])
    assert co.apply_selection(results, bins, co.select_strategies(results, bins))[4].tolist() == [1, 1]
    assert co.cross_validated(results, bins, np.random.default_rng(0)) == {4: 0.0}


def test_cross_validated_fit_and_eval_problems_are_disjoint(monkeypatch):
    num_problems = 9
    ids = np.arange(num_problems, dtype=float)  # each problem's "accuracy" is its own id, to trace it
    results = {"a": {1: ids}, "b": {1: ids}}
    seen = []
    select, apply = co.select_strategies, co.apply_selection
    monkeypatch.setattr(
        co, "select_strategies", lambda r, b: seen.append(("fit", set(r["a"][1]))) or select(r, b)
    )
    monkeypatch.setattr(
        co, "apply_selection", lambda r, b, s: seen.append(("eval", set(r["a"][1]))) or apply(r, b, s)
    )
    co.cross_validated(results, np.zeros(num_problems, int), np.random.default_rng(0))
    (_, fit_1), (_, eval_1), (_, fit_2), (_, eval_2) = seen
    assert [kind for kind, _ in seen] == ["fit", "eval", "fit", "eval"]
    assert fit_1.isdisjoint(eval_1) and fit_2.isdisjoint(eval_2)
    assert fit_1 == eval_2 and fit_2 == eval_1 and fit_1 | eval_1 == set(ids)


def test_compare_at_equal_compute_on_an_obvious_case():
    # 20 problems; beam is right on the hard half (bin 0), best-of-N on the easy half, at budget 8.
    hard = np.arange(20) < 10
    results = {"beam": {8: hard.astype(float)}, "best_of_n": {8: (~hard).astype(float)}}
    bins = np.where(hard, 0, 1)
    comparison = co.compare_at_equal_compute(results, bins, "best_of_n", np.random.default_rng(0))
    assert comparison == {8: {"compute_optimal": 1.0, "best_of_n": 0.5}}


def test_route_is_strict():
    assert co.route(np.array([0.1, 0.5, 0.9]), 0.5).tolist() == [True, False, False]


def test_router_tradeoff_hand_values():
    estimate = np.array([0.1, 0.9, 0.5, 0.3])
    rows = co.router_tradeoff(
        estimate,
        acc_direct=np.array([0.0, 1.0, 1.0, 0.0]),
        acc_reasoning=np.array([1.0, 1.0, 1.0, 0.0]),
        tokens_direct=np.full(4, 10.0),
        tokens_reasoning=np.full(4, 100.0),
        thresholds=[0.0, 0.4, 1.01],
    )
    # 0: nothing routed. 0.4: problems 0 and 3 routed: accuracy (1 + 1 + 1 + 0) / 4, tokens (100 + 10 + 10 +
    # 100) / 4 = 55. 1.01: everything routed.
    assert rows == [
        {"threshold": 0.0, "accuracy": 0.5, "mean_tokens": 10.0, "fraction_routed": 0.0},
        {"threshold": 0.4, "accuracy": 0.75, "mean_tokens": 55.0, "fraction_routed": 0.5},
        {"threshold": 1.01, "accuracy": 0.75, "mean_tokens": pytest.approx(100.0), "fraction_routed": 1.0},
    ]
