"""Accuracy against generated tokens for confidence-aware voting (Fu et al. 2025, "Deep Think with
Confidence"): offline rules by subsampling one large-N run, and points measured by separate runs.

A point is `(mean accuracy, interval low, interval high)` over problems with its tokens per problem and
wall-clock seconds (and, where counted, forward FLOPs per problem: `trace_flops`); the offline rules
(majority, confidence-weighted, top-eta% filtered) see k of the N samples, averaged over random k-subsets
(`rtc.analysis.scaling`). Host-side numpy.
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


def trace_flops(config, prompt, generated) -> np.ndarray:
    """f64[...]: forward FLOPs of traces that each prefill their own `prompt` tokens and then generate
    `generated` more (`config`: a `ModelConfig`). Token t of the T = prompt + generated attends to t keys, and
    `flops_per_token(context)` (PaLM, App. B) is linear in the context, so the sum over t = 1..T is exactly
    T x flops_per_token((T + 1) / 2). Real tokens only: prompt padding is not counted."""
    total = np.asarray(prompt, np.float64) + np.asarray(generated, np.float64)
    return total * config.flops_per_token((total + 1.0) / 2.0)


def point(
    per_problem: np.ndarray, tokens: float, seconds: float, resamples: int, rng, flops: float | None = None
) -> dict:
    """One curve point: mean accuracy with its bootstrap 95% interval over problems, tokens, seconds and,
    when given, forward FLOPs per problem."""
    per_problem = np.asarray(per_problem, np.float64)
    low, high = scaling.bootstrap_interval(per_problem, resamples, rng=rng)
    p = {
        "accuracy": (float(per_problem.mean()), low, high),
        "tokens": float(tokens),
        "seconds": float(seconds),
    }
    if flops is not None:
        p["flops"] = float(flops)
    return p


def table(points: Mapping[str, Mapping[int, dict]], reference: str = "majority") -> str:
    """Markdown: one row per (method, N): traces drawn and tokens per problem, tokens as a share of
    `reference` at the same N (of its variant of the same name, `majority, refill 4` for `deepconf_low,
    refill 4`, where there is one), accuracy with its interval, wall-clock seconds and, where given, the
    share of traces stopped early."""
    lines = [
        "| method | N | traces / problem | tokens / problem | tokens vs majority | accuracy | 95% interval "
        "| seconds | stopped |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, by_n in points.items():
        for n, p in sorted(by_n.items()):
            _, sep, variant = method.partition(", ")
            same = reference + sep + variant
            ref = points.get(same if same in points else reference, {}).get(n)
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


def best_within(points: Mapping[str, Mapping[int, dict]], flops: float) -> tuple[str, int, dict] | None:
    """`(method, N, point)` of the most accurate point that spends at most `flops` per problem (ties: the
    cheaper one); None when every point costs more."""
    within = [(m, n, p) for m, by_n in points.items() for n, p in by_n.items() if p["flops"] <= flops]
    return max(within, key=lambda x: (x[2]["accuracy"][0], -x[2]["flops"]), default=None)


def flops_table(points: Mapping[str, Mapping[int, dict]]) -> str:
    """Markdown: one row per (method, N): traces and tokens per problem, forward FLOPs per problem, accuracy
    with its interval."""
    lines = [
        "| method | N | traces / problem | tokens / problem | GFLOPs / problem | accuracy | 95% interval |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, by_n in points.items():
        for n, p in sorted(by_n.items()):
            mean, low, high = p["accuracy"]
            lines.append(
                f"| {method} | {n} | {p.get('traces', n):.1f} | {p['tokens']:.1f} | {p['flops'] / 1e9:.3f} "
                f"| {mean:.3f} | [{low:.3f}, {high:.3f}] |"
            )
    return "\n".join(lines)


def equal_flops_table(points: Mapping[str, Mapping[int, dict]]) -> str:
    """Markdown: every point of another model (methods not named after the first method's model, e.g.
    "cpu-medium greedy" beside "cpu-small majority") against the most accurate point of the first model
    that spends at most its FLOPs (`best_within`)."""
    first = next(iter(points)).split(" ")[0]
    ours = {m: by_n for m, by_n in points.items() if m.startswith(first + " ")}
    lines = [
        f"| other model | GFLOPs | accuracy | best {first} point within its FLOPs | GFLOPs | accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for method, by_n in points.items():
        for n, p in sorted(by_n.items()) if method not in ours else ():
            best = best_within(ours, p["flops"])
            mine = "none | - | -"
            if best:
                mine = f"{best[0]} N={best[1]} | {best[2]['flops'] / 1e9:.3f} | {best[2]['accuracy'][0]:.3f}"
            lines.append(f"| {method} N={n} | {p['flops'] / 1e9:.3f} | {p['accuracy'][0]:.3f} | {mine} |")
    return "\n".join(lines)


def plot_flops(points: Mapping[str, Mapping[int, dict]], path, title: str) -> None:
    """A PNG of accuracy against forward FLOPs per problem (log x), each method's interval shaded (a method
    of one point: a marker with an error bar)."""
    # The Figure API draws with Agg without pyplot, so plotting never switches a caller's backend.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=120)
    ax = fig.add_subplot()
    for method, by_n in points.items():
        ns = sorted(by_n)
        x = np.array([by_n[n]["flops"] for n in ns])
        mean, low, high = np.array([by_n[n]["accuracy"] for n in ns]).T
        if len(ns) == 1:
            ax.errorbar(x, mean, yerr=[mean - low, high - mean], marker="s", ms=7, capsize=4, label=method)
            continue
        (line,) = ax.plot(x, mean, marker="o", ms=3, label=method)
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.12)
    ax.set_xscale("log")
    ax.set_xlabel("forward FLOPs per problem")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path, format="png", bbox_inches="tight")
