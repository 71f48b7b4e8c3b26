"""ORM and PRM runs: a policy, its labelled solutions, the reward model trained, then evaluated.

`python -m rtc.main --config=experiments/configs/orm.py --workdir=DIR` (or `prm.py`) runs:
1. the policy: restored from `config.policy.workdir` (an SFT run of the same `config.model`), or,
   when that is empty, an SFT run with `config.policy.train` trained (or resumed) in `DIR/policy`;
2. data: `config.rm.group_size` sampled solutions per training problem, labelled by the verifier
   (ORM) or by step labels (PRM: `config.rm.labels` = exact / mc_hard / mc_soft; or `human`: the
   PRM800K-format file `config.rm.human_path` instead of sampled solutions), cached in
   `DIR/rm_data/` so a resumed run trains on the same arrays;
3. training: the reward model (the policy's weights plus a scalar head, `reward_model.py`) with the
   shared jitted update, orbax checkpoints in `DIR/checkpoints` (exact resume: params, optimizer
   state, step, rng and data position), metrics through `MetricWriter`;
4. evaluation on held-out problems, printed as tables and written to `DIR/rm_eval.json`.

`load_reward_model(DIR)` gives `(model, params)` of a finished run, e.g. for `prm_step_rewards`.
"""

import dataclasses
import json
import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from rtc.checkpoint import Checkpointer
from rtc.data.tasks import get_task
from rtc.errors import ConfigError
from rtc.metrics import MetricWriter, check_finite
from rtc.model import Model, ModelConfig
from rtc.parallel import config_mesh, placement
from rtc.rewards import reward_model as rm
from rtc.rewards import prm800k, rm_data, rm_evaluate
from rtc.rewards.step_labels import ExactLabeler, HumanLabeler, MonteCarloLabeler
from rtc.tokenizer.build import ensure_model
from rtc.tokenizer.tokenizer import Tokenizer
from rtc.train import sft_loop
from rtc.train.sft_data import RowStream, process_rows
from rtc.train.state import init_train_state, make_update

DESCRIPTION_FILE = "reward_model.json"
STEP_LABELS = ("exact", "mc_hard", "mc_soft", "human")


# --- the policy -------------------------------------------------------------------------------------


def policy_config(config: ml_collections.ConfigDict, workdir: Path) -> ml_collections.ConfigDict:
    """The SFT config of the policy: this run's task, model and sampling, `config.policy.train`."""
    c = ml_collections.ConfigDict(
        {
            "mode": "sft",
            "seed": config.seed,
            "num_devices": config.num_devices,
            "tokenizer_path": config.tokenizer_path,
            "data_dir": config.data_dir or str(workdir / "data"),
            "task": config.task.to_dict(),
            "model": config.model.to_dict(),
            "train": config.policy.train.to_dict(),
            "eval": config.eval.to_dict(),
        }
    )
    return c


def obtain_policy(config, workdir: Path, tokenizer: Tokenizer, model: Model):
    """The policy's params: restored from `config.policy.workdir`, or trained into `workdir/policy`."""
    sft_config = policy_config(config, workdir)
    if config.policy.workdir:
        return sft_loop.restore_params(sft_config, config.policy.workdir, model)
    state = sft_loop.train(sft_config, workdir / "policy", tokenizer, model)
    if int(state["step"]) < sft_config.train.num_steps:
        raise ConfigError("the policy's SFT run halted early (policy.train.halt_after); rerun to finish it")
    return state["params"]


# --- the reward model -------------------------------------------------------------------------------


