"""Held-out evaluation of trained reward models (the comparison of Lightman et al. 2023, small scale).

On `eval_rm.num_problems` test problems the policy samples `eval_rm.best_of_n` solutions each; then
- ORM: AUROC of its score against the verifier's label of each solution;
- PRM: step accuracy and AUROC against exact step labels (synthetic tasks), and the outcome AUROC
  of each aggregation (last / min / product / mean);
- the policy as its own verifier (`self_check`: its probability of its least likely written token,
  `rtc.rewards.self_check`), the untrained baseline beside them, and a checker LM trained further than
  the policy (`checker_workdir`, experiments/configs/checker.py) when one is given: its probability of the
  completion, `self_check.checker_scores`;
- for every scorer, what search needs: within-problem AUROC and pairwise accuracy, each with a 95%
  bootstrap interval over problems, and the expected calibration error of its score (of the PRM's step
  scores too, against exact labels), drawn as a reliability diagram in `rm_reliability.png`;
- Math-Shepherd labels: agreement of hard Monte-Carlo labels with exact labels as N grows, on the
  first `eval_rm.mc_solutions` solutions (PRM runs);
- best-of-N accuracy by difficulty: each reward model's pick vs majority vote, with pass@1 and the
  oracle (any correct) for reference;
- right answer, wrong steps (synthetic tasks): how often each selector's pick has the right final
  answer but a wrong step by the exact labels.
"""

import json
import logging

import jax
import numpy as np
from etils import epath

from rtc.data.answers import extract_answer
from rtc.data.tasks import get_task
from rtc.errors import ConfigError
from rtc.rewards import verifier_metrics as metrics
from rtc.metrics import MetricWriter
from rtc.rewards import reward_model as rm
from rtc.rewards import rm_data
from rtc.rewards.self_check import checker_scores, self_check_scores
from rtc.rewards.step_labels import ExactLabeler, rollout_outcomes
from rtc.data.tfds_builders import task_records
from rtc.sampling import settings

RESULTS_FILE = "rm_eval.json"
RELIABILITY_FILE = "rm_reliability.png"
CALIBRATION_BINS = 10
BOOTSTRAP_RESAMPLES = 1000

_head_logits = jax.jit(rm.head_logits, static_argnames="model")


def check_context(name: str, model, seq_len: int) -> None:
    """A scorer reads rows of `seq_len` tokens (`[bos] + prompt + completion`, rm.seq_len) at positions
    `0..seq_len-1`: they must fit its context, which may differ from the policy's."""
    if seq_len > model.max_seq_len:
        raise ConfigError(f"rm.seq_len={seq_len} exceeds the {name}'s context of {model.max_seq_len} tokens")


def score_logits(model, params, tokens: np.ndarray, batch_size: int) -> np.ndarray:
    """f32[M, T]: the head at every token of `tokens: i32[M, T]`, in fixed-size batches."""
    out = []
    for start in range(0, len(tokens), batch_size):
        chunk = tokens[start : start + batch_size]
        padded = np.zeros((batch_size, tokens.shape[1]), np.int32)
        padded[: len(chunk)] = chunk
        out.append(np.asarray(_head_logits(model, params, padded))[: len(chunk)])
    return np.concatenate(out)


def solution_scores(kind: str, logits: np.ndarray, completion_mask: np.ndarray, step_end: np.ndarray) -> dict:
    """{"orm": f32[M]} or {"prm_<aggregation>": f32[M] for each aggregation}, all probabilities."""
    probs = jax.nn.sigmoid(logits)
    if kind == "orm":
        last = np.asarray(rm.last_token_index(completion_mask))
        return {"orm": np.asarray(probs)[np.arange(len(probs)), last]}
    return {f"prm_{name}": np.asarray(rm.aggregate(name, probs, step_end)) for name in rm.AGGREGATIONS}


