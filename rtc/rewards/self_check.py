"""The policy as its own verifier: a solution scores the probability of its least likely written token.

Sampled at temperature 1, a slip (`16*9=154`) is usually a token the policy itself finds unlikely: read
back teacher-forced, the policy would have written `144`. The lowest token probability of the completion
is then a generative check that needs no training and no second model: the policy recomputes every step
and the score says how far the written chain strays from what it would write. It is the trace-level
"lowest token confidence" of Fu et al. 2025 ("Deep Think with Confidence") with the token's own
probability in place of the top-k mean, and the baseline a trained verifier has to beat.
"""

import jax
import jax.numpy as jnp
import numpy as np

from rtc.errors import ConfigError
from rtc.rewards.reward_model import positions_of


def token_logprobs(model, params, tokens: jax.Array) -> jax.Array:
    """f32[B, T]: log p(tokens[:, t] | tokens[:, :t]) under `model`, teacher-forced; 0 at t = 0."""
    logits, _, _ = model.apply(params, tokens, positions_of(tokens))  # [B, T, V]
    logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
    written = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]  # [B, T-1]
    return jnp.pad(written, ((0, 0), (1, 0)))


@jax.jit
def _min_logprob(logp: jax.Array, completion_mask: jax.Array) -> jax.Array:
    return jnp.min(jnp.where(completion_mask, logp, 0.0), axis=1)


@jax.jit
def _sum_logprob(logp: jax.Array, completion_mask: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(completion_mask, logp, 0.0), axis=1)


_token_logprobs = jax.jit(token_logprobs, static_argnames="model")
REDUCTIONS = {"min": _min_logprob, "sum": _sum_logprob}


def self_check_scores(
    model, params, tokens: np.ndarray, completion_mask: np.ndarray, batch_size: int, reduce: str = "min"
):
    """f32[M]: exp(min over completion tokens of log p), the policy's probability of its least likely
    written token, for `tokens: i32[M, T]` with `completion_mask: bool[M, T]`, in fixed-size batches.

    `reduce="sum"`: exp(sum of log p), the model's probability of the whole completion: a checker's score
    (`checker_scores`)."""
    out = []
    for start in range(0, len(tokens), batch_size):
        chunk = np.zeros((batch_size, tokens.shape[1]), np.int32)
        mask = np.zeros((batch_size, tokens.shape[1]), bool)
        real = len(tokens[start : start + batch_size])
        chunk[:real] = tokens[start : start + batch_size]
        mask[:real] = completion_mask[start : start + batch_size]
        logp = REDUCTIONS[reduce](_token_logprobs(model, params, jnp.asarray(chunk)), jnp.asarray(mask))
        out.append(np.exp(np.asarray(logp))[:real])
    return np.concatenate(out)


def checker_scores(model, params, tokens: np.ndarray, completion_mask: np.ndarray, batch_size: int):
    """f32[M]: a checker's probability of each completion, teacher-forced (the product of its step
    readings in the search, `verifier_kind="checker"`).

    A checker is the policy's network trained further on the task (experiments/configs/checker.py): it
    computes each step better than the policy, so a slip the policy believed is a token it finds unlikely.
    The whole completion's probability ranks one problem's solutions better than its least likely token
    does: several slips weigh more than one, and it does not tie at the smallest probabilities.
    """
    return self_check_scores(model, params, tokens, completion_mask, batch_size, reduce="sum")


def checker_step_rewards(
    model, params, tokens: jax.Array, completion_mask: jax.Array, delimiter_id: int, reduce: str = "sum"
) -> tuple[jax.Array, jax.Array]:
    """A checker's probability of each step, as a dense reward for process-supervised GRPO.

    tokens: i32[B, T] (`[bos] + prompt + completion`, right-padded); completion_mask: bool[B, T]. Returns
    `(step_rewards: f32[B, T], step_end: bool[B, T])`: at each step's delimiter, exp of the sum of the
    checker's log-probs of the step's tokens (those after the previous delimiter, up to and including this
    one), 0 elsewhere: the search's step reading with `verifier_kind="checker"`, and the same layout as a
    PRM's `prm_step_rewards` (DeepSeekMath sec. 4.1.3 reads the verifier at the end of each step). Tokens
    after the last delimiter (the answer line) get no step reward. Jittable with `model` static.

    `reduce="mean"`: exp of the mean of the step's log-probs instead (the geometric mean of its token
    probabilities), so a step's reward does not fall with its length as a product of probabilities does.
    """
    if reduce not in ("sum", "mean"):
        raise ConfigError(
            f"checker step rewards reduce a step's log-probs by 'sum' or 'mean', got {reduce!r}"
        )
    completion_mask = completion_mask.astype(bool)
    step_end = (tokens == delimiter_id) & completion_mask  # [B, T]
    logp = jnp.where(completion_mask, token_logprobs(model, params, tokens), 0.0)  # [B, T]
    t = jnp.arange(tokens.shape[1])[None, :]
    last_end = jax.lax.cummax(jnp.where(step_end, t, -1), axis=1)  # [B, T]: latest delimiter at or before t
    before = jnp.pad(last_end[:, :-1], ((0, 0), (1, 0)), constant_values=-1)  # strictly before t

    def since_last_step(x):  # [B, T]: the sum of x over the step ending at t (from the last delimiter)
        running = jnp.cumsum(x, axis=1)
        start = jnp.where(before >= 0, jnp.take_along_axis(running, jnp.maximum(before, 0), axis=1), 0.0)
        return running - start

    step_logp = since_last_step(logp)  # [B, T]
    if reduce == "mean":
        step_logp = step_logp / jnp.maximum(since_last_step(completion_mask.astype(jnp.float32)), 1.0)
    return jnp.where(step_end, jnp.exp(step_logp), 0.0), step_end
