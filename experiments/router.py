"""A router with a counted cost: samples per question by difficulty read from the prompt, against random routing.

Usage:  python -m experiments.router --workdir=DIR [--policy=SFT_RUN] [--checker=CHECKER_RUN]
        [--problems=1000] [--train_problems=2000]

Snell et al. 2024 ("Scaling LLM Test-Time Compute Optimally") spend more samples on harder questions,
with difficulty estimated from samples and a verifier: a cost their curves leave out. Here:
1. The policy samples `--train_samples` answers to each of `--train_problems` training problems; their
   pass rates are the targets of a ridge head on the policy's prompt representation
   (`rtc.analysis.difficulty`, the ridge strength by 5-fold cross-validation on those problems).
2. On held-out problems the policy samples `--samples` answers each (one pool); majority@N and
   best-of-N by DeepConf trace confidence at N = 1..samples come from it by subsampling, with each
   question's FLOPs (`confidence_curves.trace_flops`). With `--checker`, best-of-N by a checker's
   probability of each answer (experiments/configs/checker.py) is a third rule, its scoring pass (a
   teacher-forced forward over prompt and answer) added to its cost.
3. Allocation (`rtc.analysis.allocation`): per quintile of predicted difficulty, the rule (majority,
   best-of-N by confidence or by the checker) and N that maximise accuracy within a mean FLOPs budget,
   fitted on one half of the questions and scored on the other; the predictor's FLOPs (one prefill of the
   prompt and the head) are part of the budget. Beside it: random routing at the same budget (the best
   random mix of the same options, fitted and scored the same way, no predictor), uniform majority and
   best-of-N, a router by prompt length (free), a router given the generator's true level (free; how
   much difficulty the prompt holds at best), and an oracle router binned by the held-out pass rate of
   the same samples it is scored on (not realisable, and optimistic: an upper bound).
Writes router.md / .png / .json to --out (default experiments/results) and the fitted head to
WORKDIR/difficulty_head.json. Without --policy the quickstart SFT policy is trained into WORKDIR/sft.
"""

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from experiments import router_report
from experiments.deepconf import run_chunks, search_config, train_policy
from experiments.overthinking import load_config
from rtc.analysis import allocation, compute_optimal, confidence_curves, difficulty, scaling
from rtc.data.answers import extract_answer
from rtc.data.format import prompt_tokens
from rtc.data.tasks import get_task
from rtc.data.tfds_builders import task_records
from rtc.eval import voting
from rtc.pretrained.run_model import load_model
from rtc.recipes import restore_params
from rtc.rewards import rm_data
from rtc.rewards.checker import load_checker
from rtc.rewards.self_check import checker_scores

RESULTS = Path(__file__).parent / "results"
RIDGE_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
RULES = {"majority": "majority", "best_of_n": "best-of-N (confidence)", "checker": "best-of-N (checker)"}
BUDGETS = (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32)  # mean FLOPs per question, in units of one sample's


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument(
        "--policy", default="", help="a finished SFT run (default: train one into WORKDIR/sft)"
    )
    parser.add_argument("--out", default=str(RESULTS), help="where router.md / .png / .json go")
    parser.add_argument("--problems", type=int, default=1000, help="held-out problems")
    parser.add_argument(
        "--samples", type=int, default=32, help="held-out samples per problem (the largest N)"
    )
    parser.add_argument("--train_problems", type=int, default=2000, help="training problems for the head")
    parser.add_argument("--train_samples", type=int, default=8, help="samples per training problem")
    parser.add_argument("--bins", type=int, default=5, help="difficulty bins (Snell et al.: 5)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    parser.add_argument("--chunk", type=int, default=16, help="problems per sampler call at 32 samples")
    parser.add_argument("--draws", type=int, default=50, help="random subsets per point")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--confidence_k", type=int, default=20, help="top-k log-probs of the trace confidence"
    )
    parser.add_argument("--window", type=int, default=8, help="tokens in the group-confidence window")
    parser.add_argument("--round_size", type=int, default=4)
    parser.add_argument(
        "--checker",
        default="",
        help="an SFT run that checks the policy's answers (experiments/configs/checker.py): best-of-N by "
        "its probability of each answer becomes an option, its scoring pass paid for",
    )
    parser.add_argument("--score_batch", type=int, default=256, help="answers per checker call")
    parser.add_argument(
        "--tiny", action="store_true", help="the quickstart's tiny variant (the tests' model)"
    )
    return parser.parse_args(argv)