def freeze_trunk(head_only: bool) -> optax.GradientTransformation:
    """Zeroes every update but the head's when `head_only` (stateless, so both settings share one
    optimizer-state structure and either can restore the other's checkpoint template)."""

    def update(updates, state, params=None):
        if not head_only:
            return updates, state
        return {
            k: (v if k in rm.HEAD_PARAMS else jax.tree.map(jnp.zeros_like, v)) for k, v in updates.items()
        }, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def rm_optimizer(train: ml_collections.ConfigDict):
    """`(schedule, optimizer)`: the shared AdamW (`sft_loop.make_optimizer`), trunk frozen if head-only."""
    schedule, optimizer = sft_loop.make_optimizer(ml_collections.ConfigDict({"train": train.to_dict()}))
    return schedule, optax.chain(optimizer, freeze_trunk(train.head_only))


def make_loss(kind: str, model: Model, head_only: bool):
    """`loss_fn(params, batch, rng)` of the ORM or PRM; head-only stops gradients at the trunk."""
    loss = rm.orm_loss if kind == "orm" else rm.prm_loss

    def loss_fn(params, batch, rng):
        if head_only:
            params = {k: (v if k in rm.HEAD_PARAMS else jax.lax.stop_gradient(v)) for k, v in params.items()}
        return loss(params, batch, model)

    return loss_fn


def describe(config, model: Model, tokenizer: Tokenizer) -> dict:
    """What `load_reward_model` needs to rebuild the model and its checkpoint template."""
    return {
        "kind": config.mode,
        "model": dataclasses.asdict(model.config),
        "train": config.train.to_dict(),
        "delimiter_id": tokenizer.step_id,
        "aggregation": config.rm.aggregation,
    }


def load_reward_model(workdir: str | Path, step: int | None = None) -> tuple[Model, dict]:
    """`(model, params)` of a finished ORM/PRM run in `workdir` (default: its latest checkpoint).

    The run's `reward_model.json` also names `kind`, `delimiter_id` and `aggregation`
    (`load_description(workdir)`).
    """
    description = load_description(workdir)
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in description["model"].items()}
    model = Model(ModelConfig(**fields))
    _, optimizer = rm_optimizer(ml_collections.ConfigDict(description["train"]))
    template = placement.replicated_template(
        jax.eval_shape(
            lambda: init_train_state(model.init_params(jax.random.key(0)), optimizer, jax.random.key(0))
        )
    )
    with Checkpointer(Path(workdir) / "checkpoints") as checkpointer:
        state, _ = checkpointer.restore(template, step=step)
    return model, state["params"]


def load_description(workdir: str | Path) -> dict:
    path = Path(workdir) / DESCRIPTION_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {workdir} is not an ORM/PRM run directory")
    return json.loads(path.read_text())


# --- data -------------------------------------------------------------------------------------------


def make_labeler(config, tokenizer: Tokenizer, policy: Model, policy_params, rng: jax.Array):
    """The step labeler named by `config.rm.labels` (exact / mc_hard / mc_soft / human)."""
    r = config.rm
    ignore = (tokenizer.think_start_id,)
    if r.labels == "human":
        return HumanLabeler(tokenizer.step_id, ignore)
    if r.labels == "exact":
        if not get_task(config.task.name).synthetic:
            raise ConfigError(f"exact step labels need a synthetic task, not {config.task.name!r}")
        return ExactLabeler(tokenizer, tokenizer.step_id, ignore)
    if r.labels in ("mc_hard", "mc_soft"):
        return MonteCarloLabeler(
            policy,
            policy_params,
            tokenizer,
            get_task(config.task.name),
            sft_loop.sampler_config(config, tokenizer, r.mc_temperature),
            r.mc_rollouts,
            r.mc_prefix_batch,
            rng,
            tokenizer.step_id,
            soft=r.labels == "mc_soft",
            ignore_ids=ignore,
        )
    raise ConfigError(f"unknown rm.labels {r.labels!r} for a PRM; known: {list(STEP_LABELS)}")


