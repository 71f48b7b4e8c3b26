"""Compute-optimal test-time scaling: pick the search strategy per difficulty bin, and route questions.

Snell et al. 2024, "Scaling LLM Test-Time Compute Optimally can be More Effective than Scaling Model
Parameters": at a fixed generation budget the best strategy (best-of-N, weighted vote, beam search,
...) depends on how hard the question is, so they bin questions by an estimate of the base model's
pass@1 (sec. 3.2), choose the best strategy per bin and budget on one split and evaluate it on the
other (two-fold cross-validation, sec. 3.2 and 5.3). The router applies the same predicted difficulty
to a cheaper decision: give a question the reasoning mode at all (search), or answer
directly. Host-side numpy.

`results` throughout is `{strategy: {budget: f[P] per-problem accuracy}}`, e.g. from
`rtc.analysis.scaling.per_problem_curves`.
"""

from collections.abc import Mapping, Sequence

import numpy as np

Results = Mapping[str, Mapping[int, np.ndarray]]


def estimate_pass_rate(scores_or_correct: np.ndarray) -> np.ndarray:
    """f64[P]: mean over a few samples per problem `f[P, n]` (Snell et al. 2024, sec. 3.2).

    From the verifier's scores of the policy's own samples it is "model-predicted difficulty"; from
    the checked correctness of held-out samples it is "oracle difficulty".
    """
    return np.mean(np.asarray(scores_or_correct, np.float64), axis=1)


