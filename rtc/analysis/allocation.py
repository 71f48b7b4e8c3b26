"""Samples per question chosen by predicted difficulty under a compute budget, against random routing.

Snell et al. 2024 ("Scaling LLM Test-Time Compute Optimally", sec. 3.1, eq. 1) choose the test-time
strategy per question to maximise expected accuracy at a given budget, conditioned on a difficulty
estimate (sec. 3.2: five bins). Here the strategy is a number of samples N for one rule (majority vote,
best-of-N, ...): every difficulty bin gets one option, the options maximising mean accuracy subject to a
mean cost per question (FLOPs, the predictor's own cost included), fitted on one half of the questions and
scored on the other (two-fold, as Snell et al. sec. 5.3).

Random routing spends the same compute without reading the question: each question draws its option at
random. Mixing two options with probabilities (1 - t, t) costs and scores the mixture of theirs, so the
best random routing at a budget lies on the upper concave hull of the uniform options' (cost, accuracy)
points (`random_routing`). A router beats random routing only if it reads difficulty. Host-side numpy.

Arrays: `acc f[P, K]` each question's expected accuracy under option k, `cost f[P, K]` its FLOPs,
`bins i[P]` in [0, num_bins).
"""

import itertools

import numpy as np


def bin_sums(values: np.ndarray, bins: np.ndarray, num_bins: int) -> np.ndarray:
    """f64[num_bins, K]: the sum of `values f[P, K]` over the questions of each bin."""
    out = np.zeros((num_bins, values.shape[1]))
    np.add.at(out, np.asarray(bins), np.asarray(values, np.float64))
    return out


def allocate(acc: np.ndarray, cost: np.ndarray, bins: np.ndarray, num_bins: int, budget: float) -> np.ndarray:
    """i[num_bins]: the option of each bin maximising the mean accuracy over questions with mean cost <=
    `budget`, by enumerating all K^num_bins choices; ties go to the cheaper choice. When no choice fits,
    the cheapest option everywhere. Empty bins get option 0."""
    num_options = acc.shape[1]
    acc_sum, cost_sum = bin_sums(acc, bins, num_bins), bin_sums(cost, bins, num_bins)
    choices = np.array(list(itertools.product(range(num_options), repeat=num_bins)))  # i[C, num_bins]
    rows = np.arange(num_bins)[None, :]
    total_acc = acc_sum[rows, choices].sum(axis=1)  # f64[C]
    total_cost = cost_sum[rows, choices].sum(axis=1)
    fits = total_cost <= budget * len(bins) * (1 + 1e-12)
    if not fits.any():
        return np.argmin(cost_sum, axis=1) * (cost_sum.sum(axis=1) > 0)
    best = np.lexsort((total_cost, -total_acc, ~fits))[0]  # fits first, then accuracy, then cost
    return np.where(np.bincount(bins, minlength=num_bins) > 0, choices[best], 0)


def apply_choice(acc: np.ndarray, cost: np.ndarray, bins: np.ndarray, choice: np.ndarray) -> tuple:
    """(acc f64[P], cost f64[P]): each question under its bin's option."""
    rows, option = np.arange(len(bins)), np.asarray(choice)[np.asarray(bins)]
    return np.asarray(acc, np.float64)[rows, option], np.asarray(cost, np.float64)[rows, option]


def cross_validated(
    acc: np.ndarray,
    cost: np.ndarray,
    bins: np.ndarray,
    num_bins: int,
    budget: float,
    rng: np.random.Generator,
    predictor_cost: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(acc f64[P], cost f64[P]): every question scored under the allocation fitted on the other half.
    `predictor_cost f[P]`, what reading each question's difficulty cost, is added to every option's cost,
    so it is paid inside the budget and appears in the returned cost."""
    if predictor_cost is not None:
        cost = np.asarray(cost, np.float64) + np.asarray(predictor_cost, np.float64)[:, None]
    order = rng.permutation(len(bins))
    halves = np.sort(order[: len(bins) // 2]), np.sort(order[len(bins) // 2 :])
    out_acc, out_cost = np.zeros(len(bins)), np.zeros(len(bins))
    for fit, score in (halves, halves[::-1]):
        choice = allocate(acc[fit], cost[fit], bins[fit], num_bins, budget)
        out_acc[score], out_cost[score] = apply_choice(acc[score], cost[score], bins[score], choice)
    return out_acc, out_cost


def mixture(mean_acc: np.ndarray, mean_cost: np.ndarray, budget: float) -> dict[int, float]:
    """{option: probability}: the random mix of at most two options with the highest mean accuracy at
    mean cost <= `budget` (a point of the upper concave hull of the options' (cost, accuracy)); below the
    cheapest option, that option."""
    best_value, best = -np.inf, None
    for i, j in itertools.product(range(len(mean_acc)), repeat=2):
        if mean_cost[i] > budget:
            continue
        if mean_cost[j] > mean_cost[i]:
            t = min(1.0, (budget - mean_cost[i]) / (mean_cost[j] - mean_cost[i]))
        else:
            t = 1.0 if mean_cost[j] <= budget else 0.0
        value = (1 - t) * mean_acc[i] + t * mean_acc[j]
        if value > best_value + 1e-15:
            best_value, best = value, {i: 1 - t, j: t} if i != j else {i: 1.0}
    if best is None:
        return {int(np.argmin(mean_cost)): 1.0}
    return {int(k): float(w) for k, w in best.items() if w > 0}


def random_routing(acc: np.ndarray, cost: np.ndarray, budget: float) -> tuple[np.ndarray, float]:
    """(acc f64[P], mean cost): the best routing that ignores the question at mean cost <= `budget`: each
    question takes option i with probability 1 - t and j with t, for the pair (i, j) and t that maximise
    the mean accuracy (`mixture`). Per question it is that mixture's expected accuracy, so a paired
    comparison with a router is possible."""
    acc, cost = np.asarray(acc, np.float64), np.asarray(cost, np.float64)
    mix = mixture(acc.mean(axis=0), cost.mean(axis=0), budget)
    return sum(w * acc[:, k] for k, w in mix.items()), float(
        sum(w * cost[:, k].mean() for k, w in mix.items())
    )


def random_routing_cross_validated(
    acc: np.ndarray, cost: np.ndarray, budget: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(acc f64[P], cost f64[P]): `random_routing`'s mixture fitted on one half of the questions and
    scored on the other, both ways, so it is compared with a cross-validated router on equal terms."""
    order = rng.permutation(len(acc))
    halves = np.sort(order[: len(acc) // 2]), np.sort(order[len(acc) // 2 :])
    out_acc, out_cost = np.zeros(len(acc)), np.zeros(len(acc))
    for fit, score in (halves, halves[::-1]):
        mix = mixture(np.asarray(acc)[fit].mean(axis=0), np.asarray(cost)[fit].mean(axis=0), budget)
        out_acc[score] = sum(w * np.asarray(acc)[score, k] for k, w in mix.items())
        out_cost[score] = sum(w * np.asarray(cost)[score, k] for k, w in mix.items())
    return out_acc, out_cost


def cost_to_reach(points: list[tuple[float, float]], target: float) -> float | None:
    """The least mean cost among (cost, accuracy) points whose accuracy is >= `target`; None if none is."""
    reached = [c for c, a in points if a >= target - 1e-12]
    return min(reached) if reached else None
