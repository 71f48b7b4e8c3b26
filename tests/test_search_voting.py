"""Answer aggregation on hand examples: majority ties and missing answers, weighted vote against majority,
NaN scores, best-of-N, and hypothesis against plain-Python references."""

import collections
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rtc.rewards import verifier_metrics
from rtc.eval import voting

nan = float("nan")


def test_normalize():
    assert voting.normalize("  42 \n") == "42"
    assert voting.normalize("   ") is None
    assert voting.normalize("") is None
    assert voting.normalize(None) is None


def test_answer_ids_number_answers_by_first_appearance_and_pad_ragged_rows():
    ids = voting.answer_ids([["b", " a", "b ", None, ""], ["z"]])
    np.testing.assert_array_equal(ids, [[0, 1, 0, -1, -1], [0, -1, -1, -1, -1]])


def test_majority_vote_ties_missing_and_whitespace():
    answers = [
        ["3", "4", " 4", "3", None],  # 3 and 4 tie with 2 votes: 3 appears first, candidate 0
        [None, "7", "8", "8"],  # 8 wins: its first candidate is 2
        [None, None],  # nothing to vote on: candidate 0
        ["", " ", "5"],  # empty answers count as missing: 5 is the only answer, candidate 2
        ["1", "2", "2", "1", "1"],  # 1 has 3 votes against 2's 2: candidate 0
    ]
    assert voting.majority_vote(answers).tolist() == [0, 2, 0, 2, 0]


def test_majority_choice_is_the_same_function():
    assert verifier_metrics.majority_choice is voting.majority_vote


def test_majority_vote_at_k_is_the_vote_on_the_columns_passed():
    ids = voting.answer_ids([["a", "b", "b", "c", "c"]])
    # All 5: b and c tie at 2, b first -> candidate 1. Columns [0, 3, 4]: c wins -> position 1 of the subset.
    assert voting.majority_vote_ids(ids).tolist() == [1]
    assert voting.majority_vote_ids(ids[:, [0, 3, 4]]).tolist() == [1]
    # Columns [3, 1, 2]: b has 2 votes vs c's 1 -> position 1 (column 1).
    assert voting.majority_vote_ids(ids[:, [3, 1, 2]]).tolist() == [1]


def test_weighted_vote_disagrees_with_majority():
    answers = [["1", "1", "2"]]
    scores = np.array([[0.2, 0.3, 0.9]])
    # Majority: "1" (2 votes), candidate 0. Weighted: "1" totals 0.2 + 0.3 = 0.5 < "2" with 0.9: candidate 2.
    assert voting.majority_vote(answers).tolist() == [0]
    assert voting.weighted_vote(answers, scores).tolist() == [2]


def test_weighted_vote_returns_the_best_candidate_of_the_winning_answer():
    answers = [["5", "7", "5", "7"]]
    scores = np.array([[0.4, 0.5, 0.6, 0.1]])
    # "5": 0.4 + 0.6 = 1.0 beats "7": 0.5 + 0.1 = 0.6. The best "5" is candidate 2 (0.6), not 0 or 1 (0.5).
    assert voting.weighted_vote(answers, scores).tolist() == [2]


def test_weighted_vote_ties_go_to_the_first_answer():
    answers = [["b", "a", "a"], ["a", "b", None]]
    scores = np.array([[0.5, 0.25, 0.25], [0.5, 0.5, 0.9]])
    # Row 0: b 0.5, a 0.25 + 0.25 = 0.5: b appears first, candidate 0.
    # Row 1: a and b 0.5 each, the missing answer's 0.9 counts for nothing: candidate 0.
    assert voting.weighted_vote(answers, scores).tolist() == [0, 0]


def test_weighted_vote_nan_scores_weigh_nothing():
    answers = [
        ["a", "b", "b"],  # a 0.7; b NaN + 0.6 = 0.6: a wins, candidate 0
        ["x", "x", "y"],  # x NaN + 0.5 = 0.5 beats y 0.4; among x's, NaN ranks below 0.5: candidate 1
        [None, "x", "x"],  # x totals 0 but is the only answer; both its scores NaN: its first, candidate 1
        ["y", "x", "x"],  # all NaN: every total 0, y appears first: candidate 0
    ]
    scores = np.array([[0.7, nan, 0.6], [nan, 0.5, 0.4], [0.9, nan, nan], [nan, nan, nan]])
    assert voting.weighted_vote(answers, scores).tolist() == [0, 1, 1, 0]


