"""Confidence-aware test-time compute (DeepConf, Fu et al. 2025): accuracy against generated tokens.

Usage:  python -m experiments.deepconf --workdir=DIR [--policy=SFT_RUN] [--problems=200] [--task=countdown]
        [--slots=0,4]
The quickstart's SFT policy (trained into DIR/sft first when --policy is not given; with
`--task=countdown` on Countdown levels 1-2) answers held-out problems of the task with every rule at N in
{4, 8, 16, 32} traces per problem:
- majority, confidence-weighted and top-10% / top-90% confidence-filtered votes (DeepConf offline), from
  one run of 32 traces per problem, subsampled to k of them (`rtc.analysis.confidence_curves`);
- DeepConf-online low (eta 10%) and high (eta 90%): `max(2, N / 4)` warm-up traces set the threshold,
  the other traces stop inside the compiled sampler once their window confidence falls below it;
- adaptive consensus: rounds of 4 traces until the confidence-weighted vote share reaches tau (0.95;
  `--taus=0.6,0.8` runs one curve per tau, named `consensus(tau=0.6)`, ...).
Online runs need N >= 4 (below that a DeepConf run is all warm-up); offline rules take any N.
`--methods` picks what to run (offline, deepconf_low, deepconf_high, consensus); `--merge` adds the new
points to the ones already in the output's .json (their settings kept beside them) and redraws the
table and plot from all of them.

Votes: an arithmetic answer is a number and votes as its text. A Countdown answer is an expression, and
its vote is keyed by what it claims, its exact value and the multiset of numbers it spends
(`rtc.data.countdown.vote_key`: `25+75` and `75+25` are one vote, `50+50` another), so every answer of one key is
right or wrong together, and the task's own `is_correct` grades the vote's pick. Offline tables also
show `majority(text)`, the vote keyed by the expression's text.

Each point has a bootstrap 95% interval over problems, tokens per problem, forward FLOPs per problem and
the sampler's wall-clock time (compilation left out; the offline rules' time is the 32-trace run's,
scaled by N / 32). FLOPs: every trace prefills its own prompt in the sampler, so a trace costs
(prompt + generated) tokens at `ModelConfig.flops_per_token` (`confidence_curves.trace_flops`). Writes
deepconf.md / .png / .json (arithmetic) or deepconf_countdown.* to --out (default experiments/results).
With a row per trace (`--slots=0`, the default) a stopped trace still holds its row until the whole call
is done, so wall-clock falls less than tokens. `--slots=0,4` runs every rule a second time through 4 rows
per problem by slot refill (`SearchConfig.slots`: a row whose trace ends or stops takes the problem's next
trace), curves named `<rule>, refill 4`; a refill call holds up to --chunk x 32 rows, as a plain call does.
`--queue=shared` (the default) lets a row take the next trace of any problem of its call, `problem` only
of its own (`SearchConfig.shared_slots`); the traces are the same, the time is not.

`--larger_preset=cpu-medium` (test-time compute against a larger model at equal FLOPs, Snell et al. 2024):
also trains that preset with the same SFT data and steps into DIR/sft_<preset> (unless
`--larger_policy` is given), samples its single greedy answer and max(N) sampled traces per problem
(a single sample and majority@N by subsampling), and writes deepconf_flops.md / .png / .json instead:
accuracy against FLOPs for the small policy's every rule and the larger model's points.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from experiments.deepconf_report import merged_points, offline_points, online_point, write
from experiments.overthinking import CONFIGS, load_config
from rtc.analysis import confidence_curves
from rtc.data import countdown
from rtc.data.answers import extract_answer
from rtc.data.format import prompt_tokens
from rtc.data.tasks import get_task
from rtc.data.tfds_builders import task_records
from rtc.errors import ConfigError
from rtc.eval import voting
from rtc.model.config import PRESETS
from rtc.pretrained.run_model import load_model
from rtc.recipes import restore_params
from rtc.sampling import settings as sampler_settings
from rtc.search import runner
from rtc.search.config import SearchConfig

RESULTS = Path(__file__).parent / "results"
ONLINE = ("deepconf_low", "deepconf_high", "consensus")
# the quickstart config's task overrides per --task (as command-line flags and as config values)
TASKS = {"arithmetic": {}, "countdown": {"name": "countdown", "levels": (1, 2)}}


def task_flags(task: str) -> list[str]:
    """`rtc.main` flags that train the quickstart config on `task`."""
    return [f"--config.task.{k}={v}".replace(" ", "") for k, v in TASKS[task].items()]


class VoteKeys:
    """Answer -> vote key (Countdown: `countdown.vote_key`; otherwise the answer itself), remembering the first
    answer seen under each key so a key can be graded by the task's `is_correct`."""

    def __init__(self, task: str):
        self.key_of = countdown.vote_key if task == "countdown" else (lambda answer: answer)
        self.answer: dict[str, str] = {}

    def __call__(self, answer: str | None) -> str | None:
        key = self.key_of(answer)
        if key is not None:
            self.answer.setdefault(key, answer)
        return key


