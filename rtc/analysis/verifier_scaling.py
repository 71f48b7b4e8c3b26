"""Verifiers as N grows (CLI mode `verifiers`): PRM vs ORM vs majority vote on the same samples.

Lightman et al. 2023 ("Let's Verify Step by Step", fig. 3) sample N solutions per problem, pick one by
the ORM, by the PRM (product of step probabilities) or by majority vote, and plot accuracy against N:
the PRM's lead over the ORM and majority vote grows with N. Here the policy samples `large_n` solutions
per held-out problem once; both reward models score every solution (the PRM under each aggregation of
`reward_model.AGGREGATIONS`); every curve at k <= large_n is the expected accuracy over random k-subsets
of the same samples (`rtc.analysis.scaling`), with a bootstrap interval over problems. Weighted voting
(Li et al. 2023) by each verifier and pass@k (a perfect verifier) are drawn beside them, and the
within-problem AUROC says how well each score ranks one problem's solutions. The policy's own check
(`self_check`: its probability of the least likely token it wrote, `rtc.rewards.self_check`) is scored
beside the trained verifiers as the baseline they must beat, and with `checker_workdir` a checker LM trained
further than the policy (`checker`: its probability of the completion, experiments/configs/checker.py).

Writes `verifiers.md`, `verifiers.png` and `verifiers.json` to the workdir.
"""

import json
import logging

import jax
import ml_collections
import numpy as np
from etils import epath

from rtc.data.answers import extract_answer
from rtc.data.tasks import get_task
from rtc.errors import ConfigError
from rtc.rewards import verifier_metrics as rm_metrics
from rtc.data.format import prompt_tokens
from rtc.data.tfds_builders import task_records
from rtc.parallel import distributed
from rtc.rewards import reward_model as rm
from rtc import recipes
from rtc.pretrained.run_model import load_model
from rtc.rewards import rm_data, rm_evaluate
from rtc.rewards import training as rm_training
from rtc.rewards.self_check import checker_scores, self_check_scores
from rtc.sampling import settings
from rtc.analysis import scaling
from rtc.eval import voting

RESULTS_FILE = "verifiers.json"
# the curves verifiers.png draws (verifiers.md lists every curve)
DRAWN = (
    "majority",
    "best-of-N orm",
    "best-of-N prm_product",
    "best-of-N prm_min",
    "weighted prm_product",
    "best-of-N self_check",
    "best-of-N checker",
)


def finished(directory: epath.Path) -> bool:
    """An ORM/PRM run that trained all its steps (its evaluation, written last, is there)."""
    return (directory / rm_training.DESCRIPTION_FILE).is_file() and (
        directory / rm_evaluate.RESULTS_FILE
    ).is_file()


def ensure_runs(config, workdir: epath.Path) -> ml_collections.ConfigDict:
    """The config with `orm_workdir`, `prm_workdir` and `policy_workdir` set: the given runs, or runs
    trained here when none is given (the policy and ORM into WORKDIR/orm, the PRM into WORKDIR/prm)."""
    c = ml_collections.ConfigDict(config.to_dict())
    for kind in reward_model_kinds(config):
        given = c[f"{kind}_workdir"]
        directory = epath.Path(given) if given else workdir / kind
        if not finished(directory):
            if given:
                raise FileNotFoundError(f"{directory} is not a finished {kind.upper()} run")
            logging.info("no %s_workdir: training the %s into %s", kind, kind.upper(), directory)
            rm_config = ml_collections.ConfigDict(c.to_dict())
            rm_config.mode = kind
            rm_config.rm_data.labels = "verifier" if kind == "orm" else config.rm_data.labels
            recipes.reward_model_recipe(rm_config, directory)
        c[f"{kind}_workdir"] = str(directory)
        if not c.policy_workdir:  # the ORM run trained the policy; the PRM shares it
            c.policy_workdir = str(directory / "policy")
    if not c.policy_workdir or not (epath.Path(c.policy_workdir) / "checkpoints").is_dir():
        raise ConfigError(f"no policy checkpoints in {c.policy_workdir}: set policy_workdir to the SFT run")
    return c


