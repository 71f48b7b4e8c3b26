"""Reward-model metrics on hand-computed examples: AUROC with ties, agreement, majority vote, best-of-N."""

import math

import numpy as np
import pytest

from rtc.rewards import verifier_metrics as metrics


def test_average_ranks_share_ties():
    # Sorted: 0.1 (rank 1), 0.4 and 0.4 (ranks 2 and 3, averaged to 2.5), 0.8 (rank 4).
    np.testing.assert_array_equal(metrics.average_ranks([0.4, 0.1, 0.8, 0.4]), [2.5, 1.0, 4.0, 2.5])


def test_auroc_golden_with_a_tie():
    scores = [0.1, 0.4, 0.4, 0.8]
    labels = [0, 0, 1, 1]
    # Pairs (positive, negative): (0.4, 0.1) 1, (0.4, 0.4) 1/2 (tie), (0.8, 0.1) 1, (0.8, 0.4) 1.
    # AUROC = 3.5 / 4 = 0.875. By ranks: positives hold 2.5 + 4 = 6.5; U = 6.5 - 2*3/2 = 3.5.
    assert metrics.auroc(scores, labels) == pytest.approx(0.875)


def test_auroc_extremes_and_one_class():
    assert metrics.auroc([0.1, 0.2, 0.9], [0, 0, 1]) == 1.0
    assert metrics.auroc([0.9, 0.2, 0.1], [0, 0, 1]) == 0.0
    assert metrics.auroc([0.5, 0.5, 0.5], [0, 1, 1]) == 0.5  # all tied: chance
    assert math.isnan(metrics.auroc([0.1, 0.2], [1, 1]))


def test_auroc_matches_the_pairwise_definition_on_random_scores():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 40).astype(float)  # many ties
    labels = rng.random(40) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean()
    assert metrics.auroc(scores, labels) == pytest.approx(pairwise)


def test_binary_accuracy():
    # 0.9 vs 1 right, 0.4 vs 1 wrong, 0.2 vs 0 right, 0.6 vs 0 wrong: 2 / 4.
    assert metrics.binary_accuracy([0.9, 0.4, 0.2, 0.6], [1, 1, 0, 0]) == 0.5


def test_label_agreement_by_n():
    outcomes = [np.array([[False, True], [False, False]]), np.array([[True, True]])]
    exact = [np.array([1.0, 0.0]), np.array([0.0])]
    # N=1: hard labels [0, 0], [1] vs [1, 0], [0]: 1 of 3 agree. N=2: [1, 0], [1]: 2 of 3.
    agreement = metrics.label_agreement_by_n(outcomes, exact, [1, 2])
    assert agreement == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3)}


def test_majority_choice_breaks_ties_by_first_occurrence_and_ignores_missing():
    answers = [
        ["3", "4", " 4", "3", None],  # 3 and 4 tie (2 votes each): 3 comes first, candidate 0
        [None, "7", "8", "8"],  # 8 wins: its first candidate is 2
        [None, None],  # nothing to vote on: candidate 0
    ]
    assert metrics.majority_choice(answers).tolist() == [0, 2, 0]


def test_best_of_n_accuracy_by_difficulty():
    correct = np.array([[0, 1, 0], [0, 0, 0], [1, 1, 0]], bool)
    difficulty = np.array([1, 1, 2])
    choices = {"rm": np.array([1, 0, 2]), "first": np.array([0, 0, 0])}
    results = metrics.best_of_n_accuracy(correct, difficulty, choices)
    # rm picks right, wrong, wrong: level 1 1/2, level 2 0; first picks wrong, wrong, right.
    assert results["rm"] == {"accuracy": 1 / 3, "accuracy/level_1": 0.5, "accuracy/level_2": 0.0}
    assert results["first"] == {"accuracy": 1 / 3, "accuracy/level_1": 0.0, "accuracy/level_2": 1.0}
    # single: mean per problem 1/3, 0, 2/3; oracle: any right: 1, 0, 1.
    assert results["single"]["accuracy"] == pytest.approx(1 / 3)
    assert results["oracle"] == {"accuracy": 2 / 3, "accuracy/level_1": 0.5, "accuracy/level_2": 1.0}
    table = metrics.format_best_of_n(results)
    assert table.splitlines()[0].split() == ["difficulty", "single", "rm", "first", "oracle"]
    assert table.splitlines()[-1].split() == ["all", "0.333", "0.333", "0.333", "0.667"]