def sample_pool(
    model, params, prompts, config, tokenizer, args, n: int, seed: int, cache: Path, tokens: bool = False
) -> dict:
    """n sampled answers per prompt at --temperature: answers, trace confidences, lengths, FLOPs and the
    answers' tokens. Kept in `cache` (.npz of arrays and .json of answers) and read back when the same
    settings ask again (drawn again if `tokens` are asked of a pool kept without them)."""
    key = json.dumps(
        [args.policy, len(prompts), prompts[0], n, seed, args.temperature, args.window, args.tiny]
    )
    stem = cache.parent / f"{cache.name}_{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if stem.with_suffix(".json").is_file():
        arrays = np.load(stem.with_suffix(".npz"))
        if "tokens" in arrays.files or not tokens:
            return {k: arrays[k] for k in arrays.files} | json.loads(stem.with_suffix(".json").read_text())
    cfg = search_config(config, tokenizer, "confidence_weighted", n, args, temperature=args.temperature)
    chunk = max(1, args.chunk * 32 // n)
    pool = run_chunks(
        model, params, prompts, cfg, lambda ids: extract_answer(tokenizer.decode(ids)), chunk, seed
    )
    np.savez(stem.with_suffix(".npz"), **{k: v for k, v in pool.items() if isinstance(v, np.ndarray)})
    stem.with_suffix(".json").write_text(json.dumps({"answers": pool["answers"], "seconds": pool["seconds"]}))
    return pool


def graded(pool: dict, records, task) -> np.ndarray:
    """bool[P, N]: each sampled answer checked by the task."""
    return np.array(
        [[a is not None and task.is_correct(a, r) for a in row] for row, r in zip(pool["answers"], records)]
    )


def fit_head(
    features: np.ndarray, pass_rate: np.ndarray, seed: int
) -> tuple[difficulty.DifficultyHead, dict]:
    ridge, errors = difficulty.choose_ridge(features, pass_rate, RIDGE_GRID, 5, np.random.default_rng(seed))
    return difficulty.fit_ridge(features, pass_rate, ridge), errors


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties take their mean rank)."""

    def ranks(x):
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for value in np.unique(x):  # mean rank of ties
            r[x == value] = r[x == value].mean()
        return r

    ra, rb = ranks(np.asarray(a)), ranks(np.asarray(b))
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:  # a constant has no ranking
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def checker_scores_of(checker, prompts, pool: dict, pad_id: int, batch_size: int) -> np.ndarray:
    """f32[P, N]: a checker's probability of each sampled answer, teacher-forced after its prompt
    (`self_check.checker_scores`)."""
    model, params = checker
    completions, lengths = pool["tokens"], pool["lengths"]  # i32[P, N, T], i32[P, N]
    p, n, t = completions.shape
    solutions = [
        rm_data.Solution({}, tuple(prompt), tuple(completions[i, j, : lengths[i, j]].tolist()))
        for i, prompt in enumerate(prompts)
        for j in range(n)
    ]
    arrays = rm_data.encode_solutions(solutions, max(len(x) for x in prompts) + t, pad_id)
    return checker_scores(model, params, arrays["tokens"], arrays["completion_mask"], batch_size).reshape(
        p, n
    )


def options(
    pool: dict, correct: np.ndarray, ks: list[int], args, rng, checker: tuple | None = None
) -> tuple[dict, dict]:
    """({rule: f64[P, K] accuracy at each N of ks}, {rule: f64[P, K] cost in FLOPs}) from the pool by
    subsampling: majority, best-of-N by trace confidence (DeepConf's lowest group confidence, no
    verifier) and, given `checker = (scores f32[P, N], flops f64[P, N])`, best-of-N by the checker's
    score. A question's cost at N is N times its mean trace FLOPs, plus for the checker N times its mean
    scoring pass (a teacher-forced forward over prompt and answer)."""
    ids = voting.answer_ids(pool["answers"])
    rules = confidence_curves.offline_curves(correct, ids, pool["confidence"], ks, args.draws, rng, etas=())
    scores = {"best_of_n": pool["confidence"]} | ({} if checker is None else {"checker": checker[0]})
    acc = {"majority": np.stack([rules["majority"][k] for k in ks], axis=1)}
    for rule, score in scores.items():
        choose = scaling.subset_chooser(lambda c: np.argmax(c, axis=1), score)
        acc[rule] = np.stack([scaling.subsample_accuracy(correct, choose, k, args.draws, rng) for k in ks], 1)
    n = np.asarray(ks, np.float64)[None, :]
    sampled = pool["flops"].mean(axis=1)[:, None] * n  # f64[P, K]
    cost = {rule: sampled for rule in acc}
    if checker is not None:
        cost["checker"] = sampled + checker[1].mean(axis=1)[:, None] * n
    return acc, cost


def routed_curve(acc, cost, bins, num_bins, budgets, extra_cost, seed) -> list[dict]:
    """A router's points: per budget, the cross-validated allocation's accuracy per question and mean cost
    (the predictor's `extra_cost f[P]` paid inside the budget)."""
    points = []
    for b in budgets:
        rng = np.random.default_rng(seed)
        a, c = allocation.cross_validated(acc, cost, bins, num_bins, b, rng, predictor_cost=extra_cost)
        points.append({"budget": b, "acc": a, "cost": float(c.mean())})
    return points


def random_curve(acc, cost, budgets, seed) -> list[dict]:
    """Random routing's points, its mixture of options cross-validated as the routers' allocations are."""
    points = []
    for b in budgets:
        a, c = allocation.random_routing_cross_validated(acc, cost, b, np.random.default_rng(seed))
        points.append({"budget": b, "acc": a, "cost": float(c.mean())})
    return points


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    workdir, out_dir = Path(args.workdir), Path(args.out)
    workdir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    config = load_config(workdir, "tiny" if args.tiny else "")
    policy_dir = args.policy or str(workdir / "sft")
    if not args.policy:
        args.task = "arithmetic"
        train_policy(policy_dir, args)
    args.policy = str(Path(policy_dir).resolve())  # the kept samples are keyed by it
    tokenizer, model, _ = load_model(config)
    params = restore_params(policy_dir)
    task = get_task(config.task.name)
    np_rng = np.random.default_rng(config.seed)

    # 1. the head: pass rates of training problems from the policy's own samples
    train = task_records(config, "train", workdir)
    train = [train[i] for i in range(min(args.train_problems, len(train)))]
    train_prompts = [prompt_tokens(tokenizer, r) for r in train]
    train_pool = sample_pool(
        model, params, train_prompts, config, tokenizer, args, args.train_samples, 1, workdir / "train_pool"
    )
    train_rate = graded(train_pool, train, task).mean(axis=1)
    head, ridge_errors = fit_head(
        difficulty.prompt_features(model, params, train_prompts), train_rate, config.seed
    )
    (workdir / "difficulty_head.json").write_text(head.to_json())
    print(
        f"head: ridge {head.ridge:g}, {len(train)} training problems, {time.perf_counter() - started:.0f} s"
    )

    # 2. the held-out pool and every rule at every N
    records = task_records(config, "test", workdir)
    records = [records[i] for i in range(min(args.problems, len(records)))]
    prompts = [prompt_tokens(tokenizer, r) for r in records]
    pool = sample_pool(
        model, params, prompts, config, tokenizer, args, args.samples, 2, workdir / "pool", tokens=True
    )
    correct = graded(pool, records, task)
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= args.samples]
    checker = None
    if args.checker:  # best-of-N by a checker's probability of each answer, its scoring pass paid for
        checker_net = load_checker(
            args.checker, config.get("tokenizer_path"), config.get("pretrained"), tokenizer
        )
        checker = (
            checker_scores_of(checker_net, prompts, pool, tokenizer.pad_id, args.score_batch),
            confidence_curves.trace_flops(
                checker_net[0].config, np.array([len(p) for p in prompts])[:, None], pool["lengths"]
            ),
        )
    acc, cost = options(pool, correct, ks, args, np_rng, checker)
    unit = float(cost["majority"][:, 0].mean())  # one sample's mean FLOPs
    budgets = [b * unit for b in BUDGETS if b <= max(ks)]

    # 3. predictors and their routers
    predicted = head.predict(difficulty.prompt_features(model, params, prompts))
    lengths = np.array([len(p) for p in prompts])
    held_out_rate = correct.mean(axis=1)
    predictors = {  # name: (difficulty estimate, higher = easier; FLOPs per question)
        "learned router": (predicted, difficulty.predictor_flops(model.config, lengths, head)),
        "prompt-length router": (-lengths.astype(float), np.zeros(len(prompts))),
        "oracle router (upper bound)": (held_out_rate, np.zeros(len(prompts))),
    }
    if all("difficulty" in r for r in records):  # a generated task's level: what difficulty the prompt holds
        level = np.array([int(r["difficulty"]) for r in records])
        predictors["level router (true level)"] = (-level.astype(float), np.zeros(len(prompts)))
    curves = {
        f"uniform {RULES[rule]}": [
            {"budget": c, "acc": acc[rule][:, j], "cost": c} for j, c in enumerate(cost[rule].mean(0))
        ]
        for rule in acc
    }
    # every rule at every N is an option, for the routers and for random routing alike
    every = np.concatenate([acc[r] for r in acc], axis=1), np.concatenate([cost[r] for r in acc], axis=1)
    curves["random routing"] = random_curve(*every, budgets, config.seed)
    for name, (estimate, extra) in predictors.items():
        bins = compute_optimal.difficulty_bins(estimate, args.bins)
        curves[name] = routed_curve(*every, bins, args.bins, budgets, extra, config.seed)
    quality = {
        name: {"spearman": spearman(estimate, held_out_rate)} for name, (estimate, _) in predictors.items()
    }
    quality["learned router"]["rmse"] = float(np.sqrt(np.mean((predicted - held_out_rate) ** 2)))
    predictor_cost = float(predictors["learned router"][1].mean() / unit)
    results = summarise(curves, budgets, unit, args, np_rng)
    results |= {
        "settings": {k: v for k, v in vars(args).items() if k not in ("workdir", "policy", "out", "checker")}
        | {"with_checker": bool(args.checker)},  # no machine paths in the results
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "ks": ks,
        "unit_flops": unit,
        "tokens_per_sample": float(pool["lengths"].mean()),
        "predictor_cost_in_samples": predictor_cost,
        "ridge_errors": ridge_errors,
        "ridge": head.ridge,
        "quality": quality,
        "train_pass_rate": float(train_rate.mean()),
        "held_out_pass_rate": float(held_out_rate.mean()),
    }
    router_report.write(
        out_dir, results, f"{config.task.name}, {len(prompts)} held-out problems x {args.samples} samples"
    )
    return results


