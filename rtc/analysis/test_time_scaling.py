"""The test-time-scaling experiment (CLI mode `search`): held-out problems, every strategy, every budget.

1. One large-N best-of-N run with PRM scores gives, by subsampling, accuracy against N for best-of-N,
   majority@k, weighted@k and pass@k (unbiased estimator), with bootstrap intervals, and the oracle
   curve `1 - (1 - p)^N` of the seed (Brown et al. 2024; Snell et al. 2024).
2. Beam search, DVTS and MCTS run at each budget N (generations per problem, Snell et al.'s unit of
   compute); each also reports generated and verifier tokens and FLOPs per problem. So do the
   verifier-free confidence strategies (Fu et al. 2025, "Deep Think with Confidence": confidence-weighted
   voting, DeepConf online early stopping, adaptive sampling until consensus), whose tokens per problem
   fall below N whole samples when traces stop early or consensus comes first.
3. Compute-optimal selection (Snell et al. 2024): problems are binned by predicted difficulty (the
   PRM's mean score over a few samples: no ground truth), the best strategy per bin and budget is
   fitted on one half of the problems and evaluated on the other (two-fold), and compared with
   uniform best-of-N at the same N. The same predictor routes: reason (search) or answer directly.
4. Every strategy's accuracy against N within each bin of oracle difficulty (the fraction of a problem's
   large-N samples that are correct, Snell et al.'s oracle bins), in `scaling_by_difficulty.md/png`.
Writes `search_results.json`, `scaling.png`, `scaling.md`, `compute_optimal.md` and
`scaling_by_difficulty.{md,png}` to the workdir.
"""

import logging
import time

import jax
import ml_collections
import numpy as np
from etils import epath

from rtc.data.answers import extract_answer
from rtc.data.tasks import get_task
from rtc.errors import ConfigError
from rtc.data.format import prompt_tokens
from rtc.data.tfds_builders import task_records
from rtc.metrics import MetricWriter
from rtc.parallel import distributed
from rtc.parallel import mesh as mesh_lib
from rtc import recipes
from rtc.pretrained.run_model import load_model
from rtc.rewards import training as rm_training
from rtc.sampling.budget import ThinkingBudget, thinking_limit
from rtc.sampling.rules import SamplingRule
from rtc.analysis import scaling
from rtc.analysis.search_report import (
    RESULTS_FILE,  # noqa: F401  (the file name, read by callers of this module)
    SEARCH_STRATEGIES,
    by_oracle_difficulty,
    compute_optimal_outputs,
    write_outputs,
)
from rtc.eval import voting
from rtc.search import runner
from rtc.search.config import CONFIDENCE_STRATEGIES, EFFORT, SearchConfig, from_effort


def load_models(config, workdir: epath.Path):
    """(tokenizer, policy, policy_params, verifier, verifier_params): the PRM run's, trained if absent."""
    tokenizer, policy, _ = load_model(config)
    kind = config.search.verifier_kind
    if kind in ("self", "checker"):  # a language model reads the steps back: no reward model to load
        if not config.policy_workdir or not (epath.Path(config.policy_workdir) / "checkpoints").is_dir():
            raise ConfigError(f"search.verifier_kind={kind!r} needs policy_workdir: a finished SFT run")
        policy_params = recipes.restore_params(config.policy_workdir)
        if kind == "self":
            return tokenizer, policy, policy_params, None, None
        checker = recipes.load_checker(config, tokenizer)
        if not checker:
            raise ConfigError(
                "search.verifier_kind='checker' needs checker_workdir (experiments/configs/checker.py)"
            )
        return tokenizer, policy, policy_params, *checker["checker"]
    prm_dir = epath.Path(config.prm_workdir) if config.prm_workdir else workdir / "prm"
    if not (prm_dir / rm_training.DESCRIPTION_FILE).is_file() or not (prm_dir / "checkpoints").is_dir():
        if config.prm_workdir:
            raise FileNotFoundError(
                f"{prm_dir} is not a finished PRM run (no {rm_training.DESCRIPTION_FILE})"
            )
        logging.info("no prm_workdir: training the policy and PRM into %s", prm_dir)
        recipes.reward_model_recipe(prm_config(config), prm_dir)
    policy_dir = config.policy_workdir or str(prm_dir / "policy")
    if not (epath.Path(policy_dir) / "checkpoints").is_dir():
        raise ConfigError(f"no policy checkpoints in {policy_dir}: set policy_workdir to the PRM's SFT run")
    policy_params = recipes.restore_params(policy_dir)
    # the reward model's own network (its preset may not be the policy's) and its chosen step
    verifier, verifier_params = rm_training.load_reward_model(prm_dir)
    kind = rm_training.load_description(prm_dir)["kind"]
    if kind != config.search.verifier_kind:
        raise ConfigError(
            f"{prm_dir} holds a {kind}, but search.verifier_kind={config.search.verifier_kind!r}"
        )
    if verifier.config.vocab_size != policy.config.vocab_size:
        raise ConfigError(
            f"{prm_dir}'s reward model reads a vocabulary of {verifier.config.vocab_size} tokens, the policy "
            f"writes {policy.config.vocab_size}: they need one tokenizer"
        )
    return tokenizer, policy, policy_params, verifier, verifier_params


