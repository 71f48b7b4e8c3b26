"""The jitted RL programs: a fused sample -> reward -> advantage -> update step for on-device rewards, and
a rollout plus a learn step around host-side verifiers.

Both paths share `learner.make_experience` and the shared update step (`learner.make_update`), so they
train identically; the fused one keeps everything in one XLA program (`tests/test_rl.py` checks they agree).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp

from rtc.rewards import device as device_rewards
from rtc.rl import learner
from rtc.rl.rollout import sequences
from rtc.sampling import sampler


@dataclasses.dataclass(frozen=True)
class DeviceReward:
    """What the on-device verifier needs (static): lookup tables as tuples, special ids, weights."""

    digit: tuple[int, ...]
    sign: tuple[int, ...]
    ids: device_rewards.SpecialIds
    weights: tuple[tuple[str, float], ...]
    max_tokens: int
    overlong_cache: int

    @classmethod
    def of(cls, tokenizer, weights, max_tokens: int, overlong_cache: int) -> "DeviceReward":
        tables = device_rewards.answer_tables(tokenizer)
        return cls(
            tuple(int(x) for x in tables.digit),
            tuple(int(x) for x in tables.sign),
            device_rewards.SpecialIds.of(tokenizer),
            tuple(weights),
            max_tokens,
            overlong_cache,
        )

    def __call__(self, tokens, lengths, gold):
        tables = device_rewards.AnswerTables(
            jnp.array(self.digit, jnp.int32), jnp.array(self.sign, jnp.int32)
        )
        return device_rewards.rewards(
            tokens, lengths, gold, tables, self.ids, self.weights, self.max_tokens, self.overlong_cache
        )


@dataclasses.dataclass(frozen=True)
class Learner:
    """The static pieces of an RL update: the policy (and PPO's critic), settings, optimizer, schedule."""

    model: object
    critic: object | None
    cfg: learner.RLConfig
    optimizer: object
    schedule: object | None
    pad_id: int


def _learn_from_rollout(parts: Learner, state, prompts, prompt_lengths, out, rewards, step_rewards=None):
    """`step_rewards`: optional `(fn, params)` with `fn(params, tokens i32[B, L], completion bool[B, L]) ->
    (f32[B, L], bool[B, L])`, each step's reward at its last token (a PRM's `prm_step_rewards`)."""
    seqs = sequences(prompts, prompt_lengths, out.tokens, out.lengths, parts.pad_id)
    per_step = None
    if step_rewards is not None:
        fn, params = step_rewards
        completion = jnp.pad(seqs["mask"], ((0, 0), (1, 0))) > 0  # token j is target j - 1
        values, ends = fn(params, seqs["tokens"], completion)
        per_step = (values[:, 1:], ends[:, 1:])  # on target indices, like the mask
    exp, stats = learner.make_experience(parts.model, parts.critic, state, seqs, rewards, parts.cfg, per_step)
    update = learner.make_update(parts.model, parts.critic, parts.cfg, parts.optimizer, parts.schedule)
    state, metrics = update(state, exp)
    return state, {**metrics, **stats, **learner.rollout_stats(out.lengths, out.thinking_tokens, rewards)}


def make_fused_step(parts: Learner, sampler_cfg, reward: DeviceReward, shardings):
    """`step(state, prompts i32[B, Pp], prompt_lengths i32[B], gold i32[B]) -> (state, metrics, rollout)`.

    Rows are already repeated G times per prompt. `shardings = (state, rows)`; rows split over `data`.
    """
    state_sharding, rows = shardings

    def step(state, prompts, prompt_lengths, gold):
        state, key = learner.split_rng(state)
        policy = state["params"]["policy"]
        out = sampler.sample_rows(
            parts.model, policy, prompts, prompt_lengths, key, sampler_cfg, None, jnp.float32, rows
        )
        rewards, per_fn = reward(out.tokens, out.lengths, gold)
        state, metrics = _learn_from_rollout(parts, state, prompts, prompt_lengths, out, rewards)
        metrics.update({f"reward/{name}": value.mean() for name, value in per_fn.items()})
        metrics.update({f"reward_std/{name}": value.std() for name, value in per_fn.items()})
        return state, metrics, out

    return jax.jit(step, donate_argnums=0, in_shardings=(state_sharding, rows, rows, rows))


def make_rollout(model, sampler_cfg, rows):
    """`rollout(params, prompts, prompt_lengths, key) -> SampleOutput` (the compiled sampler)."""
    cache_dtype = jnp.dtype(jnp.float32)
    return functools.partial(
        sampler.sample, model, cfg=sampler_cfg, stream=None, cache_dtype=cache_dtype, batch_sharding=rows
    )


def make_learn_step(parts: Learner, shardings, step_reward_fn=None):
    """`learn(state, prompts, prompt_lengths, rollout, rewards f32[B], step_params) -> (state, metrics)`
    after host rewards; `step_params` are `step_reward_fn`'s params (a PRM's; process supervision), else None."""
    state_sharding, rows = shardings

    def step(state, prompts, prompt_lengths, out, rewards, step_params):
        step_rewards = None if step_reward_fn is None else (step_reward_fn, step_params)
        return _learn_from_rollout(parts, state, prompts, prompt_lengths, out, rewards, step_rewards)

    return jax.jit(step, donate_argnums=0, in_shardings=(state_sharding, rows, rows, rows, rows, None))