def search_config(
    config,
    tokenizer,
    strategy: str,
    n: int,
    args,
    tau: float = 0.95,
    temperature: float | None = None,
    slots: int = 0,
    shared_slots: bool = True,
) -> SearchConfig:
    """A confidence strategy at N traces, decoding as the quickstart's evaluation does (at `temperature`
    when given: 0 is greedy), through `slots` rows per problem by slot refill when > 0 (one queue for all
    problems' rows when `shared_slots`, else a queue per problem)."""
    t = config.eval.temperature if temperature is None else temperature
    s = sampler_settings.from_block(config.eval, tokenizer, t)
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
        slots=slots,
        shared_slots=shared_slots,
    )


def run_chunks(model, params, prompts, cfg, answer_of, chunk: int, seed: int) -> dict:
    """`runner.run` over `prompts` in chunks of `chunk` problems (the last padded with copies of its first,
    so one program serves all); the per-problem results concatenated, with each trace's forward FLOPs
    (`flops`, f64[P, N], 0 for slots never drawn). Seconds: the mean of every chunk but the first (which
    compiles) times the chunks, or a second run of a single chunk (consensus still compiles a smaller
    bucket now and then)."""
    chunk = min(chunk, len(prompts))
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
                "tokens": out.tokens[:real],  # i32[real, N, T]: the completions
            }
        )
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "answers"}
    prompt = np.array([len(p) for p in prompts])[:, None]  # i64[P, 1]
    flops = confidence_curves.trace_flops(model.config, prompt, merged["lengths"])  # f64[P, N]
    merged["flops"] = np.where(merged["drawn"], flops, 0.0)
    merged["answers"] = [a for p in parts for a in p["answers"]]
    # the first call compiles: time the others, scaled to every chunk, or run a single chunk again
    if len(seconds) == 1:
        rng = jax.random.fold_in(jax.random.key(seed), 0)
        seconds.append(runner.run(model, params, None, None, rows, rng, cfg, answer_of=answer_of).seconds)
    merged["seconds"] = float(np.mean(seconds[1:]) * len(parts))
    return merged


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument(
        "--policy", default="", help="a finished SFT run (default: train one into WORKDIR/sft)"
    )
    parser.add_argument("--task", default="arithmetic", choices=sorted(TASKS), help="the held-out task")
    parser.add_argument("--out", default=str(RESULTS), help="where the .md / .png / .json go")
    parser.add_argument("--stem", default="", help="the output files' name (default: by task and mode)")
    parser.add_argument("--problems", type=int, default=200, help="held-out problems")
    parser.add_argument("--budgets", default="4,8,16,32", help="traces per problem N")
    parser.add_argument("--levels", default="", help="held-out difficulty levels, e.g. 3,4,5 (default: all)")
    parser.add_argument("--chunk", type=int, default=16, help="problems per sampler call")
    parser.add_argument("--confidence_k", type=int, default=20)
    parser.add_argument("--window", type=int, default=8, help="tokens in the group-confidence window")
    parser.add_argument("--taus", default="0.95", help="consensus vote shares, one curve each")
    parser.add_argument("--methods", default="offline,deepconf_low,deepconf_high,consensus")
    parser.add_argument("--merge", action="store_true", help="add to the points in the output's .json")
    parser.add_argument("--note", default="", help="a line for the table's header (e.g. the machine load)")
    parser.add_argument("--round_size", type=int, default=4)
    parser.add_argument(
        "--slots",
        default="0",
        help="rows per problem for slot refill, one run of every rule per value (0: a row per trace)",
    )
    parser.add_argument(
        "--queue",
        default="shared",
        choices=("shared", "problem"),
        help="slot refill: one queue of every problem's traces for all rows, or a queue per problem",
    )
    parser.add_argument("--draws", type=int, default=50, help="random k-subsets per offline point")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--larger_preset",
        "--larger-preset",
        default="",
        help="a model preset to compare at equal FLOPs (writes deepconf_flops.*)",
    )
    parser.add_argument(
        "--larger_policy",
        default="",
        help="its finished SFT run (default: train one into WORKDIR/sft_PRESET)",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="the quickstart's tiny variant (the tests' model)"
    )
    args = parser.parse_args(argv)
    unknown = set(args.methods.split(",")) - {"offline", *ONLINE}
    if unknown:
        parser.error(f"unknown --methods {sorted(unknown)}")
    if args.larger_preset and args.larger_preset not in PRESETS:
        parser.error(f"unknown --larger_preset {args.larger_preset!r}; known: {sorted(PRESETS)}")
    return args


