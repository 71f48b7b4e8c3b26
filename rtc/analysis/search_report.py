"""What the test-time-scaling experiment concludes from its searches, and the files it writes.

Compute-optimal selection by predicted difficulty and the router (Snell et al. 2024, sec. 3-4), every
strategy's accuracy within bins of oracle difficulty, and the experiment's outputs: `search_results.json`,
the scaling table and plot, `compute_optimal.md` and the by-difficulty table and plot.
"""

import json

import numpy as np
from etils import epath

from rtc.analysis import by_difficulty, compute_optimal, scaling
from rtc.search.config import CONFIDENCE_STRATEGIES

RESULTS_FILE = "search_results.json"
SEARCH_STRATEGIES = ("beam", "dvts", "mcts", "best_first", *CONFIDENCE_STRATEGIES)


def compute_optimal_outputs(s, big, correct, scores, ks, results, points, tokens_per_sample, np_rng) -> dict:
    """Compute-optimal selection by predicted difficulty (Snell et al. 2024), and the router."""
    predicted = compute_optimal.estimate_pass_rate(np.nan_to_num(scores[:, : s.difficulty_samples]))
    bins = compute_optimal.difficulty_bins(predicted, s.difficulty_bins)
    selectable = {
        name: {n: v for n, v in by_n.items() if n in ks}
        for name, by_n in results.items()
        if name in ("best_of_n", "majority", "weighted", *SEARCH_STRATEGIES)
    }
    optimal = compute_optimal.compare_at_equal_compute(selectable, bins, "best_of_n", np_rng)
    top = max(ks)
    chosen = max(selectable, key=lambda name: selectable[name][top].mean())  # one strategy for all
    # the direct answer is a sample the difficulty estimate did not read (else the router would see it)
    direct_column = s.difficulty_samples if correct.shape[1] > s.difficulty_samples else 0
    direct = correct[:, direct_column].astype(float)
    router = compute_optimal.router_tradeoff(
        predicted,
        direct,
        selectable[chosen][top],
        big.lengths[:, direct_column].astype(float),
        np.full(
            len(direct),
            points[chosen][top]["generated_tokens"] if chosen in points else top * tokens_per_sample,
        ),
        s.router_thresholds,
    )
    return {
        "compute_optimal": optimal,
        "router": router,
        "router_strategy": f"{chosen} at N={top}",
        "selection_all_problems": {
            int(n): {int(b): name for b, name in by_bin.items()}
            for n, by_bin in compute_optimal.select_strategies(selectable, bins).items()
        },
        "difficulty_bins": np.bincount(bins, minlength=s.difficulty_bins).tolist(),
    }


def by_oracle_difficulty(s, correct, results: dict, passes) -> dict:
    """Every strategy's accuracy within bins of oracle difficulty (the fraction of the large-N samples
    that are correct)."""
    oracle_rate = compute_optimal.estimate_pass_rate(correct)
    oracle_bins = compute_optimal.difficulty_bins(oracle_rate, s.difficulty_bins)
    return {
        "accuracy": by_difficulty.accuracy_by_bin(
            {**results, "pass@N": passes}, oracle_bins, s.difficulty_bins
        ),
        "problems": np.bincount(oracle_bins, minlength=s.difficulty_bins).tolist(),
        "pass_at_1": [
            float(oracle_rate[oracle_bins == b].mean()) if np.any(oracle_bins == b) else None
            for b in range(s.difficulty_bins)
        ],
    }


def write_outputs(workdir: epath.Path, outputs: dict, name: str) -> None:
    """`search_results.json`, `scaling.{md,png}`, `compute_optimal.md` and `scaling_by_difficulty.{md,png}`;
    prints the tables."""
    curves = outputs["curves"]
    (workdir / RESULTS_FILE).write_text(json.dumps(outputs, indent=1, default=float))
    table = scaling.curve_table(curves["curves"], curves["compute"])
    (workdir / "scaling.md").write_text(table + "\n")
    with (workdir / "scaling.png").open("wb") as png:
        scaling.plot_curves(
            curves["curves"],
            curves["compute"],
            png,
            f"{name}: accuracy vs generated tokens",
            curves["oracle"],
        )
    optimal = format_optimal(outputs["compute_optimal"], outputs["router"], outputs["router_strategy"])
    (workdir / "compute_optimal.md").write_text(optimal + "\n")
    binned = outputs["by_oracle_difficulty"]
    by_bin = by_difficulty.bin_table(binned["accuracy"], binned["problems"], binned["pass_at_1"])
    (workdir / "scaling_by_difficulty.md").write_text(by_bin + "\n")
    with (workdir / "scaling_by_difficulty.png").open("wb") as png:
        by_difficulty.plot_by_bin(
            binned["accuracy"],
            binned["pass_at_1"],
            png,
            f"{name}: accuracy vs N by oracle difficulty (bins of pass@1, hardest first)",
        )
    print(table)
    print(optimal)
    print(by_bin)


def format_optimal(optimal: dict, router: list[dict], router_strategy: str = "") -> str:
    lines = ["| N | compute-optimal | best-of-N |", "|---|---|---|"]
    for n, row in sorted(optimal.items()):
        lines.append(f"| {n} | {row['compute_optimal']:.3f} | {row['best_of_n']:.3f} |")
    lines += [
        "",
        f"Router: one sample, or {router_strategy} when the predicted pass rate is below the threshold.",
        "",
    ]
    lines += ["| router threshold | accuracy | mean tokens | routed to search |", "|---|---|---|---|"]
    for r in router:
        lines.append(
            f"| {r['threshold']:.2f} | {r['accuracy']:.3f} | {r['mean_tokens']:.1f} | "
            f"{r['fraction_routed']:.2f} |"
        )
    return "\n".join(lines)
