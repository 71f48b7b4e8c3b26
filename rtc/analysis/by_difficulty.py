"""Test-time scaling by difficulty bin: each strategy's accuracy against budget within each bin.

Snell et al. 2024 (sec. 3.2, fig. 3 right and fig. 4 right) show the curves per difficulty bin: on easy
questions sampling-based rules win and search over-optimises, on hard ones search helps at low
budgets. Bins are quantiles of a pass-rate estimate (`compute_optimal.difficulty_bins`, bin 0 the
hardest); with "oracle difficulty" the estimate is the fraction of a problem's large-N samples that
are correct (the paper's oracle bins, which use ground truth). Host-side numpy.
"""

import typing
from collections.abc import Mapping

import numpy as np

from rtc.analysis.compute_optimal import Results


def accuracy_by_bin(results: Results, bins: np.ndarray, num_bins: int) -> dict[str, dict[int, list]]:
    """{strategy: {budget: [mean accuracy of bin b for b in range(num_bins)]}}, None for an empty bin.

    results: {strategy: {budget: f[P] per-problem accuracy}}; bins: i[P] aligned with those arrays.
    """
    bins = np.asarray(bins)
    out = {}
    for strategy, by_budget in results.items():
        out[strategy] = {}
        for budget, values in sorted(by_budget.items()):
            values = np.asarray(values, np.float64)
            out[strategy][int(budget)] = [
                float(values[bins == b].mean()) if np.any(bins == b) else None for b in range(num_bins)
            ]
    return out


def bin_table(by_bin: Mapping[str, Mapping[int, list]], bin_sizes: list[int], bin_rates: list) -> str:
    """A markdown table: one row per (strategy, budget), one column per bin (hardest first)."""
    header = "| strategy | N | " + " | ".join(
        f"bin {b} ({n} problems, pass@1 {'-' if r is None else f'{r:.2f}'})"
        for b, (n, r) in enumerate(zip(bin_sizes, bin_rates))
    )
    lines = [header + " |", "|---|---|" + "---|" * len(bin_sizes)]
    for strategy, by_budget in by_bin.items():
        for budget, accuracies in by_budget.items():
            cells = " | ".join("-" if a is None else f"{a:.3f}" for a in accuracies)
            lines.append(f"| {strategy} | {budget} | {cells} |")
    return "\n".join(lines)


def plot_by_bin(
    by_bin: Mapping[str, Mapping[int, list]], bin_rates: list, path: str | typing.BinaryIO, title: str = ""
) -> None:
    """Saves a PNG with one panel per difficulty bin: accuracy against N (log2) for each strategy."""
    from matplotlib.figure import Figure

    num_bins = len(bin_rates)
    fig = Figure(figsize=(3.2 * num_bins, 3.4), dpi=110)
    axes = fig.subplots(1, num_bins, sharey=True, squeeze=False)[0]
    for b, ax in enumerate(axes):
        for strategy, by_budget in by_bin.items():
            points = [(n, acc[b]) for n, acc in by_budget.items() if acc[b] is not None]
            if points:
                ns, accs = zip(*points)
                ax.plot(ns, accs, marker="o", label=strategy)
        rate = bin_rates[b]
        ax.set_title(f"bin {b}" + ("" if rate is None else f" (pass@1 {rate:.2f})"), fontsize=9)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("N")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("accuracy")
    fullest = max(axes, key=lambda ax: len(ax.get_lines()))  # a bin may have no points for some strategy
    if fullest.get_lines():
        fullest.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, format="png", bbox_inches="tight")