def prm_config(config) -> ml_collections.ConfigDict:
    """The PRM run this experiment trains when given none: this config in mode `prm` (or `orm`)."""
    c = ml_collections.ConfigDict(config.to_dict())
    c.mode = config.search.verifier_kind
    return c


def search_config(config, tokenizer, strategy: str, n: int) -> SearchConfig:
    """The `SearchConfig` of one strategy at budget `n` (or the `reasoning_effort` preset)."""
    s = config.search
    limit = thinking_limit(s.depth * s.step_tokens, budget_tokens=s.budget_tokens)
    budget = ThinkingBudget(tokenizer.think_start_id, tokenizer.think_end_id, max_thinking_tokens=limit)
    confidence = strategy in CONFIDENCE_STRATEGIES  # whole completions as one step of depth x step_tokens
    fields = dict(
        step_tokens=s.depth * s.step_tokens if confidence else s.step_tokens,
        stop_ids=tuple(tokenizer.stop_ids),
        delimiter_id=tokenizer.step_id,
        pad_id=tokenizer.pad_id,
        rule=SamplingRule(temperature=s.temperature),
        aggregation=s.aggregation,
        verifier_kind=s.verifier_kind,
    )
    if confidence:
        fields |= confidence_fields(s, EFFORT[s.reasoning_effort]["n"] if s.reasoning_effort else n)
    elif strategy == "best_of_n":
        fields |= dict(slots=s.get("slots", 0))  # whole paths through slot refill, then read step by step
    if s.reasoning_effort:  # N, M, depth and thinking (a share of the path's tokens) from one knob
        thinking = limit if limit is not None else s.depth * s.step_tokens
        return from_effort(s.reasoning_effort, strategy, s.depth, thinking, budget=budget, **fields)
    extra = {}
    if strategy == "mcts":
        extra = dict(trees=s.mcts_trees, exploration=s.mcts_exploration)
    elif strategy in ("beam", "dvts"):
        extra = dict(lookahead=s.lookahead)
    if confidence:
        return SearchConfig(strategy=strategy, n=n, m=1, depth=1, budget=budget, **fields)
    m = 1 if strategy == "best_of_n" else min(s.beam_width, n)
    return SearchConfig(strategy=strategy, n=n, m=m, depth=s.depth, budget=budget, **fields, **extra)


def confidence_fields(s, n: int) -> dict:
    """The confidence strategies' knobs of `config.search` (a consensus round is at most N traces)."""
    return dict(
        confidence_k=s.confidence_k,
        window=s.window,
        eta=s.eta,
        n_init=s.n_init,
        tau=s.tau,
        round_size=min(s.round_size, n),
        slots=s.get("slots", 0),
    )


def search_all(
    models, prompts, cfg: SearchConfig, batch_problems: int, rng, mesh, seconds: list | None = None
) -> runner.SearchResult:
    """Searches `prompts` in batches of `batch_problems` (the last padded, so one program serves all).
    The confidence strategies read each completion's answer and return a `runner.ConfidenceResult`.
    `seconds`, if given, receives each batch's wall-clock seconds (the first one's include compiling)."""
    tokenizer, policy, params, verifier, vparams = models
    answer_of = lambda ids: extract_answer(tokenizer.decode(ids))  # noqa: E731
    parts = []
    for start in range(0, len(prompts), batch_problems):
        chunk = prompts[start : start + batch_problems]
        real = len(chunk)
        chunk = chunk + [chunk[0]] * (batch_problems - real)
        rng_chunk = jax.random.fold_in(rng, start)
        began = time.perf_counter()
        out = runner.run(policy, params, verifier, vparams, chunk, rng_chunk, cfg, mesh, answer_of=answer_of)
        if seconds is not None:
            seconds.append(time.perf_counter() - began)  # `runner.run` returns host arrays: the work is done
        parts.append({k: v[:real] if np.ndim(v) else v for k, v in out.__dict__.items()})
    return type(out)(**{k: merge([p[k] for p in parts], total=k == "seconds") for k in parts[0]})


