"""Outcome and process reward models: the scalar head of rtc's transformer, read at chosen tokens.

Which model: a separate model (`scalar_head=True`), by default of the policy's architecture and initialised
from the SFT policy's weights plus a zero head, not a head on the policy's own trunk. The policy keeps moving
under GRPO; a reward read from its own trunk would move with it (a non-stationary reward that the
policy can push up by changing its features, not its answers), so the reward model is trained once
and frozen, as the verifiers of Cobbe et al. (2021) and the ORM/PRM of Lightman et al. (2023) are
separate models fine-tuned from the generator's base. The cost is a second forward pass per scored
batch. A smaller or larger reward model is another preset (`rm.preset`), initialised from an SFT run of
that preset instead of the policy; it still scores the policy's solutions.

Sequence layout (training and scoring alike): `[bos] + prompt + completion`, right-padded, positions
`0..T-1`, so a head output at token t has seen tokens `0..t` and nothing after.
- ORM (Cobbe et al. 2021; Lightman et al. 2023): the head at the last completion token, trained
  with binary cross-entropy on the verifier's label of the whole solution.
- PRM (Lightman et al. 2023): the head at every step delimiter (the newline ending each reasoning
  step) of the completion, trained with binary cross-entropy on per-step labels.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rtc.errors import ConfigError

HEAD_PARAMS = ("value_head", "value_bias")


def with_head(model_config):
    """The policy's `ModelConfig` with the scalar head switched on."""
    return dataclasses.replace(model_config, scalar_head=True)


def init_from_policy(rm_model, policy_params: dict, rng: jax.Array) -> dict:
    """Reward-model params: the trunk `policy_params` copied (the policy's, or an SFT run's of the reward
    model's own preset), plus a fresh (zero) `value_head`, `value_bias`."""
    fresh = rm_model.init_params(rng)
    trunk = {k: v for k, v in fresh.items() if k not in HEAD_PARAMS}
    same = jax.tree.structure(trunk) == jax.tree.structure(policy_params) and all(
        jax.tree.leaves(jax.tree.map(lambda a, b: np.shape(a) == np.shape(b), trunk, policy_params))
    )
    if not same:
        raise ConfigError(
            "the initial parameters do not match the reward model's trunk: its config (rm.preset, else "
            "config.model) must name the policy's architecture, or that of verifier_workdir"
        )
    # copied: the update donates its state, and the policy stays in use for sampling
    return {**jax.tree.map(jnp.copy, policy_params), **{k: fresh[k] for k in HEAD_PARAMS}}


def positions_of(tokens: jax.Array) -> jax.Array:
    """i32[B, T]: `0..T-1` in every row (one unpacked sequence a row)."""
    return jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)


def head_logits(model, params, tokens: jax.Array, positions: jax.Array | None = None) -> jax.Array:
    """f32[B, T]: the scalar head (a logit) at every token of `tokens: i32[B, T]`."""
    positions = positions_of(tokens) if positions is None else positions
    _, values, _ = model.apply(params, tokens, positions)
    if values is None:
        raise ConfigError("the reward model has no scalar head: build it with scalar_head=True")
    return values


def last_token_index(completion_mask: jax.Array) -> jax.Array:
    """i32[B]: the index of the last True of each row of `completion_mask: bool[B, T]` (0 if none)."""
    t = completion_mask.shape[1]
    return jnp.max(jnp.where(completion_mask, jnp.arange(t)[None, :], 0), axis=1)


def step_end_mask(tokens: jax.Array, completion_mask: jax.Array, delimiter_id: int) -> jax.Array:
    """bool[B, T]: the step delimiters of the completion (the prompt's own delimiter is not a step)."""
    return (tokens == delimiter_id) & completion_mask.astype(bool)


def orm_logits(model, params, tokens: jax.Array, completion_mask: jax.Array) -> jax.Array:
    """f32[B]: the ORM logit, the head at the last completion token (Cobbe et al. 2021)."""
    values = head_logits(model, params, tokens)  # f32[B, T]
    index = last_token_index(completion_mask)
    return jnp.take_along_axis(values, index[:, None], axis=1)[:, 0]