def reward_model_kinds(config) -> tuple[str, ...]:
    """`verifiers.reward_models`: the trained reward models scored (orm, prm; both by default)."""
    kinds = tuple(config.verifiers.get("reward_models", ("orm", "prm")))
    if set(kinds) - {"orm", "prm"}:
        raise ConfigError(f"verifiers.reward_models {kinds} may name only 'orm' and 'prm'")
    return kinds


def load_verifiers(config) -> dict:
    """{kind: (model, params)} of the reward-model runs named by `orm_workdir` and `prm_workdir`."""
    verifiers = {}
    for kind in reward_model_kinds(config):
        directory = config[f"{kind}_workdir"]
        found = rm_training.load_description(directory)["kind"]
        if found != kind:
            raise ConfigError(f"{kind}_workdir={directory} holds a {found}, not a {kind}")
        verifiers[kind] = rm_training.load_reward_model(directory)
    return verifiers


def score_solutions(verifiers: dict, arrays: dict, step_end: np.ndarray, batch_size: int) -> dict:
    """{"orm": f32[M], "prm_<aggregation>": f32[M], ...}: each verifier's probability per solution."""
    scores = {}
    for kind, (model, params) in verifiers.items():
        logits = rm_evaluate.score_logits(model, params, arrays["tokens"], batch_size)
        scores.update(rm_evaluate.solution_scores(kind, logits, arrays["completion_mask"], step_end))
    return scores


def verifier_curves(
    correct: np.ndarray,
    answers: list[list[str | None]],
    scores: dict,
    ks: list[int],
    num_draws: int,
    rng: np.random.Generator,
    resamples: int,
) -> dict:
    """{name: {k: (mean, low, high)}}: pass@k, majority@k, and best-of-k and weighted@k per verifier.

    correct: bool[P, N]; scores: {verifier: f[P, N]}.
    """
    ids = voting.answer_ids(answers)
    seed = int(rng.integers(2**31))

    def curve(method: str, score: np.ndarray | None) -> dict:
        by_k = {}
        for (
            k
        ) in ks:  # every rule sees the same random k-subsets (one generator per k), so rules compare paired
            subsets = np.random.default_rng((seed, k))
            values = scaling.method_accuracy(method, correct, ids, score, k, num_draws, subsets)
            by_k[k] = (float(values.mean()), *scaling.bootstrap_interval(values, resamples, rng=rng))
        return by_k

    curves = {"pass@k": curve("pass", None), "majority": curve("majority", None)}
    for name, score in scores.items():
        curves[f"best-of-N {name}"] = curve("best_of_n", score)
    for name, score in scores.items():
        curves[f"weighted {name}"] = curve("weighted", score)
    return curves