def label_solutions(config, tokenizer, policy, policy_params, solutions, rng) -> tuple[dict, dict]:
    """Training arrays for `solutions` and the label counts (skips by reason, positive rate)."""
    seq_len = config.train.seq_len
    if config.mode == "orm":
        arrays = rm_data.encode_solutions(solutions, seq_len, tokenizer.pad_id)
        arrays["label"] = rm_data.outcome_labels(get_task(config.task.name), tokenizer, solutions)
        return arrays, {"solutions": len(solutions), "positive_rate": float(arrays["label"].mean())}
    labelled = make_labeler(config, tokenizer, policy, policy_params, rng)(solutions)
    kept = [i for i, labels in enumerate(labelled.labels) if labels is not None]
    if not kept:
        raise ConfigError(
            f"none of the {len(solutions)} sampled solutions can be labelled step by step "
            f"(skipped: {labelled.skipped}); train the policy longer"
        )
    solutions = [solutions[i] for i in kept]
    labels = [labelled.labels[i] for i in kept]
    arrays = rm_data.encode_solutions(solutions, seq_len, tokenizer.pad_id)
    arrays.update(rm_data.step_label_arrays(solutions, labels, tokenizer.step_id, seq_len))
    steps = np.concatenate(labels)
    counts = {"solutions": len(solutions), "steps": int(steps.size), "positive_rate": float(steps.mean())}
    return arrays, {**counts, **{f"skipped_{k}": v for k, v in labelled.skipped.items()}}


def training_data(config, workdir: Path, tokenizer, policy: Model, policy_params) -> dict:
    """The labelled training arrays, sampled once and cached in `workdir/rm_data/`."""
    directory = workdir / "rm_data"
    signature = {
        "mode": config.mode,
        "rm": config.rm.to_dict(),
        "task": config.task.to_dict(),
        "seq_len": config.train.seq_len,
        "seed": config.seed,
        "policy": config.policy.workdir,
    }
    if (directory / "train.npz").is_file():
        saved = json.loads((directory / "train.json").read_text())
        if saved["signature"] != json.loads(json.dumps(signature)):
            raise ConfigError(f"{directory} holds data of another config; use a new workdir")
        logging.info("training data from %s: %s", directory, saved["counts"])
        return rm_data.load_arrays(directory / "train.npz")
    r = config.rm
    rng = jax.random.key(config.seed + 10)
    if r.labels == "human":  # PRM800K-format solutions with their labels, instead of the policy's
        solutions, file_counts = prm800k.load(r.human_path, tokenizer, r.neutral)
        logging.info("read %s: %s", r.human_path, file_counts)
    else:
        records = sft_loop.task_records(config, "train", workdir)
        records = [records[i] for i in range(min(r.num_problems, len(records)))]
        solutions = rm_data.sample_solutions(
            policy,
            policy_params,
            tokenizer,
            records,
            sft_loop.sampler_config(config, tokenizer, r.temperature),
            r.group_size,
            r.sample_batch_size,
            jax.random.fold_in(rng, 0),
        )
    arrays, counts = label_solutions(
        config, tokenizer, policy, policy_params, solutions, jax.random.fold_in(rng, 1)
    )
    logging.info("labelled training data: %s", counts)
    directory.mkdir(parents=True, exist_ok=True)
    rm_data.save_arrays(directory / "train.npz", arrays)
    (directory / "train.json").write_text(json.dumps({"signature": signature, "counts": counts}, indent=1))
    return arrays


# --- training ---------------------------------------------------------------------------------------


def _log_window(window: list[tuple[int, dict]]) -> dict:
    """Mean metrics of the steps since the last log, each step checked finite first."""
    values = jax.device_get([metrics for _, metrics in window])
    for (step, _), metrics in zip(window, values):
        check_finite(step, metrics, keys=("loss", "grad_norm"))
    logged = {name: float(np.mean([v[name] for v in values])) for name in values[0]}
    logged["learning_rate"] = float(values[-1]["learning_rate"])
    return logged


