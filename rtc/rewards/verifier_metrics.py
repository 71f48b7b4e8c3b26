"""Reward-model metrics: AUROC, pairwise ranking, calibration, step accuracy, Monte-Carlo label
agreement, best-of-N selection, and bootstrap intervals over problems.

Search uses a verifier to rank one problem's candidates, so the ranking metrics are within problem:
`within_problem_auroc` (the mean of per-problem AUROCs: each problem weighs the same) and
`pairwise_accuracy` (all (correct, incorrect) pairs of the same problem pooled: each pair weighs the
same, so problems with many right and many wrong candidates count more).

All host-side numpy on arrays already scored; `rtc.rewards.rm_evaluate` does the sampling
and scoring.
"""

from collections.abc import Callable, Mapping, Sequence

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


def pairwise_counts(scores: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(wins f64[P], pairs i64[P]): per problem of `scores: f[P, N]` against `correct: bool[P, N]`, the
    number of (correct, incorrect) candidate pairs and how many the correct one scores higher in, a tie
    counting 1/2 (the Mann-Whitney U statistic, from ranks; Hanley & McNeil 1982)."""
    scores, correct = np.asarray(scores, np.float64), np.asarray(correct, bool)
    if scores.ndim != 2 or scores.shape != correct.shape:
        raise ValueError(
            f"need scores and correct of one shape [P, N], got {scores.shape} and {correct.shape}"
        )
    n_pos = correct.sum(axis=1)  # i[P]
    pairs = n_pos * (scores.shape[1] - n_pos)  # i[P]
    wins = np.zeros(len(scores))
    for p in np.flatnonzero(pairs):
        wins[p] = average_ranks(scores[p])[correct[p]].sum() - n_pos[p] * (n_pos[p] + 1) / 2.0
    return wins, pairs


def mean_problem_auroc(wins: np.ndarray, pairs: np.ndarray) -> float:
    """The mean of `wins / pairs` over problems with any pair (each problem's AUROC, weighted equally);
    `nan` when none has one."""
    wins, pairs = np.asarray(wins, np.float64), np.asarray(pairs)
    has = pairs > 0
    return float(np.mean(wins[has] / pairs[has])) if has.any() else float("nan")


def pooled_pair_accuracy(wins: np.ndarray, pairs: np.ndarray) -> float:
    """`sum(wins) / sum(pairs)` (every pair weighted equally); `nan` without pairs."""
    total = np.sum(pairs)
    return float(np.sum(wins) / total) if total > 0 else float("nan")


def within_problem_auroc(scores: np.ndarray, correct: np.ndarray) -> float:
    """Mean AUROC over problems of `scores: [P, N]` against `correct: bool[P, N]`, on the problems
    with both right and wrong candidates: how well a score ranks one problem's candidates, which is
    what best-of-N needs (a pooled AUROC also rewards telling easy problems from hard ones). Each
    problem weighs the same, however many pairs it has."""
    return mean_problem_auroc(*pairwise_counts(scores, correct))


def pairwise_accuracy(scores: np.ndarray, correct: np.ndarray) -> tuple[float, int]:
    """(accuracy, pairs): over every (correct, incorrect) pair of candidates of the same problem, the
    fraction in which the correct one scores higher, a tie counting 1/2, with the number of pairs.

    scores: f[P, N]; correct: bool[P, N]. Only problems with both kinds have pairs. Unlike
    `within_problem_auroc` each pair weighs the same, so a problem with 4 right and 4 wrong candidates
    (16 pairs) counts 16 times one with 1 right and 1 wrong.
    """
    wins, pairs = pairwise_counts(scores, correct)
    return pooled_pair_accuracy(wins, pairs), int(pairs.sum())


def bootstrap_interval(
    metric_fn: Callable[..., float],
    *per_problem_arrays: np.ndarray,
    num_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """(low, high): the percentile bootstrap interval (Efron 1979, "Bootstrap Methods: Another Look at
    the Jackknife") of `metric_fn(*per_problem_arrays)`, resampling problems with replacement.

    Every array has problems on its first axis ([P, ...]); one resample indexes all of them with the same
    P draws. Resamples whose metric is `nan` (no problem with both right and wrong candidates, say) are
    left out; (nan, nan) when all are. With `metric_fn=np.mean` the draws, and so the interval, are those
    of `rtc.analysis.scaling.bootstrap_interval` at the same seed.
    """
    arrays = [np.asarray(a) for a in per_problem_arrays]
    if not arrays or len({len(a) for a in arrays}) != 1:
        raise ValueError(f"need per-problem arrays of one length, got {[len(a) for a in arrays]}")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be positive, got {num_resamples}")
    num_problems = len(arrays[0])
    if num_problems == 0:
        return float("nan"), float("nan")
    draws = np.random.default_rng(seed).integers(0, num_problems, (num_resamples, num_problems))  # i[R, P]
    values = np.array([metric_fn(*(a[d] for a in arrays)) for d in draws], np.float64)  # f64[R]
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def calibration_bins(confidences, labels, num_bins: int = 10) -> dict[str, np.ndarray]:
    """The non-empty bins of a reliability diagram (Guo et al. 2017, "On Calibration of Modern Neural
    Networks", section 2): {"bin": i[K], "confidence": f64[K] mean confidence, "accuracy": f64[K] mean
    label, "count": i[K]}.

    confidences: f[M] in [0, 1], the verifier's probability that an item is correct; labels: [M] in
    [0, 1] (1 = correct). Bin b of `num_bins` equal-width bins holds confidences in (b/B, (b+1)/B], bin 0
    also 0.
    """
    conf, labels = np.asarray(confidences, np.float64), np.asarray(labels, np.float64)
    if conf.shape != labels.shape or conf.ndim != 1:
        raise ValueError(f"need confidences and labels of one shape [M], got {conf.shape} and {labels.shape}")
    if num_bins < 1:
        raise ValueError(f"num_bins must be positive, got {num_bins}")
    if conf.size and (conf.min() < 0 or conf.max() > 1):
        raise ValueError(f"confidences must lie in [0, 1], got [{conf.min()}, {conf.max()}]")
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    index = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, num_bins - 1)  # i[M]
    count = np.bincount(index, minlength=num_bins)  # i[B]
    kept = np.flatnonzero(count)
    return {
        "bin": kept,
        "confidence": np.bincount(index, conf, num_bins)[kept] / count[kept],
        "accuracy": np.bincount(index, labels, num_bins)[kept] / count[kept],
        "count": count[kept],
    }


def expected_calibration_error(confidences, labels, num_bins: int = 10) -> float:
    """ECE = sum_b |B_b| / n * |acc(B_b) - conf(B_b)| over equal-width bins (Guo et al. 2017, "On
    Calibration of Modern Neural Networks", eq. 3); see `calibration_bins`. `nan` with no items."""
    return ece_of_bins(calibration_bins(confidences, labels, num_bins))


def ece_of_bins(bins: Mapping[str, np.ndarray]) -> float:
    """The ECE of `calibration_bins`' output."""
    count = np.asarray(bins["count"], np.float64)
    if count.sum() == 0:
        return float("nan")
    gaps = np.abs(np.asarray(bins["accuracy"]) - np.asarray(bins["confidence"]))
    return float(np.sum(count / count.sum() * gaps))


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


def wrong_step_masks(
    labels: Sequence[np.ndarray | None], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(wrong_step bool[P, N], labelled bool[P, N]) from per-solution step labels (f32[S_i] or None,
    solutions in problem-major order): whether a solution has labels, and whether any of them is 0."""
    if len(labels) != shape[0] * shape[1]:
        raise ValueError(f"need {shape[0] * shape[1]} solutions' labels for shape {shape}, got {len(labels)}")
    labelled = np.array([x is not None for x in labels], bool).reshape(shape)
    wrong = np.array([x is not None and bool(np.any(np.asarray(x) < 0.5)) for x in labels], bool)
    return wrong.reshape(shape), labelled


def right_answer_wrong_steps(
    correct: np.ndarray, wrong_step: np.ndarray, labelled: np.ndarray, choices: Mapping[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    """{selector: {"rate": ..., "labelled": ...}}: among the candidates a selector picks that have step
    labels (`labelled` of them), the fraction whose final answer is right but whose steps hold a wrong one.

    correct, wrong_step, labelled: bool[P, N]; choices: selector -> i32[P] (the picked candidate). Adds
    `single` (one sample): per problem the fraction among its labelled candidates, averaged over problems
    with any (`labelled` counts those problems). A verifier that rewards answers, not reasoning, picks
    such solutions more often than one sample does.
    """
    correct, labelled = np.asarray(correct, bool), np.asarray(labelled, bool)
    flawed = correct & np.asarray(wrong_step, bool) & labelled  # bool[P, N]
    has = labelled.any(axis=1)  # bool[P]
    per_problem = flawed.sum(axis=1)[has] / labelled.sum(axis=1)[has]
    results = {
        "single": {
            "rate": float(per_problem.mean()) if has.any() else float("nan"),
            "labelled": int(has.sum()),
        }
    }
    rows = np.arange(len(correct))
    for method, picked in choices.items():
        picked = np.asarray(picked)
        kept = labelled[rows, picked]  # bool[P]
        rate = float(flawed[rows, picked][kept].mean()) if kept.any() else float("nan")
        results[method] = {"rate": rate, "labelled": int(kept.sum())}
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
