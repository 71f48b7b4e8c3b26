"""Test-time scaling curves from one large-N run: accuracy of each selection rule as it sees k of N samples.

One run samples N candidates per problem; the curve at k < N is the expected accuracy over random
k-subsets of them (Snell et al. 2024, "Scaling LLM Test-Time Compute Optimally can be More Effective
than Scaling Model Parameters"; Brown et al. 2024, "Large Language Monkeys: Scaling Inference Compute
with Repeated Sampling"), so no extra sampling is needed per point. Host-side numpy.
"""

import typing
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from rtc.eval import voting

METHODS = ("majority", "weighted", "best_of_n", "pass")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from `c` correct of `n` samples (Chen et al. 2021, "Evaluating Large Language
    Models Trained on Code", eq. 1): 1 - C(n-c, k) / C(n, k), as 1 - prod_{i=n-c+1}^{n} (1 - k/i)."""
    if not 1 <= k <= n or not 0 <= c <= n:
        raise ValueError(f"need 1 <= k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k_array(n: int, correct_counts: np.ndarray, k: int) -> np.ndarray:
    """f64[P]: `pass_at_k(n, c, k)` for every count in `correct_counts: i[P]`."""
    correct_counts = np.asarray(correct_counts)
    if not 1 <= k <= n or correct_counts.min(initial=0) < 0 or correct_counts.max(initial=0) > n:
        raise ValueError(f"need 1 <= k <= n and 0 <= counts <= n, got n={n}, k={k}")
    # tail[c] = prod of (1 - k/i) over the last c values of i = 1..n. Factors with i <= k are <= 0,
    # but they only enter when n - c < k, where the answer is 1 anyway.
    tail = np.r_[1.0, np.cumprod(1.0 - k / np.arange(n, 0, -1))]  # f64[n + 1]
    return np.where(n - correct_counts < k, 1.0, 1.0 - tail[correct_counts])


def oracle_curve(p, ns: Sequence[int]) -> np.ndarray:
    """f64[len(ns)]: best-of-N with a perfect verifier, 1 - (1 - p)^N for independent samples that are
    each right with probability `p` (Brown et al. 2024, "coverage"). `p` is one number
    or per-problem f[P], then averaged over problems."""
    p = np.atleast_1d(np.asarray(p, np.float64))  # f64[P]
    ns = np.asarray(ns, np.float64)
    return np.mean(1.0 - (1.0 - p[None, :]) ** ns[:, None], axis=1)


def random_subsets(num_problems: int, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """i[P, k]: one uniformly random k-subset of the n columns per problem, in increasing column order
    (so rules that break ties by position see the samples in the order they were drawn)."""
    keys = rng.random((num_problems, n))
    return np.sort(np.argpartition(keys, k - 1, axis=1)[:, :k], axis=1)


def subsample_accuracy(
    correct: np.ndarray,
    choose: Callable[[np.ndarray], np.ndarray],
    k: int,
    num_draws: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """f64[P]: per-problem expected accuracy of a selection rule that sees k of the N candidates.

    correct: bool[P, N]. `choose(idx: i[P, k]) -> i[P]` gets the columns of one random k-subset per
    problem and returns the chosen column (an index into all N). Averages over `num_draws` subsets;
    with k = N every draw is all columns in order.
    """
    correct = np.asarray(correct, bool)
    num_problems, n = correct.shape
    rows = np.arange(num_problems)
    hits = np.zeros(num_problems)
    for _ in range(num_draws):
        hits += correct[rows, choose(random_subsets(num_problems, n, k, rng))]
    return hits / num_draws


def subset_chooser(
    rule: Callable[..., np.ndarray], *columns: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """`choose` for `subsample_accuracy` from a rule on columns (e.g. `voting.weighted_vote_ids`): the
    rule runs on the subset's columns of each array in `columns: [P, N]`, its pick maps back to all N."""

    def choose(idx: np.ndarray) -> np.ndarray:  # i[P, k] -> i[P]
        picked = rule(*(np.take_along_axis(c, idx, axis=1) for c in columns))  # i[P] into the subset
        return np.take_along_axis(idx, picked[:, None].astype(np.intp), axis=1)[:, 0]

    return choose


def method_accuracy(
    method: str,
    correct: np.ndarray,
    answers: Sequence[Sequence[str | None]] | np.ndarray | None,
    scores: np.ndarray | None,
    k: int,
    num_draws: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """f64[P]: expected per-problem accuracy at k of one rule in `METHODS`.

    correct: bool[P, N]; answers: strings [P][N] or their `voting.answer_ids` i32[P, N] (majority,
    weighted); scores: f[P, N] (weighted, best_of_n). "pass" is any correct among the k (a perfect
    verifier), computed exactly with the unbiased estimator instead of by sampling subsets.
    """
    correct = np.asarray(correct, bool)
    if method == "pass":
        return pass_at_k_array(correct.shape[1], correct.sum(axis=1), k)
    if method in ("majority", "weighted"):
        ids = answers if isinstance(answers, np.ndarray) else voting.answer_ids(answers)
    if method == "majority":
        choose = subset_chooser(voting.majority_vote_ids, ids)
    elif method == "weighted":
        choose = subset_chooser(voting.weighted_vote_ids, ids, np.asarray(scores, np.float64))
    elif method == "best_of_n":
        choose = subset_chooser(voting.best_of_n, np.asarray(scores, np.float64))
    else:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    return subsample_accuracy(correct, choose, k, num_draws, rng)


def bootstrap_interval(
    per_problem_values: np.ndarray,
    num_resamples: int = 1000,
    alpha: float = 0.05,
    rng: np.random.Generator | None = None,
) -> tuple[float, float]:
    """(low, high): percentile bootstrap interval of the mean of `per_problem_values: f[P]`, resampling
    problems with replacement (Efron 1979, "Bootstrap Methods: Another Look at the Jackknife")."""
    values = np.asarray(per_problem_values, np.float64)
    rng = np.random.default_rng(0) if rng is None else rng
    means = values[rng.integers(0, len(values), (num_resamples, len(values)))].mean(axis=1)  # f64[R]
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def per_problem_curves(
    correct: np.ndarray,
    answers: Sequence[Sequence[str | None]],
    scores: np.ndarray,
    ks: Sequence[int],
    num_draws: int,
    rng: np.random.Generator,
    methods: Sequence[str] = METHODS,
) -> dict[str, dict[int, np.ndarray]]:
    """{method: {k: f64[P] per-problem expected accuracy}}: the `results` that
    `rtc.analysis.compute_optimal` selects strategies from."""
    ids = voting.answer_ids(answers)
    return {
        m: {int(k): method_accuracy(m, correct, ids, scores, int(k), num_draws, rng) for k in ks}
        for m in methods
    }


def scaling_curves(
    correct: np.ndarray,
    answers: Sequence[Sequence[str | None]],
    scores: np.ndarray,
    ks: Sequence[int],
    tokens_per_sample: np.ndarray | None = None,
    num_draws: int = 100,
    rng: np.random.Generator | None = None,
    num_resamples: int = 1000,
) -> dict:
    """Accuracy-vs-k curves of every rule in `METHODS` from one run, JSON-serialisable:

    `{"curves": {method: {k: (mean, low, high)}}, "compute": {method: {k: tokens}} | None,
    "oracle": {k: 1 - (1 - p)^k averaged over problems}}`, with a bootstrap interval over problems
    and p each problem's fraction of correct samples. correct: bool[P, N]; scores: f[P, N];
    tokens_per_sample: f[P, N] generated tokens, making compute k * mean tokens per sample (the
    verifier's cost is not counted).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    correct = np.asarray(correct, bool)
    per_problem = per_problem_curves(correct, answers, scores, ks, num_draws, rng)
    curves = {
        m: {k: (float(v.mean()), *bootstrap_interval(v, num_resamples, rng=rng)) for k, v in by_k.items()}
        for m, by_k in per_problem.items()
    }
    compute = None
    if tokens_per_sample is not None:
        per_sample = float(np.mean(tokens_per_sample))
        compute = {m: {int(k): int(k) * per_sample for k in ks} for m in METHODS}
    oracle = oracle_curve(correct.mean(axis=1), ks)
    return {"curves": curves, "compute": compute, "oracle": {int(k): float(o) for k, o in zip(ks, oracle)}}


def curve_table(
    curves: Mapping[str, Mapping[int, tuple[float, float, float]]],
    compute: Mapping[str, Mapping[int, float]] | None = None,
) -> str:
    """A markdown table, one row per (method, k): accuracy with its interval, and compute when given."""
    header = "| method | k |" + (" compute |" if compute else "") + " accuracy | interval |"
    lines = [header, "|" + "---|" * header.count(" |")]
    for method, by_k in curves.items():
        for k, (mean, low, high) in sorted(by_k.items(), key=lambda kv: int(kv[0])):
            cost = f" {compute[method][k]:.4g} |" if compute else ""
            lines.append(f"| {method} | {k} |{cost} {mean:.3f} | [{low:.3f}, {high:.3f}] |")
    return "\n".join(lines)


def plot_curves(
    curves: Mapping[str, Mapping[int, tuple[float, float, float]]],
    compute_x: Mapping[str, Mapping[int, float]] | None,
    path: str | typing.BinaryIO,
    title: str = "",
    oracle: Mapping[int, float] | None = None,
) -> None:
    """Saves a PNG of accuracy against compute (or against k) on a log x axis, each method's
    bootstrap interval shaded and the oracle 1 - (1 - p)^k dashed."""
    # The Figure API draws with Agg without pyplot, so plotting never switches a caller's backend.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.add_subplot()

    def x_of(method: str, ks: Sequence[int]) -> np.ndarray:
        return np.array([compute_x[method][k] if compute_x else k for k in ks], np.float64)

    for method, by_k in curves.items():
        ks = sorted(by_k, key=int)
        mean, low, high = np.array([by_k[k] for k in ks]).T
        x = x_of(method, ks)
        (line,) = ax.plot(x, mean, marker="o", label=method)
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2)
    if oracle:
        ks = sorted(oracle, key=int)
        first = next(iter(curves))
        if compute_x:
            ks = [k for k in ks if k in compute_x[first]]
        ax.plot(x_of(first, ks), [oracle[k] for k in ks], "k--", label="oracle 1-(1-p)^k")
    ax.set_xscale("log", base=10 if compute_x else 2)
    ax.set_xlabel("generated tokens per problem" if compute_x else "samples per problem (k)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.savefig(path, format="png", bbox_inches="tight")
