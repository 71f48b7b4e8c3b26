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
from rtc.rl import dynamic_sampling, learner
from rtc.rl.rollout import on_targets, sequences
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
    stop_ids: tuple[int, ...] = ()  # the sampler's: a full completion without one was truncated


def _learn_from_rollout(parts: Learner, state, prompts, prompt_lengths, out, rewards, step_rewards=None):
    """`step_rewards`: optional `(fn, params)` with `fn(params, tokens i32[B, L], completion bool[B, L]) ->
    (f32[B, L], bool[B, L])`, each step's reward at its last token (a PRM's `prm_step_rewards`)."""
    seqs = sequences(prompts, prompt_lengths, out.tokens, out.lengths, parts.pad_id)
    cut = dynamic_sampling.truncated(out.tokens, out.lengths, parts.stop_ids) if parts.stop_ids else None
    sampler_logp = on_targets(out.logprobs, prompt_lengths, seqs["mask"].shape[1])
    per_step = None
    if step_rewards is not None:
        fn, params = step_rewards
        completion = jnp.pad(seqs["mask"], ((0, 0), (1, 0))) > 0  # token j is target j - 1
        values, ends = fn(params, seqs["tokens"], completion)
        per_step = (values[:, 1:], ends[:, 1:])  # on target indices, like the mask
    exp, stats = learner.make_experience(
        parts.model, parts.critic, state, seqs, rewards, parts.cfg, per_step, cut, sampler_logp
    )
    update = learner.make_update(parts.model, parts.critic, parts.cfg, parts.optimizer, parts.schedule)
    state, metrics = update(state, exp)
    return state, {**metrics, **stats, **learner.rollout_stats(out.lengths, out.thinking_tokens, rewards)}


def draw_metrics(out, rewards, num_trained_groups: int, group_size: int) -> dict:
    """What a draw cost: the groups and tokens sampled (all rows, trained or not), and how many groups had
    signal, as counts per step (`draw_*`)."""
    drawn = rewards.shape[0] // group_size
    informative = dynamic_sampling.informative_groups(rewards.reshape(drawn, group_size))
    return {
        "draw_groups_per_trained": jnp.float32(drawn / num_trained_groups),
        "draw_informative_fraction": informative.mean(),
        "draw_reward_mean": rewards.mean(),
        "sampled_tokens": out.lengths.sum().astype(jnp.float32),
    }


def select_rollout(prompts, prompt_lengths, out, rewards, extra, num_groups: int, group_size: int):
    """The `num_groups` groups of a draw to train on (`dynamic_sampling.select_groups`), every `[rows, ...]`
    array gathered: `(prompts, prompt_lengths, out, rewards, extra)`."""
    idx, _ = dynamic_sampling.select_groups(rewards.reshape(-1, group_size), num_groups)
    rows = dynamic_sampling.group_rows(idx, group_size)
    return dynamic_sampling.take_rows((prompts, prompt_lengths, out, rewards, extra), rows)


def make_fused_step(
    parts: Learner, sampler_cfg, reward: DeviceReward, shardings, num_groups: int | None = None
):
    """`step(state, prompts i32[B, Pp], prompt_lengths i32[B], gold i32[B]) -> (state, metrics, rollout)`.

    Rows are already repeated G times per prompt. `shardings = (state, rows)`; rows split over `data`.
    With `num_groups` P below the B / G groups drawn, the update trains on P of them, informative first
    (DAPO's dynamic sampling, one program); the rollout returned is the whole draw.
    """
    state_sharding, rows = shardings
    g = parts.cfg.group_size

    def step(state, prompts, prompt_lengths, gold):
        state, key = learner.split_rng(state)
        policy = state["params"]["policy"]
        out = sampler.sample_rows(
            parts.model, policy, prompts, prompt_lengths, key, sampler_cfg, None, jnp.float32, rows, group=g
        )
        rewards, per_fn = reward(out.tokens, out.lengths, gold)
        p = num_groups or rewards.shape[0] // g
        drawn, drawn_metrics = out, draw_metrics(out, rewards, p, g)
        if p < rewards.shape[0] // g:
            prompts, prompt_lengths, out, rewards, per_fn = select_rollout(
                prompts, prompt_lengths, out, rewards, per_fn, p, g
            )
        state, metrics = _learn_from_rollout(parts, state, prompts, prompt_lengths, out, rewards)
        metrics.update(drawn_metrics)
        metrics.update({f"reward/{name}": value.mean() for name, value in per_fn.items()})
        metrics.update({f"reward_std/{name}": value.std() for name, value in per_fn.items()})
        return state, metrics, drawn

    return jax.jit(step, donate_argnums=0, in_shardings=(state_sharding, rows, rows, rows))


def make_draw(model, sampler_cfg, reward: DeviceReward, rows, group: int = 1):
    """`draw(params, prompts, prompt_lengths, key, gold) -> (rollout, rewards f32[B], per-function rewards)`:
    one round of dynamic sampling with on-device rewards (sample and score in one program, no update).
    Rows come in runs of `group` samples of one prompt, prefilled once."""

    def draw(params, prompts, prompt_lengths, key, gold):
        out = sampler.sample_rows(
            model, params, prompts, prompt_lengths, key, sampler_cfg, None, jnp.float32, rows, group=group
        )
        return (out, *reward(out.tokens, out.lengths, gold))

    return jax.jit(draw)


def make_rollout(model, sampler_cfg, rows, group: int = 1):
    """`rollout(params, prompts, prompt_lengths, key) -> SampleOutput` (the compiled sampler); rows come in
    runs of `group` samples of one prompt, prefilled once."""
    cache_dtype = jnp.dtype(jnp.float32)
    return functools.partial(
        sampler.sample,
        model,
        cfg=sampler_cfg,
        stream=None,
        cache_dtype=cache_dtype,
        batch_sharding=rows,
        group=group,
    )


def make_learn_step(parts: Learner, shardings, step_reward_fn=None):
    """`learn(state, prompts, prompt_lengths, rollout, rewards f32[B], step_params) -> (state, metrics)`
    after host rewards; `step_params` are `step_reward_fn`'s params (a PRM's; process supervision), else None."""
    state_sharding, rows = shardings

    def step(state, prompts, prompt_lengths, out, rewards, step_params):
        step_rewards = None if step_reward_fn is None else (step_reward_fn, step_params)
        return _learn_from_rollout(parts, state, prompts, prompt_lengths, out, rewards, step_rewards)

    return jax.jit(step, donate_argnums=0, in_shardings=(state_sharding, rows, rows, rows, rows, None))
