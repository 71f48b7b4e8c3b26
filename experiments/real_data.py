"""The real-data path: GSM8K and MATH-500 evaluation (prompting, answer extraction, verification, pass@k).

Usage:  python -m experiments.real_data --workdir=DIR [--sft_steps=300] [--problems=64] [--samples=8]
GSM8K and MATH-500 are read from the data root (`$RTC_DATA_DIR`, else `~/.cache/rtc/data`), downloaded and
checked on first use (`rtc.data.download`).
1. Gold check: every gold solution of GSM8K (train and test) and MATH-500, written the way a model would
   write it, must be scored correct by the task's verifier, through two routes: the dataset's own
   solution text (GSM8K's `#### 42` line, MATH's last `\\boxed{}`) and rtc's reasoning format
   (`<think>steps</think><answer>gold</answer>`). As a control, another problem's gold answer must be
   scored wrong (a verifier that accepts everything would pass the first check).
2. The model at hand (`--pretrained=DIR` for another): llama2.c's stories260K (260K parameters, TinyStories;
   under the data root `$RTC_DATA_DIR`, else the copy shipped in `tests/data`)
   as it is, and after `--sft_steps` of SFT on GSM8K's train split in rtc's format
   (`experiments/configs/pretrained_sft.py` with the GSM8K task), each sampling `--samples` completions
   (T=0.7) and one greedy completion per problem on the first `--problems` GSM8K test and MATH-500
   problems whose prompt leaves room for 256 new tokens in a 1,088-token context. Reported: the fraction
   of completions with an extractable answer, greedy accuracy, and unbiased pass@k (Chen et al. 2021)
   for k = 1, 2, 4, ...
Writes DIR/real_data.md, DIR/real_data.png (pass@k against k) and DIR/real_data.json.
"""

import argparse
import importlib.util
import json
import random
from pathlib import Path

import jax
import ml_collections
import numpy as np

from rtc.analysis import scaling
from rtc.data import download, gsm8k, math500, paths
from rtc.data.answers import extract_answer, extract_gsm8k_final, math_equal, numbers_equal
from rtc.data.format import completion_text, prompt_tokens
from rtc.data.tasks import get_task
from rtc.data.tfds_builders import task_records
from rtc.eval.accuracy import sample_completions
from rtc.pretrained.run_model import load_model
from rtc.recipes import restore_params, sft_recipe
from rtc.sampling import settings as sampler_settings

CONFIGS = Path(__file__).parent / "configs"
DATASETS = {"gsm8k": ("gsm8k", "test"), "math500": ("math500", "test")}


def gold_checks(data_dir: Path | None = None, seed: int = 0) -> dict:
    """{dataset/split: {records, dataset_route, rtc_route, wrong_answer_accepted, failures}}."""
    root = Path(data_dir) if data_dir else paths.data_root()
    if not data_dir:  # the data root's checked copies, downloaded when missing
        download.ensure("gsm8k", ("train.jsonl", "test.jsonl"), root)
        download.ensure("math500", ("test.jsonl",), root)
    sources = {
        "gsm8k/train": (root / "gsm8k" / "train.jsonl", "gsm8k"),
        "gsm8k/test": (root / "gsm8k" / "test.jsonl", "gsm8k"),
        "math500/test": (root / "math500" / "test.jsonl", "math500"),
    }
    rng = random.Random(seed)
    out = {}
    for name, (path, task_name) in sources.items():
        task = get_task(task_name)
        raws = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        records = list(gsm8k.read_file(path) if task_name == "gsm8k" else math500.read_file(path))
        dataset_ok, rtc_ok, wrong_ok, wrong_tested, failures = 0, 0, 0, 0, []
        others = list(range(len(records)))
        for i, (raw, record) in enumerate(zip(raws, records)):
            if task_name == "gsm8k":  # the dataset's own final line, read as a model's output would be
                own = numbers_equal(extract_gsm8k_final(raw["answer"]), record["answer"])
            else:
                own = math_equal(math500.extract_boxed(raw["solution"]), record["answer"])
            ours = task.is_correct(extract_answer(completion_text(record)), record)
            other = records[rng.choice(others)]
            if other["answer"] != record["answer"]:  # a pair with the same answer tests nothing
                wrong_tested += 1
                wrong_ok += task.is_correct(other["answer"], record)
            dataset_ok += own
            rtc_ok += ours
            if not (own and ours) and len(failures) < 5:
                failures.append(
                    {"line": i + 1, "answer": record["answer"], "dataset_route": own, "rtc_route": ours}
                )
        out[name] = {
            "records": len(records),
            "dataset_route": dataset_ok / len(records),
            "rtc_route": rtc_ok / len(records),
            "wrong_answer_accepted": wrong_ok / max(wrong_tested, 1),
            "wrong_answer_pairs": wrong_tested,
            "failures": failures,
        }
    return out