def step_predictions(probs: np.ndarray, step_end: np.ndarray, exact) -> tuple[np.ndarray, np.ndarray]:
    """(predicted f32[S], truth f32[S]): the PRM's probability and the exact label of every step of the
    solutions the labeler kept; probs: f32[M, T], step_end: bool[M, T]."""
    kept = [i for i, labels in enumerate(exact.labels) if labels is not None]
    predicted = np.concatenate([probs[i][step_end[i]] for i in kept]) if kept else np.zeros(0)
    truth = np.concatenate([exact.labels[i] for i in kept]) if kept else np.zeros(0)
    return predicted, truth


def step_metrics(predicted: np.ndarray, truth: np.ndarray, skipped: dict, step_bins: dict) -> dict:
    """PRM step accuracy, AUROC and calibration error against exact labels (`step_predictions`)."""
    return {
        "step_accuracy": metrics.binary_accuracy(predicted, truth),
        "step_auroc": metrics.auroc(predicted, truth > 0.5),
        "step_ece": metrics.ece_of_bins(step_bins),
        "steps": int(truth.size),
        "step_positive_rate": float(truth.mean()) if truth.size else float("nan"),
        **{f"skipped_{k}": v for k, v in skipped.items()},
    }


def ranking_metrics(name: str, scores: np.ndarray, correct: np.ndarray, seed: int) -> dict:
    """`name`'s within-problem AUROC and pairwise accuracy, each with its 95% bootstrap interval over
    problems ([low, high]), and the number of pairs; scores: f32[P, N], correct: bool[P, N]."""
    wins, pairs = metrics.pairwise_counts(scores, correct)  # f64[P], i[P]

    def interval(metric_fn) -> list[float]:
        return list(
            metrics.bootstrap_interval(metric_fn, wins, pairs, num_resamples=BOOTSTRAP_RESAMPLES, seed=seed)
        )

    return {
        f"{name}/within_problem_auroc": metrics.mean_problem_auroc(wins, pairs),
        f"{name}/within_problem_auroc_interval": interval(metrics.mean_problem_auroc),
        f"{name}/pairwise_accuracy": metrics.pooled_pair_accuracy(wins, pairs),
        f"{name}/pairwise_accuracy_interval": interval(metrics.pooled_pair_accuracy),
        f"{name}/pairs": int(pairs.sum()),
    }


def calibration(confidences: np.ndarray, labels: np.ndarray) -> dict:
    """`metrics.calibration_bins` as lists (for JSON) over `CALIBRATION_BINS` bins."""
    bins = metrics.calibration_bins(confidences, labels, CALIBRATION_BINS)
    return {key: value.tolist() for key, value in bins.items()}


