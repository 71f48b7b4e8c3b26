"""Answer aggregation over N candidate solutions per problem: majority, weighted and best-of-N.

Host-side numpy. Each rule works on whatever candidate columns it is given, so the same function
gives the rule "@k" when the caller passes k of the N columns (`rtc.analysis.scaling` does this for
scaling curves). Answers are compared after `normalize`; rules on answers go through integer ids
(`answer_ids`, -1 = no answer) so a vote is a `bincount`, not a Python loop over candidates.
"""

from collections.abc import Sequence

import numpy as np

NO_ANSWER = -1


def normalize(answer: str | None) -> str | None:
    """The answer with surrounding whitespace stripped; None for a missing or empty answer."""
    if answer is None:
        return None
    return answer.strip() or None


def answer_ids(answers: Sequence[Sequence[str | None]]) -> np.ndarray:
    """i32[P, N]: per problem, the id of each candidate's normalized answer, numbered 0, 1, ... in
    order of first appearance; `NO_ANSWER` (-1) for a missing answer. Ragged rows are padded with -1."""
    width = max((len(row) for row in answers), default=0)
    ids = np.full((len(answers), width), NO_ANSWER, np.int32)
    for p, row in enumerate(answers):
        seen: dict[str, int] = {}
        for i, answer in enumerate(row):
            answer = normalize(answer)
            if answer is not None:
                ids[p, i] = seen.setdefault(answer, len(seen))
    return ids


def _per_answer_totals(ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """f64[P, k]: for each candidate, the total weight of the candidates sharing its answer.

    ids: i32[P, k] (-1 = no answer, weight ignored); weights: f[P, k].
    """
    num_problems, _ = ids.shape
    num_ids = int(ids.max(initial=NO_ANSWER)) + 1
    if num_ids == 0:
        return np.zeros(ids.shape)
    has_answer = ids != NO_ANSWER
    flat = np.arange(num_problems)[:, None] * num_ids + np.where(has_answer, ids, 0)  # i[P, k]
    totals = np.bincount(
        flat[has_answer], weights=weights[has_answer], minlength=num_problems * num_ids
    ).reshape(num_problems, num_ids)
    return np.take_along_axis(totals, np.where(has_answer, ids, 0), axis=1)  # f64[P, k]


def majority_vote_ids(ids: np.ndarray) -> np.ndarray:
    """i32[P]: `majority_vote` on answer ids `ids: i32[P, k]` (-1 = no answer)."""
    ids = np.asarray(ids)
    if ids.shape[1] == 0:
        return np.zeros(len(ids), np.int32)
    votes = _per_answer_totals(ids, np.ones(ids.shape))  # f64[P, k]
    votes = np.where(ids != NO_ANSWER, votes, -1.0)
    # argmax takes the first candidate with the most votes: the first candidate of the tied answer
    # that appears first. With no answers at all every entry is -1 and it returns candidate 0.
    return np.argmax(votes, axis=1).astype(np.int32)


def majority_vote(answers: Sequence[Sequence[str | None]]) -> np.ndarray:
    """i32[P]: per problem, the first candidate carrying the most frequent answer (self-consistency,
    Wang et al. 2023, "Self-Consistency Improves Chain of Thought Reasoning in Language Models").

    Ties go to the answer that appears first; a missing answer never wins unless every answer is
    missing (then candidate 0). Rows may be ragged.
    """
    return majority_vote_ids(answer_ids(answers))


def best_of_n(scores: np.ndarray) -> np.ndarray:
    """i32[P]: per problem, the candidate with the highest verifier score `scores: f[P, k]`.

    Ties go to the first candidate; NaN counts as -inf, so an all-NaN row picks candidate 0.
    """
    scores = np.asarray(scores, np.float64)
    if scores.shape[1] == 0:
        return np.zeros(len(scores), np.int32)
    return np.argmax(np.where(np.isnan(scores), -np.inf, scores), axis=1).astype(np.int32)


def weighted_vote_ids(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """i32[P]: `weighted_vote` on answer ids `ids: i32[P, k]` (-1 = no answer) and `scores: f[P, k]`."""
    ids, scores = np.asarray(ids), np.asarray(scores, np.float64)
    if ids.shape[1] == 0:
        return np.zeros(len(ids), np.int32)
    has_answer = ids != NO_ANSWER
    totals = _per_answer_totals(ids, np.nan_to_num(scores, nan=0.0))  # f64[P, k]
    totals = np.where(has_answer, totals, -np.inf)
    leader = np.argmax(totals, axis=1)  # i[P]: first candidate of the first answer with the top total
    winner = np.take_along_axis(ids, leader[:, None], axis=1)  # i32[P, 1]
    # Among the winner's candidates, the highest score (NaN as -inf), the first on ties.
    ranked = np.where(np.isnan(scores), -np.inf, scores)
    in_winner = ids == winner  # bool[P, k]
    top = np.max(np.where(in_winner, ranked, -np.inf), axis=1, keepdims=True)
    chosen = np.argmax(in_winner & (ranked == top), axis=1)
    return np.where(has_answer.any(axis=1), chosen, best_of_n(scores)).astype(np.int32)


def weighted_vote(answers: Sequence[Sequence[str | None]], scores: np.ndarray) -> np.ndarray:
    """i32[P]: verifier-weighted majority vote over `scores: f[P, N]` (Li et al. 2023, "Making
    Language Models Better Reasoners with Step-Aware Verifier"; Snell et al. 2024, sec. 5, "weighted
    best-of-N").

    Each distinct answer gets the sum of its candidates' scores; the answer with the largest total
    wins (ties: the answer that appears first) and its highest-scoring candidate is returned (ties:
    the first). A NaN score adds 0 weight and ranks below every number. Scores are meant to be
    non-negative (verifier probabilities): a negative score would count against its answer. With
    no answer at all, the highest-scoring candidate (`best_of_n`).
    """
    scores = np.asarray(scores, np.float64)
    ids = answer_ids(answers)
    if ids.shape != scores.shape:
        raise ValueError(f"answers {ids.shape} and scores {scores.shape} must have the same shape")
    return weighted_vote_ids(ids, scores)
