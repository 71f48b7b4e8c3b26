"""Confidence-aware test-time compute (DeepConf, Fu et al. 2025): accuracy against generated tokens.

Usage:  python -m experiments.deepconf --workdir=DIR [--policy=SFT_RUN] [--problems=200]
The quickstart's SFT policy (trained into DIR/sft first when --policy is not given) answers held-out
arithmetic problems with every rule at N in {4, 8, 16, 32} traces per problem:
- majority, confidence-weighted and top-10% / top-90% confidence-filtered votes (DeepConf offline), from
  one run of 32 traces per problem, subsampled to k of them (`rtc.analysis.confidence_curves`);
- DeepConf-online low (eta 10%) and high (eta 90%): `max(2, N / 4)` warm-up traces set the threshold,
  the other traces stop inside the compiled sampler once their window confidence falls below it;
- adaptive consensus: rounds of 4 traces until the confidence-weighted vote share reaches tau (0.95).
Each point has a bootstrap 95% interval over problems, tokens per problem and the sampler's wall-clock
time (compilation left out); the offline rules' time is the 32-trace run's, scaled by N / 32. Writes deepconf.md, deepconf.png and
deepconf.json to --out (default experiments/results). A stopped trace still holds its row until the
whole call is done, so wall-clock falls less than tokens (slot refill would close the gap).
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from experiments.overthinking import CONFIGS, load_config
from rtc.analysis import confidence_curves
from rtc.data.answers import extract_answer
from rtc.data.format import prompt_tokens
from rtc.data.tasks import get_task
from rtc.data.tfds_builders import task_records
from rtc.eval import voting
from rtc.pretrained.run_model import load_model
from rtc.recipes import restore_params
from rtc.sampling import settings as sampler_settings
from rtc.search import runner
from rtc.search.config import SearchConfig

RESULTS = Path(__file__).parent / "results"


def search_config(config, tokenizer, strategy: str, n: int, args) -> SearchConfig:
    """A confidence strategy at N traces, decoding as the quickstart's evaluation does."""
    s = sampler_settings.from_block(config.eval, tokenizer, config.eval.temperature)
    return SearchConfig(
        strategy=strategy,
        n=n,
        m=1,
        depth=1,
        step_tokens=s.max_new_tokens,
        stop_ids=s.stop_ids,
        delimiter_id=tokenizer.step_id,
        pad_id=s.pad_id,
        rule=s.rule,
        budget=s.budget,
        confidence_k=args.confidence_k,
        window=args.window,
        tau=args.tau,
        round_size=min(args.round_size, n),
    )


