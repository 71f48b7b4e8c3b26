"""The SFT cold-start loss: masked next-token cross-entropy on the reasoning chain."""

import jax
import jax.numpy as jnp
import optax


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