def difficulty_bins(pass_rate: np.ndarray, num_bins: int = 5) -> np.ndarray:
    """i32[P]: quantile bin of each problem's estimated pass rate `f[P]`, bin 0 the hardest (lowest
    pass rate); Snell et al. 2024 use 5 bins of pass@1 (sec. 3.2).

    A problem's bin is floor(num_bins * (problems with a strictly lower rate) / P), so equal rates
    always share a bin; with many ties (or fewer distinct rates than bins) some bins stay empty.
    """
    pass_rate = np.asarray(pass_rate, np.float64)
    num_lower = np.searchsorted(np.sort(pass_rate), pass_rate, side="left")  # i[P]
    return (num_lower * num_bins // max(len(pass_rate), 1)).astype(np.int32)


def select_strategies(results: Results, bins: np.ndarray) -> dict[int, dict[int, str]]:
    """{budget: {bin: strategy}}: the strategy with the highest mean accuracy in each difficulty bin
    at each budget (Snell et al. 2024, sec. 3.1, eq. 1); ties go to the strategy listed first. A budget only
    considers the strategies that have it. bins: i[P], aligned with the arrays of `results`."""
    bins = np.asarray(bins)
    budgets = sorted({int(b) for by_budget in results.values() for b in by_budget})
    selection = {}
    for budget in budgets:
        candidates = [s for s in results if budget in results[s]]
        selection[budget] = {}
        for b in np.unique(bins).tolist():
            in_bin = bins == b
            means = [np.mean(np.asarray(results[s][budget])[in_bin]) for s in candidates]
            selection[budget][int(b)] = candidates[int(np.argmax(means))]
    return selection


def _nearest(fitted: Sequence[int], b: int) -> int:
    """The fitted bin closest to `b`, the lower one on ties."""
    return min(fitted, key=lambda f: (abs(f - b), f))


def apply_selection(
    results: Results, bins: np.ndarray, selection: Mapping[int, Mapping[int, str]]
) -> dict[int, np.ndarray]:
    """{budget: f64[P]}: each problem's accuracy under its bin's chosen strategy. A bin the selection
    was not fitted on (absent from the fitting split) takes the strategy of the nearest fitted bin."""
    bins = np.asarray(bins)
    accuracy = {}
    for budget, by_bin in selection.items():
        per_problem = np.zeros(len(bins))
        for b in np.unique(bins).tolist():
            strategy = by_bin[b] if b in by_bin else by_bin[_nearest(list(by_bin), b)]
            in_bin = bins == b
            per_problem[in_bin] = np.asarray(results[strategy][budget])[in_bin]
        accuracy[budget] = per_problem
    return accuracy


def split_half(num_problems: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(fit_idx i[P//2], eval_idx i[P - P//2]): a random split of the problems into two disjoint halves."""
    order = rng.permutation(num_problems)
    half = num_problems // 2
    return np.sort(order[:half]), np.sort(order[half:])


def _take(results: Results, idx: np.ndarray) -> dict[str, dict[int, np.ndarray]]:
    return {s: {b: np.asarray(v)[idx] for b, v in by_budget.items()} for s, by_budget in results.items()}


def cross_validated(results: Results, bins: np.ndarray, rng: np.random.Generator) -> dict[int, float]:
    """{budget: mean accuracy} of per-bin strategy selection under two-fold cross-validation (Snell et
    al. 2024, sec. 5.3): selection fitted on one half of the problems is scored on the other, both
    ways, so no problem is scored by a selection fitted on it."""
    bins = np.asarray(bins)
    halves = split_half(len(bins), rng)
    scored: dict[int, np.ndarray] = {}
    for fit_idx, eval_idx in (halves, halves[::-1]):
        selection = select_strategies(_take(results, fit_idx), bins[fit_idx])
        for budget, accuracy in apply_selection(_take(results, eval_idx), bins[eval_idx], selection).items():
            scored.setdefault(budget, np.zeros(len(bins)))[eval_idx] = accuracy
    return {budget: float(v.mean()) for budget, v in scored.items()}


def compare_at_equal_compute(
    results: Results, bins: np.ndarray, baseline: str = "best_of_n", rng: np.random.Generator | None = None
) -> dict[int, dict[str, float]]:
    """{budget: {"compute_optimal": accuracy, baseline: accuracy}}: cross-validated per-bin selection
    against one fixed strategy at the same generation budget (Snell et al. 2024, Fig. 4 and 9)."""
    rng = np.random.default_rng(0) if rng is None else rng
    optimal = cross_validated(results, bins, rng)
    return {
        budget: {"compute_optimal": acc, baseline: float(np.mean(results[baseline][budget]))}
        for budget, acc in optimal.items()
        if budget in results[baseline]
    }


def route(pass_rate_estimate: np.ndarray, threshold: float) -> np.ndarray:
    """bool[P]: True sends the problem to the reasoning mode (or search), for problems predicted hard,
    estimated pass rate below `threshold`: reasoning triggered by a cheap difficulty estimate, as in
    Snell et al. 2024's difficulty-conditioned (compute-optimal) strategy selection."""
    return np.asarray(pass_rate_estimate, np.float64) < threshold


def router_tradeoff(
    pass_rate_estimate: np.ndarray,
    acc_direct: np.ndarray,
    acc_reasoning: np.ndarray,
    tokens_direct: np.ndarray,
    tokens_reasoning: np.ndarray,
    thresholds: Sequence[float],
) -> list[dict[str, float]]:
    """Accuracy against cost of `route` at each threshold: [{threshold, accuracy, mean_tokens,
    fraction_routed}]. All arrays f[P], per problem under each mode; mean_tokens leaves out the cost
    of estimating the pass rate."""
    acc_direct, acc_reasoning = np.asarray(acc_direct, np.float64), np.asarray(acc_reasoning, np.float64)
    tokens_direct = np.asarray(tokens_direct, np.float64)
    tokens_reasoning = np.asarray(tokens_reasoning, np.float64)
    rows = []
    for threshold in thresholds:
        routed = route(pass_rate_estimate, threshold)
        rows.append(
            {
                "threshold": float(threshold),
                "accuracy": float(np.where(routed, acc_reasoning, acc_direct).mean()),
                "mean_tokens": float(np.where(routed, tokens_reasoning, tokens_direct).mean()),
                "fraction_routed": float(routed.mean()),
            }
        )
    return rows
