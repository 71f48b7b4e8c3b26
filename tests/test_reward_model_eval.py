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
