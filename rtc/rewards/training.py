"""Training outcome and process reward models (ORM, PRM) with the shared loop, and loading a trained one.

Both are a network with the scalar head switched on, initialised from an SFT run of that network (the
policy's, or with `rm.preset` the verifier's own) and trained as a separate model: the ORM with binary
cross-entropy on the verifier's verdict at the last token (Cobbe et al. 2021), the PRM on per-step labels
at every step delimiter (Lightman et al. 2023). With `rm.select_every` the step kept is the one with the
best held-out within-problem AUROC (`rtc.rewards.selection`).
"""

import dataclasses
import functools
import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath

from rtc.checkpoint import Checkpointer
from rtc.errors import ConfigError
from rtc.model import Model, ModelConfig
from rtc.parallel import config_mesh, placement
from rtc.rewards import reward_model as rm
from rtc.rewards import selection
from rtc.train import loop
from rtc.train import optimizer as optimizer_lib
from rtc.train.sft_data import RowStream, process_rows
from rtc.train.state import init_train_state, make_update

DESCRIPTION_FILE = "reward_model.json"


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


def rm_optimizer(train):
    """`(schedule, optimizer)`: the shared AdamW (`optimizer.from_block`), trunk frozen if head-only."""
    schedule, optimizer = optimizer_lib.from_block(train)
    return schedule, optax.chain(optimizer, freeze_trunk(train.head_only))


def make_loss(kind: str, model: Model, head_only: bool):
    """`loss_fn(params, batch, rng)` of the ORM or PRM; head-only stops gradients at the trunk."""
    loss = rm.orm_loss if kind == "orm" else rm.prm_loss

    def loss_fn(params, batch, rng):
        if head_only:
            params = {k: (v if k in rm.HEAD_PARAMS else jax.lax.stop_gradient(v)) for k, v in params.items()}
        return loss(params, batch, model)

    return loss_fn


def describe(config, model: Model, tokenizer) -> dict:
    """What `load_reward_model` and the search need: the kind, the model, the step delimiter, the aggregation."""
    return {
        "kind": config.mode,
        "model": dataclasses.asdict(model.config),
        "delimiter_id": tokenizer.step_id,
        "aggregation": config.rm_data.aggregation,
    }


def load_reward_model(workdir: epath.PathLike, step: int | None = None) -> tuple[Model, dict]:
    """`(model, params)` of a finished ORM/PRM run in `workdir` (default: the step chosen on held-out AUROC
    when the run selected one, else its latest checkpoint; `restore_params`).

    The model is the reward model's own (its config in `reward_model.json`), whatever the policy's. That
    file also names `kind`, `delimiter_id` and `aggregation` (`load_description(workdir)`).
    """
    description = load_description(workdir)
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in description["model"].items()}
    return Model(ModelConfig(**fields)), restore_params(workdir, step)


def restore_params(workdir: epath.PathLike, step: int | None = None):
    """A reward-model run's params: at `step` (from `checkpoints/`, or from `best/` when only kept there);
    by default the step chosen on held-out AUROC (`selection.json`), else the latest checkpoint."""
    workdir = epath.Path(workdir)
    if step is None:
        record = selection.read_selection(workdir)
        step = None if record is None else record["chosen_step"]
        if step is not None:
            return selection.restore_best(workdir, step)
    with Checkpointer(workdir / "checkpoints") as checkpointer:
        if (
            step is not None
            and step not in checkpointer.all_steps()
            and step in selection.best_steps(workdir)
        ):
            return selection.restore_best(workdir, step)
        return checkpointer.restore_params(step)


def load_description(workdir: epath.PathLike) -> dict:
    """The `reward_model.json` of an ORM/PRM run (`describe`)."""
    path = epath.Path(workdir) / DESCRIPTION_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {workdir} is not an ORM/PRM run directory")
    return json.loads(path.read_text())


def make_step(update, data: dict, batch_size: int, seed: int, mesh):
    """`step(state, position) -> (state, device metrics, {})` on the shuffled solutions at `position`."""
    stream = RowStream(np.ones(len(data["tokens"]), np.int32), 1, packed=False, seed=seed)
    local = process_rows(batch_size, jax.process_index(), jax.process_count())

    def step(state, position):
        rows = np.concatenate(stream.rows(position, batch_size))[local]
        state, metrics = update(state, config_mesh.shard_batch({k: v[rows] for k, v in data.items()}, mesh))
        return state, metrics, {}

    return step


def train(
    config,
    block,
    workdir: epath.PathLike,
    model: Model,
    trunk_params,
    data: dict,
    *,
    validation: selection.Validation | None = None,
    halt_after=None,
) -> dict:
    """Trains (or resumes) the reward model (`config.mode`: orm or prm) for `block.num_steps` steps from
    `trunk_params` (an SFT run's params of the model's network: the policy's, or the verifier's own);
    returns the train state (the last step's, whichever step early stopping chose).

    `block.select_every` > 0: every that many steps the `validation` solutions choose the step kept
    (`rtc.rewards.selection`); 0 (or absent) trains exactly as without it.
    """
    every = block.get("select_every") or 0
    if every < 0:
        raise ConfigError(f"rm.select_every must be >= 0 (0: no early stopping), got {every}")
    if every and validation is None:
        raise ConfigError("rm.select_every needs held-out solutions: set rm_data.validation_problems")
    mesh = placement.mesh_from_config(config)
    config_mesh.batch_size_per_chip(block.batch_size, mesh)  # the batch must split evenly
    schedule, optimizer = rm_optimizer(block)
    rng = jax.random.key(config.seed)
    params = rm.init_from_policy(model, trunk_params, jax.random.fold_in(rng, 0))
    state, shardings = placement.init_sharded(
        lambda params, rng: init_train_state(params, optimizer, jax.random.fold_in(rng, 1)),
        (params, rng),
        mesh,
        placement.rules_from_config(config, mesh),
    )
    loss_fn = make_loss(config.mode, model, block.head_only)
    update = placement.jit_update(make_update(loss_fn, optimizer, schedule), shardings, mesh)
    cadence = loop.Cadence.of(block)
    step = make_step(update, data, block.batch_size, config.seed, mesh)
    run = functools.partial(
        loop.run,
        workdir,
        state,
        cadence=cadence,
        rows_per_step=block.batch_size,
        describe=lambda step, logged: (
            f"{config.mode} step {step}/{cadence.num_steps}  loss {logged['loss']:.4f}  "
            f"accuracy {logged['accuracy']:.3f}"
        ),
        meta={"kind": config.mode},
        halt_after=halt_after,
    )
    if not every:
        return run(step_fn=step)
    summary = validation.summary()
    if not summary["problems_with_pairs"]:
        logging.warning(
            "no held-out problem has both right and wrong solutions (%s): the validation AUROC is "
            "undefined and the last step is kept",
            summary,
        )
    score = lambda params: selection.validation_auroc(model, params, validation)  # noqa: E731
    with selection.Selector(workdir, cadence, every, score, summary) as selector:
        return run(step_fn=selector.wrap(step), on_resume=selector.resume)
