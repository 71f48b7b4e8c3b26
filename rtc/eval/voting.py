"""Answer aggregation over N candidate solutions per problem: majority, weighted, best-of-N, and DeepConf's
confidence-weighted vote, confidence filtering and vote share.

Host-side numpy. Each rule works on whatever candidate columns it is given, so the same function
gives the rule "@k" when the caller passes k of the N columns (`rtc.analysis.scaling` does this for
scaling curves). Answers are compared after `normalize`; rules on answers go through integer ids
(`answer_ids`, -1 = no answer) so a vote is a `bincount`, not a Python loop over candidates.
"""

from collections.abc import Sequence

import numpy as np

from rtc.errors import ConfigError

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


def confidence_weighted_vote(answers: Sequence[Sequence[str | None]], confidence: np.ndarray) -> np.ndarray:
    """i32[P]: DeepConf's confidence-weighted majority vote (Fu et al. 2025, "Deep Think with Confidence"):
    each answer gets `V(a) = sum of C_t` over its traces, with `confidence: f[P, N]` the trace
    confidence (e.g. the lowest group confidence, `rtc.sampling.confidence`, always >= 0); the top
    answer's most confident trace is returned. Ties and NaN as in `weighted_vote`."""
    return weighted_vote(answers, confidence)


def top_confidence_mask(confidence: np.ndarray, eta: float) -> np.ndarray:
    """bool[P, k]: per problem, the `ceil(eta% of k)` traces of highest `confidence: f[P, k]` (at least
    one): DeepConf's confidence filtering (Fu et al. 2025, sec. 3.1; eta = 10: DeepConf-low, 90:
    DeepConf-high). Ties keep the earlier trace; NaN ranks last."""
    if not 0.0 < eta <= 100.0:
        raise ConfigError(f"eta is the percentage of traces kept, in (0, 100], got {eta}")
    confidence = np.asarray(confidence, np.float64)
    k = confidence.shape[1]
    keep = max(1, int(np.ceil(eta * k / 100.0 - 1e-9)))
    order = np.argsort(-np.nan_to_num(confidence, nan=-np.inf), axis=1, kind="stable")  # i[P, k]
    mask = np.zeros(confidence.shape, bool)
    np.put_along_axis(mask, order[:, :keep], True, axis=1)
    return mask


def filtered_vote_ids(
    ids: np.ndarray, confidence: np.ndarray, eta: float, weighted: bool = True
) -> np.ndarray:
    """i32[P]: `filtered_vote` on answer ids `ids: i32[P, k]` (-1 = no answer)."""
    ids = np.asarray(ids)
    if ids.shape[1] == 0:
        return np.zeros(len(ids), np.int32)
    kept = np.where(top_confidence_mask(confidence, eta), ids, NO_ANSWER)
    if weighted:
        return weighted_vote_ids(kept, confidence)
    return majority_vote_ids(kept)


def filtered_vote(
    answers: Sequence[Sequence[str | None]], confidence: np.ndarray, eta: float, weighted: bool = True
) -> np.ndarray:
    """i32[P]: the vote among the top `eta`% most confident traces only (`top_confidence_mask`), weighted
    by confidence (DeepConf's default) or one vote each (Fu et al. 2025, sec. 3.1)."""
    confidence = np.asarray(confidence, np.float64)
    ids = answer_ids(answers)
    if ids.shape != confidence.shape:
        raise ValueError(f"answers {ids.shape} and confidence {confidence.shape} must have the same shape")
    return filtered_vote_ids(ids, confidence, eta, weighted)


def vote_share(ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """f64[P]: the leading answer's share of the vote, `beta = V(a_top) / sum_a V(a)` over the answered
    candidates of `ids: i32[P, k]` (-1 = no answer) with `weights: f[P, k]` (ones for majority): the
    consensus that adaptive sampling stops at (Fu et al. 2025, sec. 3.2). 0 with no answer."""
    ids = np.asarray(ids)
    weights = np.nan_to_num(np.asarray(weights, np.float64), nan=0.0)
    if ids.shape[1] == 0:
        return np.zeros(len(ids))
    has_answer = ids != NO_ANSWER
    totals = np.where(has_answer, _per_answer_totals(ids, weights), 0.0)  # f64[P, k]
    all_votes = np.sum(np.where(has_answer, weights, 0.0), axis=1)
    return np.where(all_votes > 0, totals.max(axis=1) / np.where(all_votes > 0, all_votes, 1.0), 0.0)