def test_within_problem_auroc_ignores_one_class_problems_and_easy_vs_hard():
    scores = np.array([[0.9, 0.8, 0.95], [0.1, 0.3, 0.2], [0.5, 0.4, 0.6]])
    correct = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0]], bool)
    # Problem 0: positives 0.9, 0.8 vs negative 0.95: 0 of 2 pairs. Problem 1: 0.3 beats 0.1 and 0.2: 2 of 2.
    # Problem 2 has no right candidate and is left out: mean (0 + 1) / 2 = 0.5.
    assert metrics.within_problem_auroc(scores, correct) == 0.5
    # Pooled, the easy problem's high scores make the same candidates look well ranked: 0.9 and 0.8
    # beat 5 of the 6 negatives each, 0.3 beats 0.1 and 0.2: (5 + 5 + 2) / 18 = 0.667.
    assert metrics.auroc(scores.ravel(), correct.ravel()) == pytest.approx(12 / 18)


# --- what search needs: pairwise ranking, bootstrap intervals, calibration, right answer by wrong steps --


def two_problems_with_ties():
    scores = np.array([[0.9, 0.5, 0.5, 0.2], [0.3, 0.7, 0.3, 0.1], [0.4, 0.6, 0.8, 0.2]])
    correct = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], bool)
    return scores, correct


def test_pairwise_accuracy_and_within_problem_auroc_by_hand():
    scores, correct = two_problems_with_ties()
    # Problem 0, (correct, incorrect) pairs: (0.9, 0.5) 1, (0.9, 0.2) 1, (0.5, 0.5) 1/2 (tie), (0.5, 0.2) 1:
    #   3.5 of 4.
    # Problem 1: (0.3, 0.7) 0, (0.3, 0.3) 1/2 (tie), (0.3, 0.1) 1: 1.5 of 3.
    # Problem 2 is all correct: no pairs, left out.
    wins, pairs = metrics.pairwise_counts(scores, correct)
    np.testing.assert_array_equal(wins, [3.5, 1.5, 0.0])
    np.testing.assert_array_equal(pairs, [4, 3, 0])
    # Pairwise accuracy weighs pairs equally: (3.5 + 1.5) / (4 + 3) = 5 / 7.
    assert metrics.pairwise_accuracy(scores, correct) == (pytest.approx(5 / 7), 7)
    # Within-problem AUROC weighs problems equally: (3.5 / 4 + 1.5 / 3) / 2 = (0.875 + 0.5) / 2 = 0.6875.
    assert metrics.within_problem_auroc(scores, correct) == pytest.approx(0.6875)
    only_one_kind = metrics.pairwise_accuracy(scores[2:], correct[2:])
    assert math.isnan(only_one_kind[0]) and only_one_kind[1] == 0
    with pytest.raises(ValueError, match="one shape"):
        metrics.pairwise_accuracy(scores, correct[:, :3])


def test_bootstrap_interval_is_degenerate_on_identical_problems_and_holds_the_estimate():
    # Every problem is problem 0 above (3.5 of 4 pairs): each resample gives 0.875 exactly.
    wins, pairs = np.full(20, 3.5), np.full(20, 4)
    for metric_fn in (metrics.mean_problem_auroc, metrics.pooled_pair_accuracy):
        assert metrics.bootstrap_interval(metric_fn, wins, pairs, num_resamples=200, seed=0) == (0.875, 0.875)
    rng = np.random.default_rng(1)
    scores, correct = rng.random((40, 6)), rng.random((40, 6)) < 0.5
    wins, pairs = metrics.pairwise_counts(scores, correct)
    for metric_fn in (metrics.mean_problem_auroc, metrics.pooled_pair_accuracy):
        low, high = metrics.bootstrap_interval(metric_fn, wins, pairs, num_resamples=1000, seed=0)
        assert low < metric_fn(wins, pairs) < high
        assert metrics.bootstrap_interval(metric_fn, wins, pairs, num_resamples=1000, seed=0) == (low, high)


def test_bootstrap_interval_of_the_mean_draws_as_the_scaling_curves_do():
    from rtc.analysis import scaling

    values = np.random.default_rng(2).random(30)
    expected = scaling.bootstrap_interval(values, 300, rng=np.random.default_rng(7))
    assert metrics.bootstrap_interval(np.mean, values, num_resamples=300, seed=7) == expected