def summarise(curves: dict, budgets: list[float], unit: float, args, rng) -> dict:
    """Per curve its points (budget and cost in units of one sample, accuracy with a bootstrap interval);
    the learned router's paired difference with random routing at each budget; the cost each curve needs
    to reach uniform majority@max(N)'s accuracy."""
    table = {}
    for name, points in curves.items():
        table[name] = [
            {
                "budget": p["budget"] / unit,
                "cost": p["cost"] / unit,
                "accuracy": [
                    float(p["acc"].mean()),
                    *scaling.bootstrap_interval(p["acc"], args.bootstrap, rng=rng),
                ],
            }
            for p in points
        ]
    paired = []
    for learned, rand in zip(curves["learned router"], curves["random routing"]):
        diff = learned["acc"] - rand["acc"]
        paired.append(
            {
                "budget": learned["budget"] / unit,
                "difference": [
                    float(diff.mean()),
                    *scaling.bootstrap_interval(diff, args.bootstrap, rng=rng),
                ],
            }
        )
    target = table["uniform majority"][-1]["accuracy"][0]
    reach = {
        name: allocation.cost_to_reach([(p["cost"], p["accuracy"][0]) for p in points], target)
        for name, points in table.items()
    }
    return {"curves": table, "router_minus_random": paired, "target": target, "cost_to_reach": reach}


if __name__ == "__main__":
    main()
