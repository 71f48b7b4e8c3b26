"""Overthinking and reasoning budgets: accuracy and tokens against the thinking budget, easy vs hard.

Usage:  python -m experiments.overthinking --workdir=DIR [--policy=SFT_RUN] [--problems=128] [--samples=4]
The SFT policy of the quickstart (trained into DIR/sft first when --policy is not given) answers held-out
easy (levels 1-2) and hard (levels 4-5) arithmetic problems under each budget setting: a thinking cap
(`budget_tokens` 0 / 8 / 16 / 32, `reasoning_effort` low / medium / high, none) and s1's budget forcing
(`min_thinking_tokens`: an early `</think>` is replaced by "Wait,", Muennighoff et al. 2025). For each it
records accuracy, thinking and completion tokens, the repetition ("thrashing") rate and the
self-correction rate (`rtc.eval.traces`), and writes DIR/overthinking.md, overthinking.png (accuracy
against mean thinking tokens, easy and hard) and overthinking.json.
"""

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from rtc.data.answers import extract_answer
from rtc.data.tasks import get_task
from rtc.data.tfds_builders import task_records
from rtc.eval import traces
from rtc.eval.accuracy import sample_completions
from rtc.pretrained.run_model import load_model
from rtc.recipes import restore_params
from rtc.sampling import settings as sampler_settings

CONFIGS = Path(__file__).parent / "configs"
GROUPS = {"easy (levels 1-2)": (1, 2), "hard (levels 4-5)": (4, 5)}
# (label, eval settings): caps from none to none-at-all, then forced longer thinking
SETTINGS = (
    ("budget_tokens=0", dict(budget_tokens=0)),
    ("budget_tokens=8", dict(budget_tokens=8)),
    ("budget_tokens=16", dict(budget_tokens=16)),
    ("effort=low", dict(reasoning_effort="low")),
    ("budget_tokens=32", dict(budget_tokens=32)),
    ("effort=medium", dict(reasoning_effort="medium")),
    ("effort=high", dict(reasoning_effort="high")),
    ("no cap", dict()),
    ("forced >= 48 (Wait,)", dict(min_thinking_tokens=48)),
)


def load_config(workdir: Path, variant: str = ""):
    """The quickstart config (loaded from its file, as the CLI loads configs), data under `workdir`."""
    spec = importlib.util.spec_from_file_location("quickstart", CONFIGS / "quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(variant)
    config.data_dir = str(workdir / "data")
    return config


def evaluate_setting(
    config, model, params, tokenizer, records, settings: dict, samples: int, seed: int
) -> dict:
    """Accuracy and token statistics of `samples` completions per record under one budget setting."""
    c = config.copy_and_resolve_references()
    c.eval.update(reasoning_effort=None, budget_tokens=None, min_thinking_tokens=0)
    c.eval.update(settings)
    cfg = sampler_settings.from_block(c.eval, tokenizer, c.eval.temperature)
    rows = [r for r in records for _ in range(samples)]
    texts, thinking = sample_completions(
        model, params, tokenizer, rows, cfg, jax.random.key(seed), c.eval.batch_size
    )
    task = get_task(c.task.name)
    correct = [task.is_correct(extract_answer(t), r) for t, r in zip(texts, rows)]
    lengths = [len(tokenizer.encode(t)) for t in texts]
    return {
        "accuracy": float(np.mean(correct)),
        "thinking_tokens": float(np.mean(thinking)),
        "completion_tokens": float(np.mean(lengths)),
        "repetition_rate": traces.repetition_rate(texts),
        # budget forcing's cue is the sampler's text, not the model retracting a step
        "self_correction_rate": traces.self_correction_rate(
            texts, injected=(c.eval.cue,) if c.eval.min_thinking_tokens else ()
        ),
        "answered": float(np.mean([extract_answer(t) is not None for t in texts])),
        "example": texts[0],
    }


def table(results: dict) -> str:
    lines = [
        "| setting | group | accuracy | thinking tokens | completion tokens | repetition | self-correction | answered |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, by_group in results.items():
        for group, r in by_group.items():
            lines.append(
                f"| {label} | {group} | {r['accuracy']:.3f} | {r['thinking_tokens']:.1f} | "
                f"{r['completion_tokens']:.1f} | {r['repetition_rate']:.3f} | {r['self_correction_rate']:.3f} | "
                f"{r['answered']:.3f} |"
            )
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.add_subplot()
    for group in GROUPS:
        xs = [by_group[group]["thinking_tokens"] for by_group in results.values()]
        ys = [by_group[group]["accuracy"] for by_group in results.values()]
        ax.plot(xs, ys, marker="o", label=group)
        for label, x, y in zip(results, xs, ys):
            ax.annotate(label, (x, y), fontsize=6, alpha=0.7)
    ax.set_xlabel("mean thinking tokens")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy against the thinking budget")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.savefig(path, format="png", bbox_inches="tight")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument(
        "--policy", default="", help="a finished SFT run (default: train one into WORKDIR/sft)"
    )
    parser.add_argument("--problems", type=int, default=128, help="held-out problems per group")
    parser.add_argument("--samples", type=int, default=4, help="sampled completions per problem")
    parser.add_argument(
        "--tiny", action="store_true", help="the quickstart's tiny variant (the tests' model)"
    )
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    policy_dir = args.policy or str(workdir / "sft")
    if not args.policy:  # trains the quickstart policy, or resumes it (a finished run is evaluated again)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "rtc.main",
                f"--config={CONFIGS / 'quickstart.py'}",
                f"--workdir={policy_dir}",
            ],
            check=True,
        )
    config = load_config(workdir, "tiny" if args.tiny else "")
    tokenizer, model, _ = load_model(config)
    params = restore_params(policy_dir)
    records = task_records(config, "test", workdir)
    records = [records[i] for i in range(len(records))]
    groups = {
        name: [r for r in records if int(r["difficulty"]) in levels][: args.problems]
        for name, levels in GROUPS.items()
    }
    results = {}
    for label, settings in SETTINGS:
        results[label] = {
            group: evaluate_setting(
                config, model, params, tokenizer, rows, settings, args.samples, config.seed
            )
            for group, rows in groups.items()
        }
        print(label, {g: round(r["accuracy"], 3) for g, r in results[label].items()}, flush=True)
    text = table(results)
    (workdir / "overthinking.md").write_text(text + "\n")
    (workdir / "overthinking.json").write_text(json.dumps(results, indent=1))
    plot(results, workdir / "overthinking.png")
    print(text)
    return results


if __name__ == "__main__":
    main()