def test_bootstrap_interval_without_pairs_and_bad_input():
    no_pairs = metrics.bootstrap_interval(metrics.mean_problem_auroc, np.zeros(3), np.zeros(3, int))
    assert all(math.isnan(x) for x in no_pairs)
    with pytest.raises(ValueError, match="one length"):
        metrics.bootstrap_interval(metrics.pooled_pair_accuracy, np.zeros(3), np.zeros(4))


def test_expected_calibration_error_by_hand():
    confidences = [0.05, 0.15, 0.12, 0.55, 0.58, 0.95, 0.92, 0.97]
    labels = [0, 0, 1, 1, 0, 1, 1, 1]
    # Ten bins (b/10, (b+1)/10]; four hold items:
    #   bin 0 {0.05}: confidence 0.05, accuracy 0, gap 0.05, 1 item
    #   bin 1 {0.15, 0.12}: confidence 0.135, accuracy 1/2, gap 0.365, 2 items
    #   bin 5 {0.55, 0.58}: confidence 0.565, accuracy 1/2, gap 0.065, 2 items
    #   bin 9 {0.95, 0.92, 0.97}: confidence 0.94667, accuracy 1, gap 0.05333, 3 items
    # ECE = (1 * 0.05 + 2 * 0.365 + 2 * 0.065 + 3 * 0.05333) / 8 = 1.07 / 8 = 0.13375.
    bins = metrics.calibration_bins(confidences, labels, 10)
    np.testing.assert_array_equal(bins["bin"], [0, 1, 5, 9])
    np.testing.assert_array_equal(bins["count"], [1, 2, 2, 3])
    np.testing.assert_allclose(bins["confidence"], [0.05, 0.135, 0.565, 2.84 / 3])
    np.testing.assert_allclose(bins["accuracy"], [0.0, 0.5, 0.5, 1.0])
    assert metrics.expected_calibration_error(confidences, labels, 10) == pytest.approx(0.13375)
    # A perfectly calibrated bin: confidence 0.75 with 3 of 4 right.
    assert metrics.expected_calibration_error([0.75] * 4, [1, 1, 1, 0]) == 0.0
    assert math.isnan(metrics.expected_calibration_error([], []))


def test_calibration_bins_are_closed_on_the_right_and_the_first_holds_zero():
    bins = metrics.calibration_bins([0.0, 0.3, 0.5, 0.7, 1.0], [0, 0, 1, 1, 1], 10)
    # 0 joins (0, 0.1]; 0.3 ends (0.2, 0.3]; 0.5 ends (0.4, 0.5]; 0.7 ends (0.6, 0.7]; 1 ends (0.9, 1].
    np.testing.assert_array_equal(bins["bin"], [0, 2, 4, 6, 9])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        metrics.calibration_bins([1.5], [1])