def train(config, workdir: Path, model: Model, policy_params, data: dict) -> dict:
    """Trains (or resumes) the reward model to `config.train.num_steps`; returns the train state."""
    t = config.train
    mesh = placement.mesh_from_config(config)
    config_mesh.batch_size_per_chip(t.batch_size, mesh)  # the batch must split evenly
    schedule, optimizer = rm_optimizer(t)
    rng = jax.random.key(config.seed)
    params = rm.init_from_policy(model, policy_params, jax.random.fold_in(rng, 0))
    init = lambda params, rng: init_train_state(params, optimizer, jax.random.fold_in(rng, 1))  # noqa: E731
    state, shardings = placement.init_sharded(
        init, (params, rng), mesh, placement.rules_from_config(config, mesh)
    )
    update = placement.jit_update(
        make_update(make_loss(config.mode, model, t.head_only), optimizer, schedule), shardings, mesh
    )
    num_rows = len(data["tokens"])
    stream = RowStream(np.ones(num_rows, np.int32), 1, packed=False, seed=config.seed)
    local = process_rows(t.batch_size, jax.process_index(), jax.process_count())
    with Checkpointer(workdir / "checkpoints", max_to_keep=t.max_to_keep) as checkpointer:
        position = 0
        if checkpointer.latest_step() is not None:
            state, meta = checkpointer.restore(state)
            position = meta["data_position"]
            logging.info("resumed the %s from step %d", config.mode, int(state["step"]))
        start = int(state["step"])
        window = []
        with MetricWriter(workdir, total_steps=t.num_steps, initial_step=start) as writer:
            for step in range(start + 1, t.num_steps + 1):
                rows = np.concatenate(stream.rows(position, t.batch_size))[local]
                batch = config_mesh.shard_batch({k: v[rows] for k, v in data.items()}, mesh)
                state, metrics = update(state, batch)
                position += t.batch_size
                window.append((step, metrics))
                writer.advance()
                is_checkpoint = step % t.checkpoint_every == 0 or step == t.num_steps
                if step % t.log_every == 0 or is_checkpoint:
                    logged = _log_window(window)
                    window = []
                    writer.write(step, logged, prefix="train/")
                    writer.log(
                        f"{config.mode} step {step}/{t.num_steps}  loss {logged['loss']:.4f}  "
                        f"accuracy {logged['accuracy']:.3f}"
                    )
                    if is_checkpoint:
                        checkpointer.save(step, state, {"data_position": position, "kind": config.mode})
                if step == t.halt_after:
                    logging.warning("halting after step %d as configured (train.halt_after)", step)
                    break
    return state


# --- the run ----------------------------------------------------------------------------------------


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Policy, data, reward-model training, then evaluation; returns the evaluation results."""
    if config.mode not in ("orm", "prm"):
        raise ConfigError(f"rm_loop runs modes 'orm' and 'prm', not {config.mode!r}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer.load(ensure_model(config.tokenizer_path or None))
    policy = sft_loop.build_model(config, tokenizer.vocab_size)
    policy_params = obtain_policy(config, workdir, tokenizer, policy)
    model = Model(rm.with_head(policy.config))
    (workdir / DESCRIPTION_FILE).write_text(json.dumps(describe(config, model, tokenizer), indent=1))
    data = training_data(config, workdir, tokenizer, policy, policy_params)
    state = train(config, workdir, model, policy_params, data)
    if int(state["step"]) < config.train.num_steps:
        return {}
    scorers = {config.mode: (model, state["params"])}
    if config.eval_rm.compare_workdir:  # e.g. the ORM run beside this PRM run, for best-of-N
        other = load_description(config.eval_rm.compare_workdir)["kind"]
        if other in scorers:
            raise ConfigError(f"eval_rm.compare_workdir is another {other} run; it should be the other kind")
        scorers[other] = load_reward_model(config.eval_rm.compare_workdir)
    return rm_evaluate.evaluate(config, workdir, tokenizer, policy, policy_params, scorers)
