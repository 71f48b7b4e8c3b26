"""Confidence-aware test-time compute (DeepConf, Fu et al. 2025): accuracy against generated tokens.

Usage:  python -m experiments.deepconf --workdir=DIR [--policy=SFT_RUN] [--problems=200]
The quickstart's SFT policy (trained into DIR/sft first when --policy is not given) answers held-out
arithmetic problems with every rule at N in {4, 8, 16, 32} traces per problem:
- majority, confidence-weighted and top-10% / top-90% confidence-filtered votes (DeepConf offline), from
  one run of 32 traces per problem, subsampled to k of them (`rtc.analysis.confidence_curves`);
- DeepConf-online low (eta 10%) and high (eta 90%): `max(2, N / 4)` warm-up traces set the threshold,
  the other traces stop inside the compiled sampler once their window confidence falls below it;
- adaptive consensus: rounds of 4 traces until the confidence-weighted vote share reaches tau (0.95;
  `--taus=0.6,0.8` runs one curve per tau, named `consensus(tau=0.6)`, ...).
`--methods` picks what to run (offline, deepconf_low, deepconf_high, consensus); `--merge` adds the new
points to the ones already in --out/deepconf.json (their settings kept beside them) and redraws the
table and plot from all of them.
Each point has a bootstrap 95% interval over problems, tokens per problem and the sampler's wall-clock
time (compilation left out); the offline rules' time is the 32-trace run's, scaled by N / 32. Writes
deepconf.md, deepconf.png and deepconf.json to --out (default experiments/results). A stopped trace still
holds its row until the whole call is done, so wall-clock falls less than tokens (slot refill would close
the gap).
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
ONLINE = ("deepconf_low", "deepconf_high", "consensus")


def search_config(config, tokenizer, strategy: str, n: int, args, tau: float = 0.95) -> SearchConfig:
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
        tau=tau,
        round_size=min(args.round_size, n),
    )


def run_chunks(model, params, prompts, cfg, answer_of, chunk: int, seed: int) -> dict:
    """`runner.run` over `prompts` in chunks of `chunk` problems (the last padded with copies of its first,
    so one program serves all); the per-problem results concatenated. Seconds: the mean of every chunk
    but the first (which compiles) times the chunks (consensus still compiles a smaller bucket now and
    then)."""
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


def parse_args(argv: list[str] | None):
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
    parser.add_argument("--taus", default="0.95", help="consensus vote shares, one curve each")
    parser.add_argument("--methods", default="offline,deepconf_low,deepconf_high,consensus")
    parser.add_argument("--merge", action="store_true", help="add to the points in --out/deepconf.json")
    parser.add_argument("--note", default="", help="a line for the table's header (e.g. the machine load)")
    parser.add_argument("--round_size", type=int, default=4)
    parser.add_argument("--draws", type=int, default=50, help="random k-subsets per offline point")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--tiny", action="store_true", help="the quickstart's tiny variant (the tests' model)"
    )
    args = parser.parse_args(argv)
    unknown = set(args.methods.split(",")) - {"offline", *ONLINE}
    if unknown:
        parser.error(f"unknown --methods {sorted(unknown)}")
    return args


def online_runs(args) -> list[tuple[str, str, float]]:
    """(curve name, strategy, tau) of every run per N that --methods asks for."""
    runs = [(m, m, 0.95) for m in ONLINE[:2] if m in args.methods.split(",")]
    if "consensus" in args.methods.split(","):
        taus = [float(t) for t in args.taus.split(",")]
        runs += [("consensus" if len(taus) == 1 else f"consensus(tau={t:g})", "consensus", t) for t in taus]
    return runs


def merged_points(out_dir: Path, points: dict) -> tuple[dict, list]:
    """`points` over those already in `out_dir/deepconf.json` (N keys back to ints), and every run's
    settings."""
    saved = json.loads((out_dir / "deepconf.json").read_text())
    old = {m: {int(n): p for n, p in by_n.items()} for m, by_n in saved["points"].items()}
    runs = saved.get("runs", [saved.get("args", {})])
    return old | points, runs


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
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
    np_rng = np.random.default_rng(config.seed)

    def answer_of(ids: list[int]) -> str | None:
        return extract_answer(tokenizer.decode(ids))

    def grade(answers) -> np.ndarray:  # bool[P, K]
        return np.array(
            [[a is not None and task.is_correct(a, r) for a in row] for row, r in zip(answers, records)]
        )

    started = time.perf_counter()

    def run(cfg, chunk, seed):
        return run_chunks(model, params, prompts, cfg, answer_of, chunk, seed)

    def make(strategy, n, tau=0.95):
        return search_config(config, tokenizer, strategy, n, args, tau)

    points = {}
    if "offline" in args.methods.split(","):
        points |= offline_points(run, make, grade, budgets, args, config.seed, np_rng)
    for name, strategy, tau in online_runs(args):
        points[name] = {}
        for n in budgets:
            chunk = args.chunk * 4 if strategy == "consensus" else max(1, args.chunk * 32 // n)
            j = ONLINE.index(strategy)  # a seed per strategy and N, whatever else runs
            got = run(make(strategy, n, tau), chunk, config.seed + 1 + j * 100 + n)
            points[name][n] = online_point(got, grade, args, np_rng)
            p = points[name][n]
            accuracy, tokens, seconds = p["accuracy"][0], p["tokens"], p["seconds"]
            print(f"{name} N={n}: accuracy {accuracy:.3f}, {tokens:.0f} tokens, {seconds:.0f} s", flush=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("workdir", "policy", "out", "merge")}
    settings["minutes"] = round((time.perf_counter() - started) / 60, 1)
    runs = [settings]
    if args.merge:
        points, runs = merged_points(out_dir, points)
        runs = runs + [settings]
    write(
        out_dir,
        points,
        runs,
        f"{config.task.name}, {len(prompts)} held-out problems, policy "
        f"{Path(policy_dir).name}, temperature {config.eval.temperature}",
    )
    return points


def offline_points(run, make, grade, budgets, args, seed, np_rng) -> dict:
    """One run of max(N) traces per problem: every offline rule at each N by subsampling."""
    big = max(budgets)
    pool = run(make("confidence_weighted", big), max(1, args.chunk * 32 // big), seed)
    correct = grade(pool["answers"])
    ids = voting.answer_ids(pool["answers"])
    per_sample = float(pool["lengths"].mean())
    offline = confidence_curves.offline_curves(correct, ids, pool["confidence"], budgets, args.draws, np_rng)
    print(f"pool: {len(correct)} problems x {big} traces, {pool['seconds']:.0f} s", flush=True)
    return {
        name: {
            k: confidence_curves.point(v, k * per_sample, pool["seconds"] * k / big, args.bootstrap, np_rng)
            for k, v in by_k.items()
        }
        for name, by_k in offline.items()
    }


def online_point(got: dict, grade, args, np_rng) -> dict:
    """A DeepConf-online or consensus point: the vote's accuracy, tokens, seconds, traces drawn and the
    share of them stopped early."""
    right = grade(got["answers"])[np.arange(len(got["best"])), got["best"]]
    p = confidence_curves.point(right, got["generated"].mean(), got["seconds"], args.bootstrap, np_rng)
    p["stopped"] = float(got["stopped"].sum() / got["drawn"].sum())
    p["traces"] = float(got["drawn"].sum(axis=1).mean())
    return p


def write(out_dir: Path, points: dict, runs: list[dict], name: str) -> None:
    """deepconf.md (a header per run: its settings, minutes and note), deepconf.json and deepconf.png."""
    lines = [name + ".", ""]
    for r in runs:
        what = r.get("methods", "offline,deepconf_low,deepconf_high,consensus")
        lines.append(
            f"- {what}: window {r['window']}, k {r['confidence_k']}, tau {r.get('taus', r.get('tau'))}, "
            f"{r.get('minutes', '?')} min" + (f"; {r['note']}" if r.get("note") else "")
        )
    text = "\n".join(lines) + "\n\n" + confidence_curves.table(points)
    (out_dir / "deepconf.md").write_text(text + "\n")
    (out_dir / "deepconf.json").write_text(json.dumps({"runs": runs, "points": points}, indent=1))
    with (out_dir / "deepconf.png").open("wb") as png:
        confidence_curves.plot(points, png, f"{name.split(',')[0]}: accuracy vs generated tokens")
    print(text)


if __name__ == "__main__":
    main()