def run_chunks(model, params, prompts, cfg, answer_of, chunk: int, seed: int) -> dict:
    """`runner.run` over `prompts` in chunks of `chunk` problems (the last padded with copies of its first,
    so one program serves all); the per-problem results concatenated. Seconds: the mean of every chunk
    but the first (which compiles) times the chunks (consensus still compiles a smaller bucket now and then)."""
    parts, seconds = [], []
    for start in range(0, len(prompts), chunk):
        rows = prompts[start : start + chunk]
        real = len(rows)
        rows = rows + [rows[0]] * (chunk - real)
        rng = jax.random.fold_in(jax.random.key(seed), start)
        out = runner.run(model, params, None, None, rows, rng, cfg, answer_of=answer_of)
        seconds.append(out.seconds)
        parts.append(
            {
                "answers": out.answers[:real],
                "best": out.best[:real],
                "confidence": out.scores[:real],
                "lengths": out.lengths[:real],
                "stopped": out.stopped[:real],
                "drawn": out.drawn[:real],
                "generated": out.generated_tokens[:real],
            }
        )
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "answers"}
    merged["answers"] = [a for p in parts for a in p["answers"]]
    # the first call compiles: time the others, scaled to every chunk
    merged["seconds"] = float(np.mean(seconds[1:]) * len(seconds)) if len(seconds) > 1 else seconds[0]
    return merged


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument(
        "--policy", default="", help="a finished SFT run (default: train one into WORKDIR/sft)"
    )
    parser.add_argument("--out", default=str(RESULTS), help="where deepconf.md / .png / .json go")
    parser.add_argument("--problems", type=int, default=200, help="held-out problems")
    parser.add_argument("--budgets", default="4,8,16,32", help="traces per problem N")
    parser.add_argument("--chunk", type=int, default=16, help="problems per sampler call")
    parser.add_argument("--confidence_k", type=int, default=20)
    parser.add_argument("--window", type=int, default=8, help="tokens in the group-confidence window")
    parser.add_argument("--tau", type=float, default=0.95)
    parser.add_argument("--round_size", type=int, default=4)
    parser.add_argument("--draws", type=int, default=50, help="random k-subsets per offline point")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--tiny", action="store_true", help="the quickstart's tiny variant (the tests' model)"
    )
    args = parser.parse_args(argv)
    workdir, out_dir = Path(args.workdir), Path(args.out)
    workdir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    policy_dir = args.policy or str(workdir / "sft")
    if not args.policy:  # trains the quickstart policy, or resumes it
        config_arg = f"--config={CONFIGS / 'quickstart.py'}" + (":tiny" if args.tiny else "")
        subprocess.run([sys.executable, "-m", "rtc.main", config_arg, f"--workdir={policy_dir}"], check=True)
    config = load_config(workdir, "tiny" if args.tiny else "")
    tokenizer, model, _ = load_model(config)
    params = restore_params(policy_dir)
    records = task_records(config, "test", workdir)
    records = [records[i] for i in range(min(args.problems, len(records)))]
    prompts = [prompt_tokens(tokenizer, r) for r in records]
    task = get_task(config.task.name)
    budgets = [int(n) for n in args.budgets.split(",")]
    big = max(budgets)
    np_rng = np.random.default_rng(config.seed)

    def answer_of(ids: list[int]) -> str | None:
        return extract_answer(tokenizer.decode(ids))

    def grade(answers) -> np.ndarray:  # bool[P, K]
        return np.array(
            [[a is not None and task.is_correct(a, r) for a in row] for row, r in zip(answers, records)]
        )

    started = time.perf_counter()
    points: dict[str, dict[int, dict]] = {}
    # 1. one run of `big` traces per problem: every offline rule by subsampling
    pool = run_chunks(
        model,
        params,
        prompts,
        search_config(config, tokenizer, "confidence_weighted", big, args),
        answer_of,
        max(1, args.chunk * 32 // big),
        config.seed,
    )
    correct = grade(pool["answers"])
    ids = voting.answer_ids(pool["answers"])
    per_sample = float(pool["lengths"].mean())
    offline = confidence_curves.offline_curves(correct, ids, pool["confidence"], budgets, args.draws, np_rng)
    for name, by_k in offline.items():
        points[name] = {
            k: confidence_curves.point(v, k * per_sample, pool["seconds"] * k / big, args.bootstrap, np_rng)
            for k, v in by_k.items()
        }
    print(f"pool: {len(prompts)} problems x {big} traces, {pool['seconds']:.0f} s", flush=True)
    # 2. DeepConf online and 3. adaptive consensus, each a run per N
    for j, strategy in enumerate(("deepconf_low", "deepconf_high", "consensus")):
        points[strategy] = {}
        for n in budgets:
            cfg = search_config(config, tokenizer, strategy, n, args)
            chunk = args.chunk * 4 if strategy == "consensus" else max(1, args.chunk * 32 // n)
            got = run_chunks(model, params, prompts, cfg, answer_of, chunk, config.seed + 1 + j * 100 + n)
            rows = np.arange(len(prompts))
            right = grade(got["answers"])[rows, got["best"]]
            p = confidence_curves.point(
                right, got["generated"].mean(), got["seconds"], args.bootstrap, np_rng
            )
            p["stopped"] = float(got["stopped"].sum() / got["drawn"].sum())
            p["traces"] = float(got["drawn"].sum(axis=1).mean())
            points[strategy][n] = p
            print(
                f"{strategy} N={n}: accuracy {p['accuracy'][0]:.3f}, {p['tokens']:.0f} tokens, "
                f"{p['seconds']:.0f} s",
                flush=True,
            )
    text = confidence_curves.table(points)
    settings = {
        k: v for k, v in vars(args).items() if k not in ("workdir", "policy", "out")
    }  # no local paths
    total = time.perf_counter() - started
    header = (
        f"{config.task.name}, {len(prompts)} held-out problems, policy {Path(policy_dir).name}, "
        f"temperature {config.eval.temperature}, window {args.window}, k {args.confidence_k}, tau {args.tau}; "
        f"{total / 60:.1f} min in all\n\n"
    )
    (out_dir / "deepconf.md").write_text(header + text + "\n")
    (out_dir / "deepconf.json").write_text(json.dumps({"args": settings, "points": points}, indent=1))
    with (out_dir / "deepconf.png").open("wb") as png:
        confidence_curves.plot(points, png, f"{config.task.name}: accuracy vs generated tokens")
    print(header + text)
    return points


if __name__ == "__main__":
    main()