def run(config: ml_collections.ConfigDict, workdir: epath.PathLike) -> dict:
    workdir = epath.Path(workdir)
    recipes.write_config(config, workdir)
    v = config.verifiers
    if v.large_n < 1 or any(not 1 <= k <= v.large_n for k in v.budgets):
        raise ConfigError(f"verifiers.budgets {tuple(v.budgets)} must lie in 1..large_n={v.large_n}")
    config = ensure_runs(config, workdir)
    tokenizer, policy, _ = load_model(config)
    policy_params = recipes.restore_params(config.policy_workdir)
    verifiers = load_verifiers(config)
    task = get_task(config.task.name)
    records = task_records(config, "test", workdir)
    records = [records[i] for i in range(min(v.num_problems, len(records)))]
    longest = max(len(prompt_tokens(tokenizer, r)) for r in records)
    if longest + config.eval.max_new_tokens > config.rm.seq_len:  # before sampling, not after
        raise ConfigError(
            f"a prompt of {longest} tokens + eval.max_new_tokens={config.eval.max_new_tokens} exceeds "
            f"rm.seq_len={config.rm.seq_len}, the reward models' scoring length: raise rm.seq_len"
        )
    logging.info("verifiers: %d held-out problems x %d samples", len(records), v.large_n)
    solutions = rm_data.sample_solutions(
        policy,
        policy_params,
        tokenizer,
        records,
        settings.from_block(config.eval, tokenizer, v.temperature),
        v.large_n,
        config.eval_rm.sample_batch_size,
        jax.random.key(config.seed + 5),
    )
    shape = (len(records), v.large_n)
    correct = (rm_data.outcome_labels(task, tokenizer, solutions) > 0.5).reshape(shape)  # bool[P, N]
    texts = [tokenizer.decode(s.completion_ids) for s in solutions]
    answers = np.array([extract_answer(t) for t in texts], object).reshape(shape).tolist()
    arrays = rm_data.encode_solutions(solutions, config.rm.seq_len, tokenizer.pad_id)
    step_end = np.asarray(rm.step_end_mask(arrays["tokens"], arrays["completion_mask"], tokenizer.step_id))
    flat_scores = score_solutions(verifiers, arrays, step_end, config.eval_rm.score_batch_size)
    flat_scores["self_check"] = self_check_scores(  # the policy's own check, the untrained baseline
        policy, policy_params, arrays["tokens"], arrays["completion_mask"], config.eval_rm.score_batch_size
    )
    for name, (model, params) in recipes.load_checker(config, tokenizer).items():  # a checker LM, if given
        flat_scores[name] = checker_scores(
            model, params, arrays["tokens"], arrays["completion_mask"], config.eval_rm.score_batch_size
        )
    scores = {name: s.reshape(shape) for name, s in flat_scores.items()}  # f32[P, N] each

    rng = np.random.default_rng(config.seed)
    ks = sorted(int(k) for k in v.budgets)
    curves = verifier_curves(correct, answers, scores, ks, v.num_draws, rng, v.bootstrap)
    outputs = {
        "problems": len(records),
        "large_n": v.large_n,
        "sample_accuracy": float(correct.mean()),
        "within_problem_auroc": {n: rm_metrics.within_problem_auroc(s, correct) for n, s in scores.items()},
        "pooled_auroc": {n: rm_metrics.auroc(s.ravel(), correct.ravel()) for n, s in scores.items()},
        "curves": curves,
        "oracle": {k: float(o) for k, o in zip(ks, scaling.oracle_curve(correct.mean(axis=1), ks))},
    }
    if distributed.is_primary():
        write_outputs(workdir, outputs, f"{config.task.name}: verifiers vs N ({len(records)} problems)")
    return outputs


def report(outputs: dict) -> str:
    """The markdown report: accuracy of every rule at every N, then each score's AUROCs."""
    ks = sorted(next(iter(outputs["curves"].values())), key=int)
    lines = ["| rule | " + " | ".join(f"N={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for name, by_k in outputs["curves"].items():
        cells = " | ".join(f"{by_k[k][0]:.3f} [{by_k[k][1]:.3f}, {by_k[k][2]:.3f}]" for k in ks)
        lines.append(f"| {name} | {cells} |")
    lines += ["", "| verifier score | within-problem AUROC | pooled AUROC |", "|---|---|---|"]
    for name, value in outputs["within_problem_auroc"].items():
        lines.append(f"| {name} | {value:.3f} | {outputs['pooled_auroc'][name]:.3f} |")
    lines += [
        "",
        f"{outputs['problems']} problems x {outputs['large_n']} samples, "
        f"{outputs['sample_accuracy']:.1%} of the samples correct.",
    ]
    return "\n".join(lines)


def write_outputs(workdir: epath.Path, outputs: dict, title: str) -> None:
    """`verifiers.json`, `verifiers.md` and `verifiers.png` (accuracy against N); prints the report."""
    (workdir / RESULTS_FILE).write_text(json.dumps(outputs, indent=1, default=float))
    text = report(outputs)
    (workdir / "verifiers.md").write_text(text + "\n")
    shown = {name: by_k for name, by_k in outputs["curves"].items() if name in DRAWN}
    with (workdir / "verifiers.png").open("wb") as f:  # matplotlib writes to a file object, so a URL works
        scaling.plot_curves(shown, None, f, title, outputs["oracle"])
    print(text)
