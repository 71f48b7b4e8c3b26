"""The "aha moment" (DeepSeek-R1, sec. 2.2.4): does self-correction emerge over RL training?

Usage:  python -m experiments.aha --workdir=DIR [--sft_workdir=SFT_RUN] [rtc.main config flags ...]
Runs GRPO (`experiments/configs/grpo.py`, from the SFT run given, else trained first) into DIR/grpo unless
it has finished, then reads its `metrics.jsonl` and `traces.jsonl` (sample completions saved at each
logged step) and writes DIR/aha.md (self-correction, repetition, accuracy and length over training, the
accuracy of traces that self-correct against those that do not, and example traces from the start and
the end of training) and DIR/aha.png (the same curves). `--summarize_only` reads an existing run.
A trace self-corrects when it changes its mind: a step recomputes an earlier step's expression and gets
another value, or a cue such as "Wait" is followed by a different value that does not build on the one
before it; a repeated step is not a correction (`rtc.eval.traces`).
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from rtc.eval import traces
from rtc.metrics import read_metrics

CURVES = (
    ("self_correction_rate", "self-correction rate"),
    ("repetition_rate", "repetition rate"),
    ("accuracy", "training accuracy (T=1)"),
    ("completion_length", "completion tokens"),
)


def train_curves(run_dir: Path) -> dict[str, np.ndarray]:
    """{name: f64[steps]} of the training metrics in CURVES, plus "step"."""
    by_step = {m["step"]: m for m in read_metrics(run_dir) if "train/loss" in m}  # a resumed step: last wins
    train = [by_step[step] for step in sorted(by_step)]
    out = {"step": np.array([m["step"] for m in train], np.float64)}
    for key, _ in CURVES:
        out[key] = np.array([m.get(f"train/{key}", np.nan) for m in train], np.float64)
    return out


def thirds_table(curves: dict[str, np.ndarray]) -> str:
    """Means over the first, middle and last third of training."""
    parts = np.array_split(np.arange(len(curves["step"])), 3)
    spans = [f"steps {int(curves['step'][p[0]])}-{int(curves['step'][p[-1]])}" for p in parts if len(p)]
    lines = ["| | " + " | ".join(spans) + " |", "|---|" + "---|" * len(spans)]
    for key, label in CURVES:
        cells = " | ".join(f"{np.nanmean(curves[key][p]):.3f}" for p in parts if len(p))
        lines.append(f"| {label} | {cells} |")
    return "\n".join(lines)


def conditional_accuracy(samples: list[dict]) -> str:
    """Accuracy of the saved traces that self-correct (or thrash) against those that do not."""
    lines = ["| saved traces | count | accuracy |", "|---|---|---|"]
    for label, key, value in (
        ("self-correcting", "self_corrects", True),
        ("not self-correcting", "self_corrects", False),
        ("repeating a step 3+ times", "thrashes", True),
    ):
        chosen = [s["correct"] for s in samples if s[key] == value]
        accuracy = f"{np.mean(chosen):.3f}" if chosen else "-"
        lines.append(f"| {label} | {len(chosen)} | {accuracy} |")
    return "\n".join(lines)


def examples(samples: list[dict], per_end: int = 2) -> str:
    """Traces from the first and the last logged step (self-correcting ones first at the end)."""
    if not samples:
        return "(no traces.jsonl: the run saved no sample traces; set rl.trace_samples > 0)"
    steps = sorted({s["step"] for s in samples})
    first = [s for s in samples if s["step"] == steps[0]][:per_end]
    last = sorted((s for s in samples if s["step"] == steps[-1]), key=lambda s: not s["self_corrects"])
    blocks = []
    for title, chosen in (
        ("Before (step %d)" % steps[0], first),
        ("After (step %d)" % steps[-1], last[:per_end]),
    ):
        blocks.append(f"**{title}**\n")
        for s in chosen:
            flags = f"correct={s['correct']}, self-corrects={s['self_corrects']}, thrashes={s['thrashes']}"
            blocks.append(f"```\n{s['question']}\n{s['completion']}\n```\n({flags})\n")
    return "\n".join(blocks)


def plot(curves: dict[str, np.ndarray], path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.2), dpi=110)
    axes = fig.subplots(1, len(CURVES))
    for ax, (key, label) in zip(axes, CURVES):
        ax.plot(curves["step"], curves[key], marker=".")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("RL step")
        ax.grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, format="png", bbox_inches="tight")


def summarize(run_dir: Path, out_dir: Path) -> str:
    """Writes `aha.md` and `aha.png` for the RL run in `run_dir`; returns the markdown."""
    curves = train_curves(run_dir)
    if not len(curves["step"]):
        raise SystemExit(f"{run_dir} has no training metrics (metrics.jsonl): is it an RL run?")
    trace_file = run_dir / traces.TRACES_FILE
    samples = traces.read_samples(trace_file) if trace_file.is_file() else []
    text = "\n\n".join(
        [
            f"# Self-correction over RL training (run {run_dir.name})",
            thirds_table(curves),
            conditional_accuracy(samples),
            examples(samples),
        ]
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "aha.md").write_text(text + "\n")
    plot(curves, out_dir / "aha.png", f"self-correction over GRPO training ({int(curves['step'][-1])} steps)")
    (out_dir / "aha.json").write_text(json.dumps({k: v.tolist() for k, v in curves.items()}))
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--sft_workdir", default="", help="a finished SFT run to start GRPO from")
    parser.add_argument("--summarize_only", action="store_true")
    args, config_flags = parser.parse_known_args(argv)
    workdir = Path(args.workdir)
    run_dir = workdir / "grpo"
    if not args.summarize_only:
        command = [
            sys.executable,
            "-m",
            "rtc.main",
            f"--config={Path(__file__).parent / 'configs' / 'grpo.py'}",
            f"--workdir={run_dir}",
            *([f"--config.policy_workdir={args.sft_workdir}"] if args.sft_workdir else []),
            *config_flags,
        ]
        subprocess.run(command, check=True)  # resumes a run that stopped; a finished run is evaluated again
    print(summarize(run_dir, workdir))


if __name__ == "__main__":
    main()