def test_right_answer_wrong_steps_on_hand_built_picks():
    correct = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1]], bool)
    labels = [
        np.array([1.0, 1.0]), np.array([1.0, 0.0]), np.array([0.0, 0.0]),  # problem 0
        np.array([1.0, 0.0, 0.0]), None, np.array([1.0]),  # problem 1 (candidate 1 unlabelled)
        np.array([0.0]), np.array([1.0, 1.0]), None,  # problem 2 (candidate 2 unlabelled)
    ]  # fmt: skip
    wrong_step, labelled = metrics.wrong_step_masks(labels, (3, 3))
    np.testing.assert_array_equal(wrong_step, [[0, 1, 1], [1, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(labelled, [[1, 1, 1], [1, 0, 1], [1, 1, 0]])
    # Right answer and a wrong step: problem 0 candidate 1, problem 1 candidate 0; nothing in problem 2.
    choices = {"rm": np.array([1, 0, 2]), "majority": np.array([0, 1, 1])}
    results = metrics.right_answer_wrong_steps(correct, wrong_step, labelled, choices)
    # rm picks 0/1 (flawed), 1/0 (flawed), 2/2 (unlabelled, left out): 2 of 2.
    assert results["rm"] == {"rate": 1.0, "labelled": 2}
    # majority picks 0/0 (sound), 1/1 (unlabelled), 2/1 (sound): 0 of 2.
    assert results["majority"] == {"rate": 0.0, "labelled": 2}
    # One sample: problem 0 1 of 3 labelled, problem 1 1 of 2, problem 2 0 of 2: (1/3 + 1/2 + 0) / 3 = 5/18.
    assert results["single"] == {"rate": pytest.approx(5 / 18), "labelled": 3}
    # Picks with no labels (problem 1 candidate 1, problem 2 candidate 2) give no rate.
    unlabelled = metrics.right_answer_wrong_steps(
        correct[1:], wrong_step[1:], labelled[1:], {"rm": np.array([1, 2])}
    )
    assert math.isnan(unlabelled["rm"]["rate"]) and unlabelled["rm"]["labelled"] == 0


def test_ranking_metrics_and_report_show_intervals_pairs_and_calibration(tmp_path):
    import ml_collections

    from rtc.rewards import rm_evaluate

    scores, correct = two_problems_with_ties()
    results = {"problems": 3, "solutions": 12, "solution_accuracy": float(correct.mean())}
    results["orm/auroc"] = metrics.auroc(scores.ravel(), correct.ravel())
    results.update(rm_evaluate.ranking_metrics("orm", scores, correct, seed=0))
    assert results["orm/within_problem_auroc"] == pytest.approx(0.6875)
    assert results["orm/pairwise_accuracy"] == pytest.approx(5 / 7) and results["orm/pairs"] == 7
    low, high = results["orm/pairwise_accuracy_interval"]
    # Resamples hold problems 0 and 1 only (5/7), only 0 (7/8) or only 1 (1/2): the interval lies within.
    assert 0.5 <= low <= 5 / 7 <= high <= 0.875
    bins = {"orm": rm_evaluate.calibration(scores.ravel(), correct.ravel())}
    results["orm/ece"] = metrics.ece_of_bins({k: np.array(v) for k, v in bins["orm"].items()})
    results["best_of_n"] = metrics.best_of_n_accuracy(correct, np.ones(3, int), {"orm": scores.argmax(1)})
    results["right_answer_wrong_steps"] = {
        "single": {"rate": 0.25, "labelled": 3},
        "orm": {"rate": 0.5, "labelled": 3},
    }
    config = ml_collections.ConfigDict({"task": {"name": "arithmetic"}, "eval_rm": {"best_of_n": 4}})
    text = rm_evaluate.report(config, results)
    row = next(line.split() for line in text.splitlines() if line.strip().startswith("orm "))
    assert row[:4] == [
        "orm",
        f"{results['orm/auroc']:.3f}",
        "0.688",
        f"[{results['orm/within_problem_auroc_interval'][0]:.3f},",
    ]
    assert row[-2:] == ["7", f"{results['orm/ece']:.3f}"]
    assert text.splitlines()[-1].split() == ["rate", "0.250", "0.500"]
    with (tmp_path / rm_evaluate.RELIABILITY_FILE).open("wb") as f:
        rm_evaluate.plot_reliability(bins, f, "test")
    assert (tmp_path / rm_evaluate.RELIABILITY_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_step_metrics_add_the_calibration_error_of_step_scores():
    from rtc.rewards import rm_evaluate
    from rtc.rewards.step_labels import Labelled

    probs = np.array([[0.9, 0.2, 0.75, 0.0], [0.7, 0.55, 0.3, 0.1], [0.5, 0.5, 0.5, 0.5]], np.float32)
    step_end = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]], bool)
    exact = Labelled([np.array([1.0, 0.0]), np.array([1.0]), None], {"no_delimiter": 1})
    predicted, truth = rm_evaluate.step_predictions(probs, step_end, exact)
    np.testing.assert_allclose(predicted, [0.9, 0.75, 0.55])  # solution 2 was skipped by the labeler
    np.testing.assert_array_equal(truth, [1.0, 0.0, 1.0])
    s = rm_evaluate.step_metrics(predicted, truth, exact.skipped, rm_evaluate.calibration(predicted, truth))
    # Bins: (0.5, 0.6] {0.55} right, gap 0.45; (0.7, 0.8] {0.75} wrong, gap 0.75; (0.8, 0.9] {0.9} right,
    # gap 0.1. ECE = (0.45 + 0.75 + 0.1) / 3 = 1.3 / 3. (Values off the edges: 0.8 in float32 is above 0.8.)
    assert s["step_ece"] == pytest.approx(1.3 / 3, abs=1e-6)
    assert s["step_accuracy"] == pytest.approx(2 / 3) and s["steps"] == 3 and s["skipped_no_delimiter"] == 1
