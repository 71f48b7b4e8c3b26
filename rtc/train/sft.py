"""The SFT cold start: masked next-token cross-entropy on reasoning chains, trained by the shared loop."""

import logging
import time
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from etils import epath

from rtc.data.tfds_builders import task_records
from rtc.errors import ConfigError
from rtc.model import Model
from rtc.parallel import config_mesh, placement
from rtc.train import loop
from rtc.train import optimizer as optimizer_lib
from rtc.train.sft_data import RowStream, assemble, encode_dataset, process_rows
from rtc.train.state import init_train_state, make_update


def sft_loss(params, batch: dict, model) -> tuple[jax.Array, dict]:
    """Mean negative log-likelihood of the completion tokens.

    batch: `tokens: i32[B, T+1]`, `loss_mask: f32[B, T+1]` (1 where the token is a target), and
    optionally `positions: i32[B, T+1]` (packed rows restart at 0 for each example).
    The mean is over all target tokens of the batch (token-level, as in standard SFT).
    """
    tokens = batch["tokens"]
    inputs, targets = tokens[:, :-1], tokens[:, 1:]  # [B, T]
    mask = batch["loss_mask"][:, 1:]  # [B, T]
    if "positions" in batch:
        positions = batch["positions"][:, :-1]
    else:
        positions = jnp.broadcast_to(jnp.arange(inputs.shape[1], dtype=jnp.int32), inputs.shape)
    logits, _, _ = model.apply(params, inputs, positions)  # [B, T, V]
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)  # [B, T]
    num_targets = jnp.maximum(mask.sum(), 1.0)
    loss = (nll * mask).sum() / num_targets
    token_accuracy = ((jnp.argmax(logits, -1) == targets) * mask).sum() / num_targets
    return loss, {"loss": loss, "token_accuracy": token_accuracy, "target_tokens": mask.sum()}


def make_step(model, update, data: dict, stream: RowStream, batch_size: int, pad_id: int, mesh) -> Callable:
    """`step(state, position) -> (state, device metrics, host metrics)` on the packed rows at `position`."""
    local_rows = process_rows(batch_size, jax.process_index(), jax.process_count())
    row_tokens = float(batch_size * (stream.row_len - 1))

    def step(state, position):
        rows = stream.rows(position, batch_size)[local_rows]
        batch = config_mesh.shard_batch(assemble(data, rows, pad_id), mesh)
        state, metrics = update(state, batch)
        return state, metrics, {"row_tokens": row_tokens}

    return step


def describe(step: int, logged: dict, num_steps: int) -> str:
    speed = logged.get("row_tokens_per_second")
    return f"step {step}/{num_steps}  loss {logged['loss']:.4f}  token acc {logged['token_accuracy']:.3f}" + (
        f"  {speed:,.0f} tok/s" if speed is not None else ""
    )


def train(
    config, block, workdir: epath.PathLike, tokenizer, model: Model, params=None, *, halt_after=None
) -> dict:
    """Runs (or resumes) SFT for `block.num_steps` steps (`block`: the run's SFT settings, `config.sft`);
    returns the final train state.

    `params`: the initial parameters (a pretrained checkpoint's); None: a random init. A resumed run
    restores its own checkpoint either way. A non-finite loss or grad norm stops the run with
    `NonFiniteError` before anything is saved.
    """
    if block.seq_len > model.max_seq_len:
        raise ConfigError(
            f"sft.seq_len={block.seq_len} exceeds the model's context of {model.max_seq_len} tokens"
        )
    records = task_records(config, "train", workdir)
    started = time.time()
    data = encode_dataset(tokenizer, records, block.seq_len)
    logging.info("encoded %d training examples in %.1fs", len(records), time.time() - started)
    stream = RowStream(data["lengths"], block.seq_len + 1, block.pack, config.seed)
    mesh = placement.mesh_from_config(config)
    config_mesh.batch_size_per_chip(block.batch_size, mesh)  # the batch must split evenly

    schedule, optimizer = optimizer_lib.from_block(block)
    rng = jax.random.key(config.seed)
    if params is None:

        def init(rng):
            params = model.init_params(jax.random.fold_in(rng, 0))
            return init_train_state(params, optimizer, jax.random.fold_in(rng, 1))

        args = (rng,)
    else:

        def init(params, rng):
            return init_train_state(params, optimizer, jax.random.fold_in(rng, 1))

        args = (params, rng)
    state, shardings = placement.init_sharded(init, args, mesh, placement.rules_from_config(config, mesh))
    loss_fn = lambda params, batch, rng: sft_loss(params, batch, model)
    update = placement.jit_update(make_update(loss_fn, optimizer, schedule), shardings, mesh)
    cadence = loop.Cadence.of(block)
    return loop.run(
        workdir,
        state,
        make_step(model, update, data, stream, block.batch_size, tokenizer.pad_id, mesh),
        cadence,
        rows_per_step=block.batch_size,
        describe=lambda step, logged: describe(step, logged, cadence.num_steps),
        meta={"task": config.task.name},
        rates=("row_tokens", "target_tokens"),
        halt_after=halt_after,
    )
