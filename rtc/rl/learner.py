"""One RL step as pure functions: rollout -> experience (advantages, old and reference log-probs) -> mu updates.

Train state (a dict, like SFT's): `params = {"policy": ..., "critic": ...}` (the critic only for PPO),
`ref_params` (the frozen reference policy), `opt_state`, `step`, `rng`. GRPO (Shao et al. 2024) takes
its baseline from the group; PPO (Schulman et al. 2017; Ouyang et al. 2022) from a learned critic, a
second network of the policy's shape with a scalar head, trained jointly through one optimizer.
"""

import dataclasses
import jax
import jax.numpy as jnp
import optax

from rtc.errors import ConfigError
from rtc.rl import advantages as adv_lib
from rtc.rl import losses
from rtc.rl.rollout import last_token_rewards
from rtc.train import state as state_lib

ALGORITHMS = ("grpo", "ppo")


@dataclasses.dataclass(frozen=True)
class RLConfig:
    """Static settings of the RL update (hashable: a jit static argument)."""

    algorithm: str = "grpo"
    group_size: int = 8
    advantage: str = "grpo"  # grpo | dr_grpo | rloo | batch_std (GRPO); PPO uses GAE
    advantage_eps: float = 1e-4
    std_ddof: int = 1
    loss: losses.PolicyLossConfig = losses.PolicyLossConfig()
    temperature: float = 1.0
    mu: int = 1  # inner updates per rollout batch (GRPO's mu); old log-probs are kept across them
    mask_zero_variance: bool = True  # zero-variance groups carry no gradient: mask them out of the loss
    overlong_filter: bool = False  # DAPO overlong filtering: completions cut by the length cap get no loss
    logprob_parity: bool = False  # report max |sampler log p - learner log p| (a forward more when mu = 1)
    process_supervision: bool = False  # advantages from per-step rewards (DeepSeekMath sec. 4.1.3)
    max_new_tokens: int = 64  # Dr. GRPO's constant normaliser
    gamma: float = 1.0
    lam: float = 0.95
    value_clip: float | None = 0.2
    vf_coef: float = 0.5
    whiten_advantages: bool = True  # PPO: normalise GAE advantages over the batch

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"unknown rl algorithm {self.algorithm!r}; known: {', '.join(ALGORITHMS)}")
        adv_lib.get_advantage_fn(self.advantage)
        if self.mu < 1:
            raise ConfigError(f"rl.mu must be >= 1 (got {self.mu})")