def test_weighted_vote_without_answers_falls_back_to_best_score():
    answers = [[None, None, None], [None, None]]
    assert voting.weighted_vote(answers[:1], np.array([[0.1, 0.8, 0.3]])).tolist() == [1]
    assert voting.weighted_vote(answers[1:], np.array([[nan, nan]])).tolist() == [0]


def test_best_of_n_first_on_ties_and_nan_as_minus_infinity():
    scores = np.array([[0.1, 0.9, 0.9], [nan, 0.2, nan], [nan, nan, nan], [-1.0, nan, -2.0]])
    assert voting.best_of_n(scores).tolist() == [1, 1, 0, 0]
    assert voting.best_of_n(scores[:, 2:]).tolist() == [0, 0, 0, 0]  # @1: the only column


def _majority_reference(row):
    votes = collections.Counter(a.strip() for a in row if a is not None and a.strip())
    if not votes:
        return 0
    top = max(votes.values())
    winner = next(a.strip() for a in row if a is not None and votes.get(a.strip()) == top)
    return next(i for i, a in enumerate(row) if a is not None and a.strip() == winner)


def _weighted_reference(row, scores):
    totals = {}
    for a, s in zip(row, scores):
        if a is not None and a.strip():
            totals[a.strip()] = totals.get(a.strip(), 0.0) + (0.0 if math.isnan(s) else s)
    ranked = [-math.inf if math.isnan(s) else s for s in scores]
    if not totals:
        return max(range(len(row)), key=lambda i: (ranked[i], -i))
    top = max(totals.values())
    winner = next(a.strip() for a in row if a is not None and a.strip() and totals[a.strip()] == top)
    mine = [i for i, a in enumerate(row) if a is not None and a.strip() == winner]
    return max(mine, key=lambda i: (ranked[i], -i))


_answer = st.sampled_from([None, "", "1", " 1", "2", "3 "])
_score = st.sampled_from([nan, 0.0, 0.25, 0.5, 1.0])  # dyadic: sums are exact, ties are real ties


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6).flatmap(lambda n: st.lists(st.tuples(_answer, _score), min_size=n, max_size=n)))
def test_votes_match_plain_python_references(row):
    answers = [[a for a, _ in row]]
    scores = np.array([[s for _, s in row]])
    assert voting.majority_vote(answers).tolist() == [_majority_reference(answers[0])]
    assert voting.weighted_vote(answers, scores).tolist() == [_weighted_reference(answers[0], scores[0])]


def test_confidence_filter_keeps_the_top_eta_percent_by_hand():
    conf = np.array([[0.5, 3.0, nan, 3.0, 1.0]])
    # 40% of 5 = 2 traces: 3.0 at column 1, then the tied 3.0 at column 3 (the earlier first); NaN last
    assert voting.top_confidence_mask(conf, 40.0).tolist() == [[False, True, False, True, False]]
    # 10% of 5 rounds up to one trace
    assert voting.top_confidence_mask(conf, 10.0).tolist() == [[False, True, False, False, False]]
    assert voting.top_confidence_mask(conf, 100.0).all()


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6).flatmap(lambda n: st.lists(st.tuples(_answer, _score), min_size=n, max_size=n)))
def test_filter_at_100_percent_is_the_weighted_vote_and_shares_are_fractions(row):
    answers = [[a for a, _ in row]]
    conf = np.array([[s for _, s in row]])
    assert voting.filtered_vote(answers, conf, 100.0).tolist() == [_weighted_reference(answers[0], conf[0])]
    share = voting.vote_share(voting.answer_ids(answers), conf)[0]
    totals = {}
    for a, s in row:
        if a is not None and a.strip():
            totals[a.strip()] = totals.get(a.strip(), 0.0) + (0.0 if math.isnan(s) else s)
    expected = max(totals.values()) / sum(totals.values()) if totals and sum(totals.values()) > 0 else 0.0
    assert share == expected
