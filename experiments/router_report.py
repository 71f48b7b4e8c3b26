"""The router experiment's report: router.md (the budget table, the paired differences, the predictors'
quality), router.json and router.png, from `experiments.router.main`'s results."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def write(out_dir: Path, results: dict, name: str) -> None:
    """router.md (the budget table, the paired differences, the predictors' quality), .json and .png."""
    curves, top = results["curves"], max(results["ks"])
    routed = [n for n in curves if not n.startswith("uniform ")]
    uniform = [n for n in curves if n.startswith("uniform ")]
    lines = [
        f"{name}; one sample = {results['tokens_per_sample']:.1f} generated tokens, "
        f"{results['unit_flops'] / 1e6:.1f} MFLOPs; the learned predictor costs "
        f"{results['predictor_cost_in_samples']:.3f} samples per question; {results['minutes']} min.",
        "",
        "Accuracy (95% bootstrap interval) and mean cost at a budget per question, in samples' FLOPs "
        "(routers: the rule ("
        + ", ".join(n.removeprefix("uniform ") for n in uniform)
        + ") and N chosen per difficulty bin; random routing: a random mix of the same options; all fitted "
        "on one half of the questions, scored on the other):",
        "",
        "| budget | " + " | ".join(routed) + " |",
        "|---" * (len(routed) + 1) + "|",
    ]
    for i, b in enumerate(p["budget"] for p in curves["random routing"]):
        cells = [_cell(curves[n][i]["accuracy"]) + f" ({curves[n][i]['cost']:.2f})" for n in routed]
        lines.append(f"| {b:g} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Uniform N (cost in samples):",
        "",
        "| N | " + " | ".join(n.removeprefix("uniform ") for n in uniform) + " |",
        "|---" * (len(uniform) + 1) + "|",
    ]
    for j, k in enumerate(results["ks"]):
        cells = [_cell(curves[n][j]["accuracy"]) + f" ({curves[n][j]['cost']:.2f})" for n in uniform]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", "Learned router minus random routing at equal budget (paired bootstrap):", ""]
    lines += ["| budget | difference (points) |", "|---|---|"]
    for p in results["router_minus_random"]:
        d = p["difference"]
        lines.append(f"| {p['budget']:g} | {100 * d[0]:+.1f} [{100 * d[1]:+.1f}, {100 * d[2]:+.1f}] |")
    lines += [
        "",
        f"Cost to reach uniform majority@{top}'s {100 * results['target']:.1f}% (samples per question):",
        "",
    ]
    for n, c in results["cost_to_reach"].items():
        lines.append(
            f"- {n}: " + ("not reached" if c is None else f"{c:.2f} ({c / top:.2f} of majority@{top})")
        )
    lines += ["", "Predicted difficulty against the held-out pass rate:", ""]
    for n, q in results["quality"].items():
        lines.append(
            f"- {n}: Spearman {q['spearman']:.3f}" + (f", RMSE {q['rmse']:.3f}" if "rmse" in q else "")
        )
    text = "\n".join(lines)
    (out_dir / "router.md").write_text(text + "\n")
    (out_dir / "router.json").write_text(json.dumps(results, indent=1))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n, points in curves.items():
        cost = [p["cost"] for p in points]
        accuracy = [100 * p["accuracy"][0] for p in points]
        style = "o-" if n.startswith("uniform") else ".-"
        ax.plot(cost, accuracy, style, label=n)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("mean FLOPs per question (one sample = 1)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(name.split(",")[0] + ": samples by predicted difficulty vs random routing")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "router.png", dpi=120)
    plt.close(fig)
    print(text)


def _cell(accuracy: list[float]) -> str:
    return f"{100 * accuracy[0]:.1f}% [{100 * accuracy[1]:.1f}, {100 * accuracy[2]:.1f}]"
