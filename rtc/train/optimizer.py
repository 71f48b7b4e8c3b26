"""AdamW with linear warmup and cosine decay (Loshchilov & Hutter 2019), from optax."""

import jax
import optax


def learning_rate_schedule(
    peak: float, warmup_steps: int, total_steps: int, final_fraction: float = 0.1
) -> optax.Schedule:
    """Linear warmup from 0 to `peak`, then cosine decay to `final_fraction * peak` at `total_steps`."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak,
        warmup_steps=warmup_steps,
        decay_steps=max(total_steps, warmup_steps + 1),
        end_value=peak * final_fraction,
    )


def _matrices(params):
    return jax.tree.map(lambda p: p.ndim > 1, params)


def adamw(
    learning_rate: optax.Schedule, weight_decay: float, grad_clip: float, b1: float = 0.9, b2: float = 0.95
) -> optax.GradientTransformation:
    """Global-norm clipping then AdamW; weight decay applies to matrices only, not norm scales."""
    return optax.chain(
        optax.clip_by_global_norm(grad_clip),
        optax.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay, mask=_matrices),
    )


def from_block(block) -> tuple[optax.Schedule, optax.GradientTransformation]:
    """`(schedule, optimizer)` of a training block (`learning_rate`, `warmup_steps`, `num_steps`,
    `weight_decay`, `grad_clip`): AdamW with warmup and cosine decay."""
    schedule = learning_rate_schedule(block.learning_rate, block.warmup_steps, block.num_steps)
    return schedule, adamw(schedule, block.weight_decay, block.grad_clip)
