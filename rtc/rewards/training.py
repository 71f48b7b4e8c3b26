"""Training outcome and process reward models (ORM, PRM) with the shared loop, and loading a trained one.

Both are the policy's network with the scalar head switched on, initialised from the policy and trained
as a separate model: the ORM with binary cross-entropy on the verifier's verdict at the last token
(Cobbe et al. 2021), the PRM on per-step labels at every step delimiter (Lightman et al. 2023).
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath

from rtc.checkpoint import Checkpointer
from rtc.model import Model, ModelConfig
from rtc.parallel import config_mesh, placement
from rtc.rewards import reward_model as rm
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
    """`(model, params)` of a finished ORM/PRM run in `workdir` (default: its latest checkpoint).

    The run's `reward_model.json` also names `kind`, `delimiter_id` and `aggregation`
    (`load_description(workdir)`).
    """
    description = load_description(workdir)
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in description["model"].items()}
    with Checkpointer(epath.Path(workdir) / "checkpoints") as checkpointer:
        return Model(ModelConfig(**fields)), checkpointer.restore_params(step)


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
    config, block, workdir: epath.PathLike, model: Model, policy_params, data: dict, *, halt_after=None
) -> dict:
    """Trains (or resumes) the reward model (`config.mode`: orm or prm) for `block.num_steps` steps from the
    policy's params; returns the train state."""
    mesh = placement.mesh_from_config(config)
    config_mesh.batch_size_per_chip(block.batch_size, mesh)  # the batch must split evenly
    schedule, optimizer = rm_optimizer(block)
    rng = jax.random.key(config.seed)
    params = rm.init_from_policy(model, policy_params, jax.random.fold_in(rng, 0))
    state, shardings = placement.init_sharded(
        lambda params, rng: init_train_state(params, optimizer, jax.random.fold_in(rng, 1)),
        (params, rng),
        mesh,
        placement.rules_from_config(config, mesh),
    )
    loss_fn = make_loss(config.mode, model, block.head_only)
    update = placement.jit_update(make_update(loss_fn, optimizer, schedule), shardings, mesh)
    cadence = loop.Cadence.of(block)
    return loop.run(
        workdir,
        state,
        make_step(update, data, block.batch_size, config.seed, mesh),
        cadence,
        rows_per_step=block.batch_size,
        describe=lambda step, logged: (
            f"{config.mode} step {step}/{cadence.num_steps}  loss {logged['loss']:.4f}  "
            f"accuracy {logged['accuracy']:.3f}"
        ),
        meta={"kind": config.mode},
        halt_after=halt_after,
    )