def forward(model, params, tokens: jax.Array, positions: jax.Array, temperature: float):
    """`(logp f32[B, T], entropy f32[B, T], values f32[B, T] | None)` of each next token, T = L - 1."""
    logits, values, _ = model.apply(params, tokens[:, :-1], positions[:, :-1])
    logp, entropy = losses.token_logprobs(logits, tokens[:, 1:], temperature)
    return logp, entropy, values


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    return (x * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def make_experience(
    model,
    critic,
    state: dict,
    seqs: dict,
    rewards: jax.Array,
    cfg: RLConfig,
    step_rewards=None,
    truncated: jax.Array | None = None,
    sampler_logp: jax.Array | None = None,
) -> tuple[dict, dict]:
    """The batch the updates train on, and its statistics. `critic`: PPO's value network; None for GRPO.

    seqs: `rollout.sequences(...)`; rewards: f32[B] with B = P * G; step_rewards: optional
    `(f32[B, T], bool[B, T])`, each step's reward at its last target index (process supervision);
    truncated: optional bool[B], completions cut by the length cap (masked with `cfg.overlong_filter`);
    sampler_logp: optional f32[B, T], the sampler's log-prob of each target (`rollout.on_targets`),
    compared with the learner's recomputed ones with `cfg.logprob_parity`.
    """
    mask = loss_mask = seqs["mask"]  # f32[B, T]: completion tokens; the loss may skip some groups
    b = mask.shape[0]
    exp = dict(seqs)
    stats = {}
    parity = cfg.logprob_parity and sampler_logp is not None
    # with one update the old policy is the current one: its log-probs come with the loss
    if cfg.mu > 1 or parity:
        old_logp, _, _ = forward(
            model, state["params"]["policy"], seqs["tokens"], seqs["positions"], cfg.temperature
        )
        exp["old_logp"] = jax.lax.stop_gradient(old_logp)
        if parity:  # the on-policy assumption, measured: 0 up to float error when sampler and learner agree
            stats["logprob_parity_max"] = jnp.max(jnp.abs(old_logp - sampler_logp) * mask)
    if cfg.loss.kl_coef > 0:
        ref_logp, _, _ = forward(
            model, state["ref_params"], seqs["tokens"], seqs["positions"], cfg.temperature
        )
        exp["ref_logp"] = ref_logp
    grouped = rewards.reshape(b // cfg.group_size, cfg.group_size)
    zero_variance = adv_lib.zero_variance_groups(grouped)  # [P]
    stats.update(zero_variance_fraction=zero_variance.mean(), informative_fraction=1.0 - zero_variance.mean())
    if critic is None:  # GRPO: the baseline is the group's
        if cfg.process_supervision:
            if step_rewards is None:
                raise ConfigError("rl.process_supervision needs per-step rewards (a PRM)")
            shape = (b // cfg.group_size, cfg.group_size, mask.shape[1])
            advantages = adv_lib.process_advantages(
                step_rewards[0].reshape(shape), step_rewards[1].reshape(shape), mask.reshape(shape) > 0
            ).reshape(mask.shape)
        else:
            per_seq = adv_lib.get_advantage_fn(cfg.advantage)(grouped, cfg.advantage_eps, cfg.std_ddof)
            advantages = per_seq.reshape(b)[:, None] * mask
        if cfg.mask_zero_variance and not cfg.process_supervision:
            loss_mask = mask * jnp.repeat(~zero_variance, cfg.group_size)[:, None]
    else:
        _, _, values = forward(critic, state["params"]["critic"], seqs["tokens"], seqs["positions"], 1.0)
        values = jax.lax.stop_gradient(values)
        advantages, returns = adv_lib.gae(
            last_token_rewards(rewards, mask), values, mask > 0, cfg.gamma, cfg.lam
        )
        if cfg.whiten_advantages:
            mean = _masked_mean(advantages, mask)
            std = jnp.sqrt(_masked_mean((advantages - mean) ** 2, mask))
            advantages = (advantages - mean) / (std + 1e-8) * mask
        exp.update(old_values=values, returns=returns)
        stats["value_mean"] = _masked_mean(values, mask)
    if truncated is not None:
        stats["truncated_fraction"] = truncated.mean()
        if cfg.overlong_filter:
            loss_mask = loss_mask * ~truncated[:, None]
    exp.update(advantages=advantages, loss_mask=loss_mask)
    stats["advantage_abs_mean"] = _masked_mean(jnp.abs(advantages), mask)
    return exp, stats


def rl_loss(params: dict, exp: dict, model, critic, cfg: RLConfig) -> tuple[jax.Array, dict]:
    """The policy loss (plus `vf_coef` times the clipped value loss for PPO) on one batch of experience."""
    logp, entropy, _ = forward(model, params["policy"], exp["tokens"], exp["positions"], cfg.temperature)
    loss, metrics = losses.policy_loss(
        logp,
        exp["old_logp"]
        if "old_logp" in exp
        else jax.lax.stop_gradient(logp),  # mu = 1: ratio 1, same gradient
        exp["advantages"],
        exp["loss_mask"],
        cfg.loss,
        exp.get("ref_logp"),
        cfg.max_new_tokens,
    )
    metrics["entropy"] = _masked_mean(entropy, exp["mask"])
    if critic is not None:  # PPO
        _, _, values = forward(critic, params["critic"], exp["tokens"], exp["positions"], 1.0)
        v_loss, v_clip = losses.value_loss(
            values, exp["old_values"], exp["returns"], exp["loss_mask"], cfg.value_clip
        )
        metrics.update(value_loss=v_loss, value_clip_fraction=v_clip)
        loss = loss + cfg.vf_coef * v_loss
    metrics["loss"] = loss
    return loss, metrics


def make_update(model, critic, cfg: RLConfig, optimizer: optax.GradientTransformation, schedule=None):
    """`update(state, experience) -> (state, metrics)`: the shared update step (`rtc.train.state`) on
    `rl_loss`, making `cfg.mu` optimizer updates on one batch of experience."""
    return state_lib.make_update(
        lambda params, exp, rng: rl_loss(params, exp, model, critic, cfg), optimizer, schedule, cfg.mu
    )


def rollout_stats(lengths: jax.Array, thinking: jax.Array, rewards: jax.Array) -> dict:
    """Statistics of a rollout batch: reward mean/std, completion and thinking lengths in tokens."""
    return {
        "reward_mean": rewards.mean(),
        "reward_std": rewards.std(),
        "completion_length": lengths.astype(jnp.float32).mean(),
        "thinking_length": thinking.astype(jnp.float32).mean(),
    }


def init_state(policy_params, optimizer, rng: jax.Array, critic_params=None) -> dict:
    """The RL train state: `params = {"policy", "critic" (PPO only)}`, and a frozen copy of the initial
    policy as the reference (`ref_params`)."""
    params = {"policy": policy_params}
    if critic_params is not None:
        params["critic"] = critic_params
    return state_lib.init_train_state(
        params, optimizer, rng, ref_params=jax.tree.map(jnp.copy, policy_params)
    )


def split_rng(state: dict) -> tuple[dict, jax.Array]:
    """The state with its rng advanced, and a key for this step's sampling."""
    rng, key = jax.random.split(jax.random.wrap_key_data(state["rng"]))
    return {**state, "rng": jax.random.key_data(rng)}, key
