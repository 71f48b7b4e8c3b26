"""Accuracy against generated tokens for confidence-aware voting (Fu et al. 2025, "Deep Think with
Confidence"): offline rules by subsampling one large-N run, and points measured by separate runs.

A point is `(mean accuracy, interval low, interval high)` over problems with its tokens per problem and
wall-clock seconds; the offline rules (majority, confidence-weighted, top-eta% filtered) see k of the N
samples, averaged over random k-subsets (`rtc.analysis.scaling`). Host-side numpy.
"""

from collections.abc import Mapping, Sequence

import numpy as np

from rtc.analysis import scaling
from rtc.eval import voting


def offline_rules(etas: Sequence[float] = (10.0, 90.0)) -> dict:
    """{name: rule(ids i32[P, k], confidence f[P, k]) -> i32[P]}: majority, the confidence-weighted vote
    and the vote among the top eta% most confident traces (DeepConf offline)."""
    rules = {
        "majority": lambda ids, conf: voting.majority_vote_ids(ids),
        "confidence_weighted": voting.weighted_vote_ids,
    }
    for eta in etas:
        rules[f"top{eta:g}%_weighted"] = lambda ids, conf, eta=eta: voting.filtered_vote_ids(ids, conf, eta)
    return rules


def offline_curves(
    correct: np.ndarray,
    ids: np.ndarray,
    confidence: np.ndarray,
    ks: Sequence[int],
    num_draws: int,
    rng: np.random.Generator,
    etas: Sequence[float] = (10.0, 90.0),
) -> dict[str, dict[int, np.ndarray]]:
    """{rule: {k: f64[P] expected per-problem accuracy}} from one run: correct: bool[P, N]; ids: i32[P, N]
    answer ids (`voting.answer_ids`); confidence: f[P, N] trace confidences."""
    confidence = np.asarray(confidence, np.float64)
    return {
        name: {
            int(k): scaling.subsample_accuracy(
                correct, scaling.subset_chooser(rule, ids, confidence), int(k), num_draws, rng
            )
            for k in ks
        }
        for name, rule in offline_rules(etas).items()
    }


def point(per_problem: np.ndarray, tokens: float, seconds: float, resamples: int, rng) -> dict:
    """One curve point: mean accuracy with its bootstrap 95% interval over problems, tokens, seconds."""
    per_problem = np.asarray(per_problem, np.float64)
    low, high = scaling.bootstrap_interval(per_problem, resamples, rng=rng)
    return {
        "accuracy": (float(per_problem.mean()), low, high),
        "tokens": float(tokens),
        "seconds": float(seconds),
    }


def table(points: Mapping[str, Mapping[int, dict]], reference: str = "majority") -> str:
    """Markdown: one row per (method, N): traces drawn and tokens per problem, tokens as a share of
    `reference` at the same N, accuracy with its interval, wall-clock seconds and, where given, the share of
    traces stopped early."""
    lines = [
        "| method | N | traces / problem | tokens / problem | tokens vs majority | accuracy | 95% interval "
        "| seconds | stopped |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, by_n in points.items():
        for n, p in sorted(by_n.items()):
            ref = points.get(reference, {}).get(n)
            share = f"{p['tokens'] / ref['tokens']:.2f}" if ref else "-"
            mean, low, high = p["accuracy"]
            stopped = f"{p['stopped']:.2f}" if "stopped" in p else "-"
            lines.append(
                f"| {method} | {n} | {p.get('traces', n):.1f} | {p['tokens']:.1f} | {share} | {mean:.3f} | [{low:.3f}, {high:.3f}] | "
                f"{p['seconds']:.1f} | {stopped} |"
            )
    return "\n".join(lines)


def plot(points: Mapping[str, Mapping[int, dict]], path, title: str) -> None:
    """A PNG of accuracy against generated tokens per problem (log x), each method's interval shaded."""
    curves = {m: {n: p["accuracy"] for n, p in by_n.items()} for m, by_n in points.items()}
    compute = {m: {n: p["tokens"] for n, p in by_n.items()} for m, by_n in points.items()}
    scaling.plot_curves(curves, compute, path, title)
