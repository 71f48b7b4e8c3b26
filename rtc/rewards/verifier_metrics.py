"""Reward-model metrics: AUROC, step accuracy, Monte-Carlo label agreement, best-of-N selection.

All host-side numpy on arrays already scored; `rtc.rewards.rm_evaluate` does the sampling
and scoring.
"""

from collections.abc import Mapping, Sequence

import numpy as np

from rtc.rewards.step_labels import hard_labels
from rtc.eval import voting


def average_ranks(values: np.ndarray) -> np.ndarray:
    """f64[M]: 1-based ranks of `values: [M]`, tied values sharing the mean of their ranks."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]  # first of each run of equal values
    first = np.flatnonzero(starts)
    sizes = np.diff(np.r_[first, len(values)])
    mean_rank = first + (sizes + 1) / 2.0  # ranks first+1 .. first+size, averaged
    ranks = np.empty(len(values))
    ranks[order] = mean_rank[np.cumsum(starts) - 1]
    return ranks


def auroc(scores, labels) -> float:
    """Area under the ROC curve from ranks (Mann-Whitney U / (n_pos * n_neg), Hanley & McNeil 1982).

    It is the probability that a random positive scores above a random negative, a tie counting 1/2.
    `nan` when one class is absent.
    """
    labels = np.asarray(labels, bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(scores)
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def within_problem_auroc(scores: np.ndarray, correct: np.ndarray) -> float:
    """Mean AUROC over problems of `scores: [P, N]` against `correct: bool[P, N]`, on the problems
    with both right and wrong candidates: how well a score ranks one problem's candidates, which is
    what best-of-N needs (a pooled AUROC also rewards telling easy problems from hard ones)."""
    values = [
        auroc(s, c) for s, c in zip(np.asarray(scores), np.asarray(correct, bool)) if 0 < c.sum() < len(c)
    ]
    return float(np.mean(values)) if values else float("nan")


def binary_accuracy(probs, labels, threshold: float = 0.5) -> float:
    """Fraction of `probs > threshold` that agree with `labels > threshold`."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    if probs.size == 0:
        return float("nan")
    return float(np.mean((probs > threshold) == (labels > threshold)))


def label_agreement_by_n(
    outcomes: Sequence[np.ndarray], exact: Sequence[np.ndarray], ns: Sequence[int]
) -> dict[int, float]:
    """{N: fraction of steps whose Math-Shepherd hard label from the first N rollouts equals the exact label}.

    outcomes: bool[S_i, N_max] per solution (`rollout_outcomes`); exact: f32[S_i] per solution.
    """
    truth = np.concatenate([np.asarray(e) > 0.5 for e in exact])
    agreement = {}
    for n in ns:
        predicted = np.concatenate([hard_labels(o, n) for o in outcomes]) > 0.5
        agreement[n] = float(np.mean(predicted == truth))
    return agreement


# Self-consistency lives with the other answer-aggregation rules; kept here for existing callers.
majority_choice = voting.majority_vote


def best_of_n_accuracy(
    correct: np.ndarray, difficulty: np.ndarray, choices: Mapping[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    """{method: {"accuracy": ..., "accuracy/level_k": ...}} of the candidates each method picks.

    correct: bool[P, N]; difficulty: i[P]; choices: method -> i32[P] (the picked candidate). Adds two
    references: `single` (the mean accuracy of one sample, pass@1) and `oracle` (any candidate correct).
    """
    correct = np.asarray(correct, bool)
    picked = {m: correct[np.arange(len(correct)), np.asarray(c)] for m, c in choices.items()}
    per_problem = {"single": correct.mean(axis=1), **picked, "oracle": correct.any(axis=1)}
    results = {}
    for method, hits in per_problem.items():
        hits = np.asarray(hits, np.float64)
        results[method] = {"accuracy": float(hits.mean())}
        for level in sorted(set(np.asarray(difficulty).tolist())):
            results[method][f"accuracy/level_{level}"] = float(hits[difficulty == level].mean())
    return results


def format_columns(results: Mapping[str, Mapping[str, float]], row_keys: Sequence[str], label: str) -> str:
    """A text table: one row per key (`accuracy/level_k` rows print as `k`), one column per method."""
    methods = list(results)
    width = max(12, *(len(m) + 2 for m in methods))
    lines = [f"{label:<12}" + "".join(f"{m:>{width}}" for m in methods)]
    for key in row_keys:
        name = key.split("_")[-1] if key.startswith("accuracy/") else ("all" if key == "accuracy" else key)
        cells = "".join(f"{results[m].get(key, float('nan')):>{width}.3f}" for m in methods)
        lines.append(f"{name:<12}" + cells)
    return "\n".join(lines)


def format_best_of_n(results: Mapping[str, Mapping[str, float]]) -> str:
    """Best-of-N accuracy by difficulty (rows) and selection method (columns)."""
    first = next(iter(results.values()))
    keys = [k for k in first if k.startswith("accuracy/")] + ["accuracy"]
    return format_columns(results, keys, "difficulty")