def model_config(
    task_name: str, workdir: Path, sft_steps: int, pretrained: str = ""
) -> ml_collections.ConfigDict:
    """`pretrained_sft.py` (stories260K) on `task_name`: rtc's format, 256 new tokens, 1,040-token rows."""
    spec = importlib.util.spec_from_file_location("pretrained_sft", CONFIGS / "pretrained_sft.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config()
    c.task = ml_collections.ConfigDict(dict(name=task_name))
    c.data_dir = str(workdir / "data")
    if pretrained:  # any llama2.c .bin or Hugging Face directory (Llama, Qwen2, Gemma) instead
        c.pretrained = pretrained
    # GSM8K's longest train example is 1,032 tokens in stories260K's vocabulary: positions past the
    # checkpoint's 512 are RoPE extrapolation, and SFT trains them.
    c.model.max_seq_len = 1088
    c.sft.update(seq_len=1040, num_steps=max(sft_steps, 1), batch_size=8, log_every=50, checkpoint_every=100)
    c.eval.update(num_examples=16, batch_size=16, max_new_tokens=256)
    return c


def fitting_records(config, tokenizer, model, task_name: str, split: str, workdir: Path, limit: int):
    """The first `limit` records of the split whose prompt leaves room for `eval.max_new_tokens`."""
    records = task_records(config.copy_and_resolve_references(), split, workdir)
    room = model.max_seq_len - config.eval.max_new_tokens
    chosen, skipped = [], 0
    for i in range(len(records)):
        if len(chosen) == limit:
            break
        if len(prompt_tokens(tokenizer, records[i])) <= room:
            chosen.append(records[i])
        else:
            skipped += 1
    return chosen, skipped


def evaluate(config, tokenizer, model, params, records, samples: int, ks: list[int]) -> dict:
    """Extraction rate, greedy accuracy and pass@k of `samples` sampled completions per record."""
    task = get_task(config.task.name)
    batch = config.eval.batch_size
    greedy, _ = sample_completions(
        model,
        params,
        tokenizer,
        records,
        sampler_settings.from_block(config.eval, tokenizer, 0.0),
        jax.random.key(0),
        batch,
    )
    rows = [r for r in records for _ in range(samples)]
    sampled, _ = sample_completions(
        model,
        params,
        tokenizer,
        rows,
        sampler_settings.from_block(config.eval, tokenizer, 0.7),
        jax.random.key(1),
        batch,
    )
    answers = [extract_answer(t) for t in sampled]
    correct = np.array([task.is_correct(a, r) for a, r in zip(answers, rows)]).reshape(len(records), samples)
    return {
        "problems": len(records),
        "answered": float(np.mean([a is not None for a in answers])),
        "greedy_accuracy": float(
            np.mean([task.is_correct(extract_answer(t), r) for t, r in zip(greedy, records)])
        ),
        "pass_at_k": {
            k: float(scaling.pass_at_k_array(samples, correct.sum(axis=1), k).mean())
            for k in ks
            if k <= samples
        },
        "example": greedy[0],
    }


def obtain_model(task_name: str, workdir: Path, sft_steps: int, pretrained: str = ""):
    """(config, tokenizer, model, params): the checkpoint as loaded, or after SFT on the task's train split."""
    config = model_config(task_name, workdir, sft_steps, pretrained)
    tokenizer, model, params = load_model(config)
    if sft_steps > 0:
        prefix = f"{Path(pretrained).name}_" if pretrained else ""
        run_dir = workdir / f"{prefix}{task_name}_sft"
        sft_recipe(config, run_dir)  # resumes, or returns after evaluating a finished run
        params = restore_params(run_dir)
    return config, tokenizer, model, params


def report(gold: dict, models: dict) -> str:
    lines = [
        "## Gold solutions through the verifier",
        "",
        "| data | records | dataset's own solution text | rtc format | another problem's answer accepted |",
        "|---|---|---|---|---|",
    ]
    for name, g in gold.items():
        lines.append(
            f"| {name} | {g['records']} | {g['dataset_route']:.4f} | {g['rtc_route']:.4f} | {g['wrong_answer_accepted']:.4f} |"
        )
    failures = [
        f"{name} line {f['line']} (answer {f['answer']!r})" for name, g in gold.items() for f in g["failures"]
    ]
    lines += [
        "",
        "Not accepted: " + ("; ".join(failures) if failures else "none"),
        "",
        "## The model at hand",
        "",
    ]
    ks = sorted({int(k) for m in models.values() for r in m.values() for k in r["pass_at_k"]})
    lines.append(
        "| model | data | problems (skipped: too long) | answer extracted | greedy | "
        + " | ".join(f"pass@{k}" for k in ks)
        + " |"
    )
    lines.append("|---|---|---|---|---|" + "---|" * len(ks))
    for model_name, by_data in models.items():
        for data, r in by_data.items():
            cells = " | ".join(f"{r['pass_at_k'].get(k, float('nan')):.3f}" for k in ks)
            lines.append(
                f"| {model_name} | {data} | {r['problems']} ({r['skipped']}) | {r['answered']:.3f} | "
                f"{r['greedy_accuracy']:.3f} | {cells} |"
            )
    return "\n".join(lines)


def plot(models: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.add_subplot()
    for model_name, by_data in models.items():
        for data, r in by_data.items():
            ks = sorted(int(k) for k in r["pass_at_k"])
            ax.plot(ks, [r["pass_at_k"][k] for k in ks], marker="o", label=f"{model_name}, {data}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k")
    ax.set_title("GSM8K and MATH-500 with the model at hand")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path, format="png", bbox_inches="tight")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument(
        "--sft_steps", type=int, default=300, help="SFT steps on GSM8K train (0: base model only)"
    )
    parser.add_argument("--problems", type=int, default=64, help="problems per dataset")
    parser.add_argument("--samples", type=int, default=8, help="sampled completions per problem (pass@k)")
    parser.add_argument("--pretrained", default="", help="another checkpoint (default: stories260K)")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    gold = gold_checks()
    ks = [k for k in (1, 2, 4, 8, 16, 32) if k <= args.samples]
    name = Path(args.pretrained).name if args.pretrained else "stories260K"
    variants = {name: 0} | (
        {f"{name} + {args.sft_steps} SFT steps": args.sft_steps} if args.sft_steps else {}
    )
    models = {}
    for model_name, steps in variants.items():
        config, tokenizer, model, params = obtain_model("gsm8k", workdir, steps, args.pretrained)
        models[model_name] = {}
        for data, (task_name, split) in DATASETS.items():
            c = config.copy_and_resolve_references()
            c.task = ml_collections.ConfigDict(dict(name=task_name))
            records, skipped = fitting_records(c, tokenizer, model, task_name, split, workdir, args.problems)
            result = evaluate(c, tokenizer, model, params, records, args.samples, ks)
            models[model_name][data] = {**result, "skipped": skipped}
            print(model_name, data, {k: round(v, 3) for k, v in result["pass_at_k"].items()}, flush=True)
    text = report(gold, models)
    (workdir / "real_data.md").write_text(text + "\n")
    (workdir / "real_data.json").write_text(json.dumps({"gold": gold, "models": models}, indent=1))
    plot(models, workdir / "real_data.png")
    print(text)
    return {"gold": gold, "models": models}


if __name__ == "__main__":
    main()
