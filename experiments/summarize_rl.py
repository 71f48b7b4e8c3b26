"""Compare RL runs: a markdown table of held-out accuracy, stability and memory, and a PNG of training curves.

Usage: `python experiments/summarize_rl.py --out=DIR NAME=WORKDIR [NAME=WORKDIR ...]`
Each WORKDIR is a `rtc.main` run (SFT, GRPO or PPO); its `metrics.jsonl` is read. Writes `DIR/rl_table.md`
and `DIR/rl_curves.png` (reward, accuracy, informative-group fraction, KL, entropy, completion length and
clip fraction over steps). Held-out accuracy carries a 95% Wilson interval over the `--eval_examples`
problems; `tokens_m` is the millions of completion tokens the run sampled (all draws, trained or not).
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rtc.metrics import read_metrics  # noqa: E402

CURVES = (
    "reward_mean",
    "accuracy",
    "informative_fraction",
    "kl",
    "entropy",
    "completion_length",
    "clip_fraction_high",
    "draw_groups_per_trained",
    "logprob_parity_max",
)
LEVELS = (2, 3, 4)


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion `p` observed on `n` trials."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def summary(metrics: list[dict]) -> dict:
    """Final held-out accuracies and the run's stability and memory figures."""
    evals = {}
    for m in metrics:  # greedy and sampled results are separate lines of one evaluation step
        if any(k.startswith("eval/") for k in m):
            evals.setdefault(m["step"], {}).update(m)
    evals = [evals[step] for step in sorted(evals)]
    train = [m for m in metrics if "train/loss" in m and "train/reward_mean" in m]
    memory = [m for m in metrics if "memory/param_and_optimizer_bytes" in m]
    out = {}
    if evals:
        out["greedy"] = evals[-1]["eval/greedy/accuracy"]
        out["sampled"] = evals[-1].get("eval/sampled/accuracy", float("nan"))
        for level in LEVELS:
            out[f"greedy_L{level}"] = evals[-1].get(f"eval/greedy/accuracy/level_{level}", float("nan"))
    if train:
        last = train[-max(1, len(train) // 5) :]  # the last fifth of training
        for key in (
            "reward_mean",
            "kl",
            "clip_fraction_low",
            "clip_fraction_high",
            "entropy",
            "step_seconds",
        ):
            values = [m.get(f"train/{key}", np.nan) for m in last]
            out[key] = float(np.nanmean(values))
        out["max_kl"] = float(np.nanmax([m.get("train/kl", np.nan) for m in train]))
        for key in ("informative_fraction", "draw_groups_per_trained"):  # over the whole run
            out[key] = float(np.nanmean([m.get(f"train/{key}", np.nan) for m in train]))
        out["max_parity"] = float(np.nanmax([m.get("train/logprob_parity_max", np.nan) for m in train]))
        per_step = np.nanmean([m.get("train/sampled_tokens", np.nan) for m in train])
        out["tokens_m"] = float(per_step * train[-1]["step"] / 1e6)
    if memory:
        out["state_mb"] = memory[-1]["memory/param_and_optimizer_bytes"] / 2**20
        out["peak_rss_mb"] = memory[-1]["memory/peak_rss_bytes"] / 2**20
    return out


def table(rows: dict[str, dict], eval_examples: int = 512) -> str:
    cols = (
        "greedy",
        "sampled",
        *(f"greedy_L{level}" for level in LEVELS),
        "reward_mean",
        "informative_fraction",
        "draw_groups_per_trained",
        "tokens_m",
        "kl",
        "max_kl",
        "clip_fraction_high",
        "entropy",
        "max_parity",
        "state_mb",
        "peak_rss_mb",
        "step_seconds",
    )
    lines = ["| run | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in rows.items():
        cells = []
        for col in cols:
            value = row.get(col)
            if value is None or (isinstance(value, float) and np.isnan(value)):
                cells.append("-")
            elif col in ("greedy", "sampled"):
                low, high = wilson(value, eval_examples)
                cells.append(f"{value:.1%} [{low:.1%}, {high:.1%}]")
            elif col.startswith("greedy_L"):
                cells.append(f"{value:.1%}")
            else:
                cells.append(f"{value:.3g}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: dict[str, list[dict]], path: Path) -> None:
    fig, axes = plt.subplots(3, 3, figsize=(13, 10))
    for ax, key in zip(axes.flat, CURVES):
        for name, metrics in runs.items():
            points = [
                (m["step"], m[f"train/{key}"])
                for m in metrics
                if f"train/{key}" in m and "train/reward_mean" in m
            ]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, label=name)
        ax.set_title(key)
        ax.set_xlabel("RL step")
    axes.flat[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--eval_examples", type=int, default=512, help="held-out problems of each evaluation")
    parser.add_argument("runs", nargs="+", help="NAME=WORKDIR")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {}
    for spec in args.runs:
        name, _, workdir = spec.partition("=")
        runs[name] = read_metrics(Path(workdir))
    text = table({name: summary(m) for name, m in runs.items()}, args.eval_examples)
    (out / "rl_table.md").write_text(text + "\n")
    plot(runs, out / "rl_curves.png")
    print(text)
    print(f"\nwrote {out / 'rl_table.md'} and {out / 'rl_curves.png'}")


if __name__ == "__main__":
    main()