def merge(parts: list, total: bool = False):
    """One field of the batches' results: lists and arrays joined along problems; a scalar the largest
    (steps), or the sum when `total` (seconds)."""
    if isinstance(parts[0], list):
        return [row for part in parts for row in part]
    if np.ndim(parts[0]):
        return np.concatenate(parts)
    return sum(parts) if total else max(parts)


def grade(result: runner.SearchResult, tokenizer, task, records) -> tuple[np.ndarray, list[list[str | None]]]:
    """(correct bool[P, K], answers [P][K]): a duplicate or unfinished path has no answer."""
    answers, correct = [], []
    for b, rows in enumerate(result.completions()):
        row_answers = []
        for i, ids in enumerate(rows):
            usable = result.finished[b, i] and not result.duplicate[b, i]
            row_answers.append(extract_answer(tokenizer.decode(ids)) if usable else None)
        answers.append(row_answers)
        correct.append([a is not None and task.is_correct(a, records[b]) for a in row_answers])
    return np.array(correct, bool), answers


def strategy_point(result, correct, answers) -> dict:
    """Per-problem accuracy of the search's own pick and of the weighted vote over its paths."""
    rows = np.arange(len(correct))
    scores = np.where(result.duplicate | ~result.finished, np.nan, result.scores)
    return {
        "best": correct[rows, result.best].astype(float),
        "weighted": correct[rows, voting.weighted_vote(answers, scores)].astype(float),
        "generated_tokens": result.generated_tokens.astype(float),
        "verifier_tokens": result.verifier_tokens.astype(float),
        "flops": result.flops,
    }


def confidence_point(result) -> dict:
    """A confidence strategy's traces drawn and stopped early per problem, and its sampler seconds (rows
    that stopped early keep their slot until the call ends, so seconds fall slower than tokens)."""
    if not isinstance(result, runner.ConfidenceResult):
        return {}
    return {
        "traces": float(result.drawn.sum(axis=1).mean()),
        "stopped": float(result.stopped.sum(axis=1).mean()),
        "seconds": float(result.seconds),
    }


def summary(values: np.ndarray, rng, resamples: int) -> list[float]:
    return [float(values.mean()), *scaling.bootstrap_interval(values, resamples, rng=rng)]


def search_budgets(config, models, prompts, records, task, budgets, rng, np_rng, mesh) -> tuple[dict, dict]:
    """`(points, results)`: each search strategy at each budget N; `points[strategy][n]` holds the
    accuracy with its bootstrap interval and the compute, `results[strategy][n]` per-problem correctness."""
    s, tokenizer = config.search, models[0]
    points, results = {}, {}
    for j, strategy in enumerate(x for x in s.strategies if x != "best_of_n"):
        points[strategy], results[strategy] = {}, {}
        for n in budgets:
            cfg = search_config(config, tokenizer, strategy, n)
            out = search_all(
                models, prompts, cfg, s.batch_problems, jax.random.fold_in(rng, 1 + j * 1000 + n), mesh
            )
            point = strategy_point(out, *grade(out, tokenizer, task, records))
            results[strategy][n] = point["best"]
            points[strategy][n] = {
                "accuracy": summary(point["best"], np_rng, s.bootstrap),
                "weighted_accuracy": float(point["weighted"].mean()),
                "generated_tokens": float(point["generated_tokens"].mean()),
                "verifier_tokens": float(point["verifier_tokens"].mean()),
                "flops": float(point["flops"].mean()),
                **confidence_point(out),
            }
            logging.info(
                "%s N=%d: accuracy %.3f, %.0f tokens/problem",
                strategy,
                n,
                point["best"].mean(),
                point["generated_tokens"].mean(),
            )
    return points, results


