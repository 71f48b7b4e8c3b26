"""Held-out accuracy of several finished runs on the same problems, with each run's difference from the
first as a paired bootstrap interval.

Usage:  python -m experiments.paired_eval --out=runs/paired.md sft=RUN grpo=RUN ... [--problems=1000]

Every run answers the same first `--problems` held-out problems of the first run's task (prepared under
`--data_dir`, default the first run's own data folder), greedily and at the first run's evaluation
temperature (one sample per problem, one seed for every run). A 512-problem evaluation's interval on one
accuracy is about +-4 points; a difference between two runs on the same problems varies much less than
that, because most problems are solved by both or by neither: the interval here resamples problems once
for both runs (`scaling.bootstrap_interval` of the per-problem differences; Efron 1979), so it resolves a
1-2-point gain where two unpaired intervals cannot. Writes a markdown table to --out and prints it, and
beside it (.json) every run's per-problem correctness and the problems' levels, to pair other runs later.
"""

import argparse
import json
from pathlib import Path

import jax
import numpy as np

from rtc.analysis.scaling import bootstrap_interval
from rtc.data.answers import extract_answer
from rtc.data.tasks import get_task
from rtc.data.tfds_builders import task_records
from rtc.eval.accuracy import sample_completions
from rtc.recipes import load_run, read_config
from rtc.sampling import settings


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="NAME=RUN_DIR, the first one the baseline")
    parser.add_argument("--out", required=True, help="the markdown table's path")
    parser.add_argument("--problems", type=int, default=1000, help="held-out problems (at most the split)")
    parser.add_argument("--data_dir", default="", help="where the held-out split is prepared")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args(argv)
    if any("=" not in r for r in args.runs):
        parser.error("each run is NAME=RUN_DIR")
    return args


def correct_per_problem(run_dir: str, records, task, temperature: float, batch_size: int, seed: int):
    """bool[P]: whether the run's completion of each record (greedy at temperature 0) is right."""
    config, tokenizer, model, params = load_run(run_dir)
    cfg = settings.from_block(config.eval, tokenizer, temperature)
    texts, _ = sample_completions(model, params, tokenizer, records, cfg, jax.random.key(seed), batch_size)
    return np.array([task.is_correct(extract_answer(text), r) for text, r in zip(texts, records)])


def table(results: dict, levels: np.ndarray, resamples: int) -> str:
    """Markdown: per run and decoding, accuracy (interval), difference from the first run (paired
    interval) and the difference by difficulty level."""
    names = list(results)
    base = results[names[0]]
    shown = sorted(set(levels.tolist()))
    lines = [
        "| run | decoding | accuracy (95% interval) | minus " + names[0] + " (paired 95% interval) | "
        + " | ".join(f"L{x}" for x in shown) + " |",
        "|---|---|---|---|" + "---|" * len(shown),
    ]  # fmt: skip
    for name in names:
        for mode, correct in results[name].items():
            low, high = bootstrap_interval(correct, resamples)
            diff = correct.astype(float) - base[mode]
            d_low, d_high = bootstrap_interval(diff, resamples)
            by_level = [f"{100 * diff[levels == x].mean():+.1f}" for x in shown]
            lines.append(
                f"| {name} | {mode} | {100 * correct.mean():.1f}% [{100 * low:.1f}, {100 * high:.1f}] | "
                f"{100 * diff.mean():+.1f} [{100 * d_low:+.1f}, {100 * d_high:+.1f}] | " + " | ".join(by_level) + " |"
            )  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    runs = dict(r.split("=", 1) for r in args.runs)
    first = next(iter(runs.values()))
    config = read_config(first)
    if args.data_dir:
        config.data_dir = args.data_dir
    split = task_records(config, "test", first)
    records = [split[i] for i in range(min(args.problems, len(split)))]
    task = get_task(config.task.name)
    levels = np.array([int(r["difficulty"]) for r in records])
    decodings = {"greedy": 0.0, "sampled": float(config.eval.temperature)}
    results = {
        name: {
            mode: correct_per_problem(run_dir, records, task, t, args.batch_size, config.seed + 1)
            for mode, t in decodings.items()
        }
        for name, run_dir in runs.items()
    }
    text = (
        f"{config.task.name}: the first {len(records)} held-out problems, temperature "
        f"{config.eval.temperature} for sampled; {args.resamples} bootstrap resamples; by level: the "
        f"difference from {next(iter(runs))} in points.\n\n" + table(results, levels, args.resamples)
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    per_problem = {
        name: {m: c.astype(int).tolist() for m, c in by_mode.items()} for name, by_mode in results.items()
    }
    out.with_suffix(".json").write_text(json.dumps({"levels": levels.tolist(), "correct": per_problem}))
    print(text)
    return results


if __name__ == "__main__":
    main()