def output_stem(args) -> str:
    """--stem when given, else deepconf (arithmetic), deepconf_<task>, or deepconf_flops with --larger_preset."""
    if args.stem:
        return args.stem
    if args.larger_preset:
        return "deepconf_flops"
    return "deepconf" if args.task == "arithmetic" else f"deepconf_{args.task}"


def online_runs(args) -> list[tuple[str, str, float, int]]:
    """(curve name, strategy, tau, slots) of every run per N that --methods asks for; a run through slot
    refill is named `<rule>, refill S`."""
    runs = [(m, m, 0.95) for m in ONLINE[:2] if m in args.methods.split(",")]
    if "consensus" in args.methods.split(","):
        taus = [float(t) for t in args.taus.split(",")]
        runs += [("consensus" if len(taus) == 1 else f"consensus(tau={t:g})", "consensus", t) for t in taus]
    return [(name + refill_suffix(s), m, t, s) for name, m, t in runs for s in slot_counts(args)]


def slot_counts(args) -> list[int]:
    """--slots as ints: rows per problem for slot refill, 0 for a row per trace."""
    return [int(x) for x in args.slots.split(",")]


def refill_suffix(slots: int) -> str:
    """What a curve run through `slots` rows per problem by slot refill adds to its name."""
    return f", refill {slots}" if slots else ""


def train_policy(run_dir: str, args, preset: str = "") -> None:
    """Trains the quickstart SFT policy on --task into `run_dir` (of `preset` when given), or resumes it."""
    config_arg = f"--config={CONFIGS / 'quickstart.py'}" + (":tiny" if args.tiny else "")
    flags = task_flags(args.task) + ([f"--config.model.preset={preset}"] if preset else [])
    subprocess.run([sys.executable, "-m", "rtc.main", config_arg, f"--workdir={run_dir}", *flags], check=True)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    workdir, out_dir = Path(args.workdir), Path(args.out)
    workdir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = load_config(workdir, "tiny" if args.tiny else "")
    config.task.update(TASKS[args.task])
    if args.larger_preset == config.model.preset:
        raise ConfigError(
            f"--larger_preset={args.larger_preset} is the policy's own preset; name a larger one"
        )
    policy_dir = args.policy or str(workdir / "sft")
    if not args.policy:  # trains the quickstart policy, or resumes it
        train_policy(policy_dir, args)
    larger_dir = args.larger_policy or str(workdir / f"sft_{args.larger_preset}")
    if args.larger_preset and not args.larger_policy:  # the same SFT data and steps
        train_policy(larger_dir, args, args.larger_preset)
    tokenizer, model, _ = load_model(config)
    params = restore_params(policy_dir)
    records = task_records(config, "test", workdir)
    levels = {int(x) for x in args.levels.split(",")} if args.levels else None
    records = [
        r for r in (records[i] for i in range(len(records))) if not levels or int(r["difficulty"]) in levels
    ]
    records = records[: args.problems]
    prompts = [prompt_tokens(tokenizer, r) for r in records]
    task = get_task(config.task.name)
    budgets = [int(n) for n in args.budgets.split(",")]
    np_rng = np.random.default_rng(config.seed)
    keys = VoteKeys(args.task)

    def text_of(ids: list[int]) -> str | None:
        return extract_answer(tokenizer.decode(ids))

    def key_of(ids: list[int]) -> str | None:  # the online rules vote inside the runner on these
        return keys(text_of(ids))

    def grade(answers, keyed: bool = True) -> np.ndarray:  # bool[P, K]; answers: vote keys, or texts
        def answer(a):
            return keys.answer[a] if keyed else a

        return np.array(
            [
                [a is not None and task.is_correct(answer(a), r) for a in row]
                for row, r in zip(answers, records)
            ]
        )

    started = time.perf_counter()

    def run(cfg, chunk, seed, answer_of=key_of, policy=(model, params)):
        return run_chunks(*policy, prompts, cfg, answer_of, chunk, seed)

    def make(strategy, n, tau=0.95, temperature=None, slots=0):
        return search_config(
            config, tokenizer, strategy, n, args, tau, temperature, slots, args.queue == "shared"
        )

    points = {}
    for slots in slot_counts(args) if "offline" in args.methods.split(",") else ():
        big = max(budgets)
        pool = run(
            make("confidence_weighted", big, slots=slots), chunk_for(args, big, slots), config.seed, text_of
        )
        got = offline_points(pool, grade, keys, budgets, args, np_rng, text_votes=args.task != "arithmetic")
        points |= {name + refill_suffix(slots): p for name, p in got.items()}
    for name, strategy, tau, slots in online_runs(args):
        points[name] = {}
        for n in [n for n in budgets if n >= 4]:
            chunk = args.chunk * 4 if strategy == "consensus" else chunk_for(args, n, slots)
            j = ONLINE.index(strategy)  # a seed per strategy and N, whatever else runs
            got = run(make(strategy, n, tau, slots=slots), chunk, config.seed + 1 + j * 100 + n)
            points[name][n] = online_point(got, grade, args, np_rng)
            p = points[name][n]
            accuracy, tokens, seconds = p["accuracy"][0], p["tokens"], p["seconds"]
            print(f"{name} N={n}: accuracy {accuracy:.3f}, {tokens:.0f} tokens, {seconds:.0f} s", flush=True)
    name = (
        f"{config.task.name}, {len(prompts)} held-out problems"
        + (f" of levels {args.levels}" if args.levels else "")
        + f", policy {Path(policy_dir).name} "
        f"({config.model.preset}), temperature {config.eval.temperature}"
    )
    if args.larger_preset:
        small = config.model.preset
        points = {f"{small} {m}": by_n for m, by_n in points.items()}
        larger, about = larger_points(args, config, larger_dir, run, make, grade, budgets, np_rng)
        points |= larger
        name += "; " + about + "; " + flops_note(model.config, prompts, small)
    stem = output_stem(args)
    settings = {
        k: v
        for k, v in vars(args).items()
        if k not in ("workdir", "policy", "larger_policy", "out", "merge", "stem")
    }
    settings["minutes"] = round((time.perf_counter() - started) / 60, 1)
    runs = [settings]
    if args.merge:
        points, runs = merged_points(out_dir / f"{stem}.json", points)
        runs = runs + [settings]
    write(out_dir, stem, points, runs, name)
    return points