def prepare(config, workdir: epath.Path, mesh) -> tuple:
    """`(models, records, prompts, budgets)`: the policy and verifier placed on `mesh`, the held-out problems,
    and the budgets N to search at."""
    s = config.search
    unknown = set(s.strategies) - {"best_of_n", *SEARCH_STRATEGIES}
    if unknown:
        known = ", ".join(["best_of_n", *SEARCH_STRATEGIES])
        raise ConfigError(f"unknown search.strategies {sorted(unknown)}; known: {known}")
    # reasoning_effort names one budget for every strategy; otherwise each runs at every N of `budgets`
    budgets = [EFFORT[s.reasoning_effort]["n"]] if s.reasoning_effort else list(s.budgets)
    tokenizer, policy, params, verifier, vparams = load_models(config, workdir)
    models = (
        tokenizer,
        policy,
        mesh_lib.replicate(params, mesh),
        verifier,
        mesh_lib.replicate(vparams, mesh),
    )
    records = task_records(config, "test", workdir)
    records = [records[i] for i in range(min(s.num_problems, len(records)))]
    prompts = [prompt_tokens(tokenizer, r) for r in records]
    logging.info(
        "search: %d held-out problems, strategies %s, budgets %s", len(prompts), list(s.strategies), budgets
    )
    return models, records, prompts, budgets


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Every strategy at every budget on held-out problems: scaling curves, compute-optimal selection, the
    router and accuracy by difficulty, written to the workdir."""
    workdir = epath.Path(workdir)
    recipes.write_config(config, workdir)
    s = config.search
    mesh = mesh_lib.make_mesh(config.num_devices or None)  # branches split over every device
    models, records, prompts, budgets = prepare(config, workdir, mesh)
    task = get_task(config.task.name)
    rng, np_rng = jax.random.key(config.seed), np.random.default_rng(config.seed)

    # 1. one large-N best-of-N run -> every sampling-based curve
    big_cfg = search_config(config, models[0], "best_of_n", s.large_n)
    pool_seconds = []
    big = search_all(
        models, prompts, big_cfg, s.batch_problems, jax.random.fold_in(rng, 0), mesh, pool_seconds
    )
    logging.info(
        "best_of_n pool, N=%d (slots %d): %.1f s in %d batches, %.1f s without the first (compiling) batch",
        s.large_n, big_cfg.slots, sum(pool_seconds), len(pool_seconds), sum(pool_seconds[1:]),
    )  # fmt: skip
    correct, answers = grade(big, models[0], task, records)
    scores = np.where(big.finished, big.scores, np.nan)
    ks = [k for k in budgets if k <= correct.shape[1]]  # the samples the large run drew
    curves = scaling.scaling_curves(
        correct, answers, scores, ks, big.lengths.astype(float), s.num_draws, np_rng, s.bootstrap
    )
    per_problem = scaling.per_problem_curves(correct, answers, scores, ks, s.num_draws, np_rng)
    tokens_per_sample = float(big.lengths.mean())

    # 2. the searches at each budget
    points, results = search_budgets(config, models, prompts, records, task, budgets, rng, np_rng, mesh)
    results = {name: per_problem[name] for name in ("best_of_n", "majority", "weighted")} | results
    for strategy, by_n in points.items():
        curves["curves"][strategy] = {n: tuple(p["accuracy"]) for n, p in by_n.items()}
        if curves["compute"] is not None:
            curves["compute"][strategy] = {n: p["generated_tokens"] for n, p in by_n.items()}
    curves["compute"] = curves["compute"] or {
        m: {k: k * tokens_per_sample for k in ks} for m in curves["curves"]
    }

    # 3. compute-optimal selection and the router; 4. every strategy by oracle difficulty
    outputs = {
        "problems": len(prompts),
        "large_n": s.large_n,
        "tokens_per_sample": tokens_per_sample,
        "pool_seconds": {"total": sum(pool_seconds), "batches": len(pool_seconds), "first": pool_seconds[0]},
        "curves": curves,
        "searches": points,
        **compute_optimal_outputs(s, big, correct, scores, ks, results, points, tokens_per_sample, np_rng),
        "by_oracle_difficulty": by_oracle_difficulty(s, correct, results, per_problem["pass"]),
    }
    if distributed.is_primary():  # every process holds the same results; process 0 writes them
        write_outputs(workdir, outputs, f"{config.task.name}, {len(prompts)} problems")
    with MetricWriter(workdir, progress=False) as writer:  # process 0 only, inside the writer
        curves = outputs["curves"]["curves"]
        writer.write(0, {f"search/{m}/n{n}": v[0] for m, by_n in curves.items() for n, v in by_n.items()})
    return outputs
