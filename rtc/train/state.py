"""The train state pytree and the one jitted update step every trainer shares.

Train state = `{"params", "opt_state", "step": i32[], "rng": u32[2]}` (big_vision style: a dict).
`update(state, batch) -> (state, metrics)` differentiates a loss `loss_fn(params, batch, rng)`.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import optax


def init_train_state(params, optimizer: optax.GradientTransformation, rng: jax.Array) -> dict:
    return {
        "params": params,
        "opt_state": optimizer.init(params),
        "step": jnp.int32(0),
        "rng": jax.random.key_data(rng),
    }


def make_update(
    loss_fn: Callable, optimizer: optax.GradientTransformation, schedule: optax.Schedule | None = None
) -> Callable:
    """`update(state, batch) -> (state, metrics)`; `loss_fn(params, batch, rng) -> (loss, metrics)`."""

    def update(state: dict, batch) -> tuple[dict, dict]:
        rng, step_rng = jax.random.split(jax.random.wrap_key_data(state["rng"]))
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (_, metrics), grads = grad_fn(state["params"], batch, step_rng)
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        metrics = {**metrics, "grad_norm": optax.tree.norm(grads)}
        if schedule is not None:
            metrics["learning_rate"] = schedule(state["step"])
        new_state = {
            "params": params,
            "opt_state": opt_state,
            "step": state["step"] + 1,
            "rng": jax.random.key_data(rng),
        }
        return new_state, metrics

    return update