def plot_reliability(bins_by_scorer: dict, path, title: str = "") -> None:
    """Saves a PNG reliability diagram (Guo et al. 2017, "On Calibration of Modern Neural Networks", fig.
    1, as lines): each scorer's bins, mean confidence against accuracy, and the diagonal of perfect
    calibration."""
    # The Figure API with an Agg canvas never switches a caller's pyplot backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    for name, bins in bins_by_scorer.items():
        ax.plot(bins["confidence"], bins["accuracy"], marker="o", ms=4, label=name)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("mean confidence (bin)")
    ax.set_ylabel("fraction correct (bin)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path, format="png", bbox_inches="tight")


def mc_agreement(config, tokenizer, policy, policy_params, solutions, exact) -> dict:
    """{"N=k": agreement} of hard Monte-Carlo labels from k rollouts with exact labels, k = 1, 2, 4, ..."""
    e = config.eval_rm
    kept = [i for i, labels in enumerate(exact.labels) if labels is not None][: e.mc_solutions]
    if not kept:
        return {}
    outcomes = rollout_outcomes(
        policy,
        policy_params,
        tokenizer,
        get_task(config.task.name),
        [solutions[i] for i in kept],
        settings.from_block(config.eval, tokenizer, config.rm_data.mc_temperature),
        e.mc_rollouts,
        config.rm_data.mc_prefix_batch,
        jax.random.key(config.seed + 4),
        tokenizer.step_id,
    )
    ns = [n for n in (1, 2, 4, 8, 16, 32, 64, 128) if n <= e.mc_rollouts]
    agreement = metrics.label_agreement_by_n(outcomes, [exact.labels[i] for i in kept], ns)
    return {f"rollouts_{n}": value for n, value in agreement.items()}


def _flat(results: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in results.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def evaluate(
    config,
    workdir: epath.PathLike,
    tokenizer,
    policy,
    policy_params,
    scorers: dict,
    checkers: dict | None = None,
) -> dict:
    """Samples held-out solutions, scores them with each reward model in `scorers` (kind -> (model,
    params)) and each generative verifier in `checkers` (name -> (model, params): another LM's probability
    of the completion, `self_check.checker_scores`), prints the tables and writes `rm_eval.json`;
    returns the results."""
    e = config.eval_rm
    task = get_task(config.task.name)
    records = task_records(config, "test", workdir)
    records = [records[i] for i in range(min(e.num_problems, len(records)))]
    solutions = rm_data.sample_solutions(
        policy,
        policy_params,
        tokenizer,
        records,
        settings.from_block(config.eval, tokenizer, e.temperature),
        e.best_of_n,
        e.sample_batch_size,
        jax.random.key(config.seed + 3),
    )
    correct = rm_data.outcome_labels(task, tokenizer, solutions) > 0.5  # bool[M]
    arrays = rm_data.encode_solutions(solutions, config.rm.seq_len, tokenizer.pad_id)
    step_end = np.asarray(rm.step_end_mask(arrays["tokens"], arrays["completion_mask"], tokenizer.step_id))
    exact = (
        ExactLabeler(tokenizer, tokenizer.step_id, (tokenizer.think_start_id,))(solutions)
        if task.synthetic
        else None
    )

    shape = (len(records), e.best_of_n)
    results = {
        "problems": len(records),
        "solutions": len(solutions),
        "solution_accuracy": float(correct.mean()),
    }
    scores = language_model_scores(policy, policy_params, checkers or {}, arrays, e.score_batch_size)
    bins = {}
    for kind, (model, params) in scorers.items():
        check_context(f"{kind} reward model", model, arrays["tokens"].shape[1])
        logits = score_logits(model, params, arrays["tokens"], e.score_batch_size)
        kind_scores = solution_scores(kind, logits, arrays["completion_mask"], step_end)
        scores.update(kind_scores)
        if kind == "prm" and exact is not None:
            predicted, truth = step_predictions(np.asarray(jax.nn.sigmoid(logits)), step_end, exact)
            bins["prm_steps"] = calibration(predicted, truth)
            results["prm/steps"] = step_metrics(predicted, truth, exact.skipped, bins["prm_steps"])
    for name, s in scores.items():
        results[f"{name}/auroc"] = metrics.auroc(s, correct)
        results.update(ranking_metrics(name, s.reshape(shape), correct.reshape(shape), config.seed))
        bins[name] = calibration(s, correct)
        results[f"{name}/ece"] = metrics.ece_of_bins(bins[name])
    results["calibration"] = bins
    if "prm" in scorers and exact is not None and e.mc_solutions > 0:
        results["mc_agreement"] = mc_agreement(config, tokenizer, policy, policy_params, solutions, exact)

    answers = [extract_answer(tokenizer.decode(s.completion_ids)) for s in solutions]
    choices = {"majority": metrics.majority_choice(np.array(answers, object).reshape(shape).tolist())}
    choices.update({name: np.argmax(s.reshape(shape), axis=1) for name, s in scores.items()})
    difficulty = np.array([int(r["difficulty"]) for r in records])
    results["best_of_n"] = metrics.best_of_n_accuracy(correct.reshape(shape), difficulty, choices)
    if exact is not None:
        wrong_step, labelled = metrics.wrong_step_masks(exact.labels, shape)
        results["right_answer_wrong_steps"] = metrics.right_answer_wrong_steps(
            correct.reshape(shape), wrong_step, labelled, choices
        )

    write_results(config, workdir, results, bins)
    return results


def language_model_scores(policy, policy_params, checkers: dict, arrays: dict, batch_size: int) -> dict:
    """`{"self_check": f32[M], name: f32[M] per checker}`: the policy reading its own solutions back (the
    generative baseline every trained verifier must beat) and each checker's probability of them."""
    scores = {
        "self_check": self_check_scores(
            policy, policy_params, arrays["tokens"], arrays["completion_mask"], batch_size
        )
    }
    for name, (model, params) in checkers.items():
        check_context(name, model, arrays["tokens"].shape[1])
        scores[name] = checker_scores(model, params, arrays["tokens"], arrays["completion_mask"], batch_size)
    return scores


def write_results(config, workdir: epath.PathLike, results: dict, bins: dict) -> None:
    """The evaluation as metrics (`eval/...`), `rm_eval.json` and `rm_reliability.png`; prints the report."""
    with MetricWriter(workdir, progress=False) as writer:
        writer.write(int(config.rm.num_steps), _flat(results), prefix="eval/")
    path = epath.Path(workdir) / RESULTS_FILE
    if jax.process_index() == 0:
        path.write_text(json.dumps(results, indent=1))
        with (path.parent / RELIABILITY_FILE).open("wb") as f:  # a file object, so a URL workdir works
            plot_reliability(bins, f, f"Reliability on held-out {config.task.name}")
        print(report(config, results))
    logging.info("reward-model evaluation written to %s", path)


def report(config, results: dict) -> str:
    """The evaluation as text: ranking and calibration of each scorer, step metrics, MC agreement, then
    the best-of-N table and how often its picks have the right answer by wrong steps."""
    e = config.eval_rm
    lines = [
        f"\nReward models on {results['problems']} held-out {config.task.name} problems, "
        f"{e.best_of_n} sampled solutions each ({results['solution_accuracy']:.1%} correct):"
    ]
    lines.append(
        f"  {'outcome':<14} {'AUROC':>7} {'within-problem AUROC':>22} {'pairwise accuracy':>22} "
        f"{'pairs':>7} {'ECE':>7}"
    )
    for key in [k for k in results if k.endswith("/within_problem_auroc")]:
        name = key.removesuffix("/within_problem_auroc")
        within = _with_interval(results[key], results[key + "_interval"])
        pairwise = _with_interval(
            results[name + "/pairwise_accuracy"], results[name + "/pairwise_accuracy_interval"]
        )
        lines.append(
            f"  {name:<14} {results[name + '/auroc']:>7.3f} {within:>22} {pairwise:>22} "
            f"{results[name + '/pairs']:>7} {results[name + '/ece']:>7.3f}"
        )
    lines.append(f"  (intervals: 95% bootstrap over problems; ECE over {CALIBRATION_BINS} equal-width bins)")
    if "prm/steps" in results:
        s = results["prm/steps"]
        skipped = {k: v for k, v in s.items() if k.startswith("skipped_")}
        lines.append(
            f"  PRM vs exact step labels: accuracy {s['step_accuracy']:.3f}, AUROC {s['step_auroc']:.3f}, "
            f"ECE {s['step_ece']:.3f} ({s['steps']} steps, {s['step_positive_rate']:.1%} correct; "
            f"{skipped or 'none skipped'})"
        )
    if results.get("mc_agreement"):
        cells = ", ".join(f"N={k.split('_')[-1]} {v:.3f}" for k, v in results["mc_agreement"].items())
        lines.append(f"  Monte-Carlo (hard) vs exact step labels, agreement: {cells}")
    lines.append(f"\nBest-of-{e.best_of_n} accuracy by difficulty:")
    lines.append(metrics.format_best_of_n(results["best_of_n"]))
    if "right_answer_wrong_steps" in results:
        lines.append("\nRight answer, wrong steps (by exact step labels), among the picked solutions:")
        lines.append(metrics.format_columns(results["right_answer_wrong_steps"], ["rate"], "selector"))
    return "\n".join(lines)


def _with_interval(value: float, interval) -> str:
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"
