"""Held-out evaluation of trained reward models (the comparison of Lightman et al. 2023, small scale).

On `eval_rm.num_problems` test problems the policy samples `eval_rm.best_of_n` solutions each; then
- ORM: AUROC of its score against the verifier's label of each solution;
- PRM: step accuracy and AUROC against exact step labels (synthetic tasks), and the outcome AUROC
  of each aggregation (last / min / product / mean);
- Math-Shepherd labels: agreement of hard Monte-Carlo labels with exact labels as N grows, on the
  first `eval_rm.mc_solutions` solutions (PRM runs);
- best-of-N accuracy by difficulty: each reward model's pick vs majority vote, with pass@1 and the
  oracle (any correct) for reference.
"""

import json
import logging

import jax
import numpy as np
from etils import epath

from rtc.data.answers import extract_answer
from rtc.data.tasks import get_task
from rtc.rewards import verifier_metrics as metrics
from rtc.metrics import MetricWriter
from rtc.rewards import reward_model as rm
from rtc.rewards import rm_data
from rtc.rewards.step_labels import ExactLabeler, rollout_outcomes
from rtc.data.tfds_builders import task_records
from rtc.sampling import settings

RESULTS_FILE = "rm_eval.json"

_head_logits = jax.jit(rm.head_logits, static_argnames="model")


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


def step_metrics(probs: np.ndarray, step_end: np.ndarray, exact) -> dict:
    """PRM step accuracy and AUROC against exact labels, over the solutions the labeler kept."""
    kept = [i for i, labels in enumerate(exact.labels) if labels is not None]
    predicted = np.concatenate([probs[i][step_end[i]] for i in kept]) if kept else np.zeros(0)
    truth = np.concatenate([exact.labels[i] for i in kept]) if kept else np.zeros(0)
    return {
        "step_accuracy": metrics.binary_accuracy(predicted, truth),
        "step_auroc": metrics.auroc(predicted, truth > 0.5),
        "steps": int(truth.size),
        "step_positive_rate": float(truth.mean()) if truth.size else float("nan"),
        **{f"skipped_{k}": v for k, v in exact.skipped.items()},
    }


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


def evaluate(config, workdir: epath.PathLike, tokenizer, policy, policy_params, scorers: dict) -> dict:
    """Samples held-out solutions, scores them with each reward model in `scorers` (kind -> (model,
    params)), prints the tables and writes `rm_eval.json`; returns the results."""
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
    scores = {}
    for kind, (model, params) in scorers.items():
        logits = score_logits(model, params, arrays["tokens"], e.score_batch_size)
        kind_scores = solution_scores(kind, logits, arrays["completion_mask"], step_end)
        scores.update(kind_scores)
        for name, s in kind_scores.items():
            results[f"{name}/auroc"] = metrics.auroc(s, correct)
            results[f"{name}/within_problem_auroc"] = metrics.within_problem_auroc(
                s.reshape(shape), correct.reshape(shape)
            )
        if kind == "prm" and exact is not None:
            results["prm/steps"] = step_metrics(np.asarray(jax.nn.sigmoid(logits)), step_end, exact)
    if "prm" in scorers and exact is not None and e.mc_solutions > 0:
        results["mc_agreement"] = mc_agreement(config, tokenizer, policy, policy_params, solutions, exact)

    answers = [extract_answer(tokenizer.decode(s.completion_ids)) for s in solutions]
    choices = {"majority": metrics.majority_choice(np.array(answers, object).reshape(shape).tolist())}
    choices.update({name: np.argmax(s.reshape(shape), axis=1) for name, s in scores.items()})
    difficulty = np.array([int(r["difficulty"]) for r in records])
    results["best_of_n"] = metrics.best_of_n_accuracy(correct.reshape(shape), difficulty, choices)

    with MetricWriter(workdir, progress=False) as writer:
        writer.write(int(config.rm.num_steps), _flat(results), prefix="eval/")
    path = epath.Path(workdir) / RESULTS_FILE
    if jax.process_index() == 0:
        path.write_text(json.dumps(results, indent=1))
        print(report(config, results))
    logging.info("reward-model evaluation written to %s", path)
    return results


def report(config, results: dict) -> str:
    """The evaluation as text: AUROCs, step metrics, MC agreement, then the best-of-N table."""
    e = config.eval_rm
    lines = [
        f"\nReward models on {results['problems']} held-out {config.task.name} problems, "
        f"{e.best_of_n} sampled solutions each ({results['solution_accuracy']:.1%} correct):"
    ]
    lines.append(f"  outcome AUROC  {'':<12} {'pooled':>8} {'within problem':>15}")
    for key in [k for k in results if k.endswith("/within_problem_auroc")]:
        name = key.removesuffix("/within_problem_auroc")
        lines.append(f"  outcome AUROC  {name:<12} {results[name + '/auroc']:>8.3f} {results[key]:>15.3f}")
    if "prm/steps" in results:
        s = results["prm/steps"]
        skipped = {k: v for k, v in s.items() if k.startswith("skipped_")}
        lines.append(
            f"  PRM vs exact step labels: accuracy {s['step_accuracy']:.3f}, AUROC {s['step_auroc']:.3f} "
            f"({s['steps']} steps, {s['step_positive_rate']:.1%} correct; {skipped or 'none skipped'})"
        )
    if results.get("mc_agreement"):
        cells = ", ".join(f"N={k.split('_')[-1]} {v:.3f}" for k, v in results["mc_agreement"].items())
        lines.append(f"  Monte-Carlo (hard) vs exact step labels, agreement: {cells}")
    lines.append(f"\nBest-of-{e.best_of_n} accuracy by difficulty:")
    lines.append(metrics.format_best_of_n(results["best_of_n"]))
    return "\n".join(lines)