def prm_step_rewards(
    model,
    rm_params,
    tokens: jax.Array,
    completion_mask: jax.Array,
    delimiter_id: int,
    positions: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The PRM's probability that each step is correct, as a dense reward for process-supervised GRPO.

    tokens: i32[B, T] laid out as in training (`[bos] + prompt + completion`, right-padded; pass
    `positions` for another layout); completion_mask: bool[B, T]. Returns `(step_rewards: f32[B, T],
    step_end: bool[B, T])`: `sigmoid(head)` at each step-end token (a delimiter inside the
    completion) and 0 elsewhere (Lightman et al. 2023 read the PRM at the last token of each step).
    A completion with no delimiter gets no step reward. Jittable with `model` and `delimiter_id` static.
    With a target-indexed mask (index t scores token t + 1, as `rtc.rl.rollout.sequences`' `mask`),
    pass the token mask `pad(mask, ((0, 0), (1, 0))) > 0` and take `[:, 1:]` of both outputs.
    """
    step_end = step_end_mask(tokens, completion_mask, delimiter_id)
    probs = jax.nn.sigmoid(head_logits(model, rm_params, tokens, positions))
    return jnp.where(step_end, probs, 0.0), step_end


def _bce(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Elementwise `-[y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))]`; soft labels allowed."""
    return optax.sigmoid_binary_cross_entropy(logits, labels)


def orm_loss(params, batch: dict, model) -> tuple[jax.Array, dict]:
    """Mean binary cross-entropy of the ORM logit against the verifier's label (Cobbe et al. 2021).

    batch: `tokens: i32[B, T]`, `completion_mask: bool[B, T]`, `label: f32[B]` (1 = correct answer).
    """
    logits = orm_logits(model, params, batch["tokens"], batch["completion_mask"])  # f32[B]
    labels = batch["label"]
    loss = jnp.mean(_bce(logits, labels))
    accuracy = jnp.mean((logits > 0) == (labels > 0.5))
    return loss, {"loss": loss, "accuracy": accuracy, "positive_rate": jnp.mean(labels)}


def prm_loss(params, batch: dict, model) -> tuple[jax.Array, dict]:
    """Binary cross-entropy at the labelled step ends, averaged over steps (Lightman et al. 2023).

    batch: `tokens: i32[B, T]`, `step_labels: f32[B, T]` (a label, hard or soft, at each step end)
    and `step_mask: f32[B, T]` (1 at the step ends that carry a label, 0 elsewhere).
    """
    logits = head_logits(model, params, batch["tokens"])  # f32[B, T]
    mask = batch["step_mask"]
    labels = batch["step_labels"]
    num_steps = jnp.maximum(mask.sum(), 1.0)
    loss = (_bce(logits, labels) * mask).sum() / num_steps
    accuracy = (((logits > 0) == (labels > 0.5)) * mask).sum() / num_steps
    return loss, {"loss": loss, "accuracy": accuracy, "steps": mask.sum()}


# --- aggregating step scores into a solution score -------------------------------------------------
# Each takes `probs: f32[B, T]` (step probabilities, e.g. `prm_step_rewards`' first output) and
# `step_end: bool[B, T]`, and returns f32[B]. A solution with no step scores 0, below any solution
# with a step, whatever the aggregation.


def aggregate_last(probs: jax.Array, step_end: jax.Array) -> jax.Array:
    """The last step's probability: Snell et al. (2024) find it the best PRM aggregation for
    best-of-N and search (their PRM is trained on Monte-Carlo labels, so it predicts the outcome)."""
    index = last_token_index(step_end)
    last = jnp.take_along_axis(probs, index[:, None], axis=1)[:, 0]
    return jnp.where(step_end.any(axis=1), last, 0.0)


def aggregate_min(probs: jax.Array, step_end: jax.Array) -> jax.Array:
    """The weakest step: Math-Shepherd (Wang et al. 2024) scores a solution by its minimum."""
    smallest = jnp.min(jnp.where(step_end, probs, jnp.inf), axis=1)
    return jnp.where(step_end.any(axis=1), smallest, 0.0)


def aggregate_product(probs: jax.Array, step_end: jax.Array) -> jax.Array:
    """The probability that every step is correct, `prod_i p_i` (Lightman et al. 2023)."""
    log_prob = jnp.sum(jnp.where(step_end, jnp.log(jnp.maximum(probs, 1e-30)), 0.0), axis=1)
    return jnp.where(step_end.any(axis=1), jnp.exp(log_prob), 0.0)


def aggregate_mean(probs: jax.Array, step_end: jax.Array) -> jax.Array:
    """The mean step probability: a length-neutral baseline (product penalises long solutions, and
    min and last read one step each); it is not the choice of any of the papers above."""
    count = step_end.sum(axis=1)
    total = jnp.sum(jnp.where(step_end, probs, 0.0), axis=1)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), 0.0)


AGGREGATIONS = {
    "last": aggregate_last,
    "min": aggregate_min,
    "product": aggregate_product,
    "mean": aggregate_mean,
}


def aggregate(name: str, probs: jax.Array, step_end: jax.Array) -> jax.Array:
    """f32[B]: the aggregation `name` (last / min / product / mean) of the step probabilities."""
    if name not in AGGREGATIONS:
        raise ConfigError(f"unknown PRM aggregation {name!r}; known: {sorted(AGGREGATIONS)}")
    return AGGREGATIONS[name](probs, step_end)
