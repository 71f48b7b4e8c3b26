"""The train state pytree and the one jitted update step every trainer shares.

Train state = `{"params", "opt_state", "step": i32[], "rng": u32[2]}` (big_vision style: a dict), plus any
frozen entries a trainer keeps beside them (RL's reference policy, `ref_params`), carried unchanged.
`update(state, batch) -> (state, metrics)` differentiates a loss `loss_fn(params, batch, rng)`.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import optax


def init_train_state(params, optimizer: optax.GradientTransformation, rng: jax.Array, **frozen) -> dict:
    """The state before the first step; `frozen` entries (e.g. `ref_params`) are carried unchanged."""
    return {
        "params": params,
        **frozen,
        "opt_state": optimizer.init(params),
        "step": jnp.int32(0),
        "rng": jax.random.key_data(rng),
    }


def make_update(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    schedule: optax.Schedule | None = None,
    num_updates: int = 1,
) -> Callable:
    """`update(state, batch) -> (state, metrics)`; `loss_fn(params, batch, rng) -> (loss, metrics)`.

    `num_updates > 1` makes that many optimizer updates on the same batch (GRPO's mu inner iterations,
    Shao et al. 2024, Algorithm 1) in one `lax.scan`; the metrics are their means and the step advances by one.
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def gradient_step(params, opt_state, batch, rng):
        (_, metrics), grads = grad_fn(params, batch, rng)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, {**metrics, "grad_norm": optax.tree.norm(grads)}

    def update(state: dict, batch) -> tuple[dict, dict]:
        rng, step_rng = jax.random.split(jax.random.wrap_key_data(state["rng"]))
        if num_updates == 1:
            params, opt_state, metrics = gradient_step(state["params"], state["opt_state"], batch, step_rng)
        else:

            def body(carry, _):
                params, opt_state, metrics = gradient_step(*carry, batch, step_rng)
                return (params, opt_state), metrics

            (params, opt_state), metrics = jax.lax.scan(
                body, (state["params"], state["opt_state"]), length=num_updates
            )
            metrics = jax.tree.map(jnp.mean, metrics)
        if schedule is not None:
            metrics["learning_rate"] = schedule(state["step"])
        new_state = {
            **state,
            "params": params,
            "opt_state": opt_state,
            "step": state["step"] + 1,
            "rng": jax.random.key_data(rng),
        }
        return new_state, metrics

    return update