def chunk_for(args, n: int, slots: int = 0) -> int:
    """Problems per sampler call at N traces each, or through `slots` rows each: --chunk x 32 rows."""
    return max(1, args.chunk * 32 // (slots or n))


def larger_points(args, config, run_dir, run, make, grade, budgets, np_rng) -> tuple[dict, str]:
    """The larger preset's points ({name: {N: point}}) from its SFT run in `run_dir`: its greedy answer
    (N = 1) and majority@N over a pool of max(N) sampled traces (N = 1: one sampled answer); and a line
    naming the model."""
    preset = args.larger_preset
    larger = config.copy_and_resolve_references()
    larger.model.preset = preset
    _, model, _ = load_model(larger)
    policy = (model, restore_params(run_dir))
    greedy = run(make("confidence_weighted", 1, temperature=0.0), args.chunk * 32, config.seed, policy=policy)
    big = max(budgets)
    pool = run(make("confidence_weighted", big), chunk_for(args, big), config.seed, policy=policy)
    pool_flops = pool["flops"].sum(axis=1).mean() / big  # per trace
    right = grade(greedy["answers"])[:, 0]
    points = {
        f"{preset} greedy": {
            1: confidence_curves.point(
                right,
                greedy["lengths"].mean(),
                greedy["seconds"],
                args.bootstrap,
                np_rng,
                greedy["flops"].mean(),
            )
        }
    }
    correct, ids = grade(pool["answers"]), voting.answer_ids(pool["answers"])
    majority = confidence_curves.offline_curves(
        correct, ids, pool["confidence"], budgets, args.draws, np_rng, etas=()
    )
    per_sample = float(pool["lengths"].mean())
    points[f"{preset} majority"] = {
        k: confidence_curves.point(
            v, k * per_sample, pool["seconds"] * k / big, args.bootstrap, np_rng, k * pool_flops
        )
        for k, v in majority["majority"].items()
    }
    params = model.config.num_params
    return points, f"larger model {preset} ({params / 1e6:.2f}M parameters, run {Path(run_dir).name})"


def flops_note(model_config, prompts, preset: str) -> str:
    """The small model's size and the mean prompt length, for the header."""
    mean_prompt = np.mean([len(p) for p in prompts])
    return f"{preset} {model_config.num_params / 1e6:.2f}M parameters; mean prompt {mean_prompt:.1f} tokens"


if __name__ == "__main__":
    main()
