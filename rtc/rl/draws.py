"""How an RL step draws its rollouts: which prompts, how many rounds, and with what rewards.

A step's prompts are a pure function of its data position (`prompt_order`), optionally drawn by level
(`level_pool`). Without DAPO's dynamic sampling a step draws `rl.prompts_per_step` prompts once. With it
(Yu et al. 2025, sec. 3.2), each round draws `rl.oversample` times that many and rounds repeat, up to
`rl.max_rounds`, until the batch has `rl.prompts_per_step` informative groups; the update then trains on
the selected groups (`rtc.rl.dynamic_sampling`). A step may draw up to `oversample * max_rounds` batches'
worth of prompts, so the data position advances by that much every step (exact resume). With on-device
rewards and one round the whole step is one program (`fused`); otherwise each round is one compiled call
and the selection and the update follow (`rounds`).
"""

import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rtc.data.format import prompt_tokens
from rtc.errors import ConfigError
from rtc.model import Model
from rtc.parallel import mesh as mesh_lib
from rtc.rewards import rule
from rtc.rl import dynamic_sampling, learner, programs
from rtc.rl.rollout import repeat_groups
from rtc.sampling.sampler import completions, pad_prompts


def prompt_order(position: int, count: int, num_records: int, seed: int) -> np.ndarray:
    """i64[count]: the record indices at data positions `position .. position + count` (a fresh permutation
    of the records every epoch), so the batch at any position is a pure function of it."""
    positions = np.arange(position, position + count)
    epochs, offsets = positions // num_records, positions % num_records
    perms = {e: np.random.default_rng([seed, int(e)]).permutation(num_records) for e in set(epochs.tolist())}
    return np.array([perms[e][o] for e, o in zip(epochs.tolist(), offsets.tolist())])


def level_pool(records, spec: str) -> np.ndarray | None:
    """i64[M]: the record indices RL prompts are drawn from, each repeated by its level's weight in `spec`
    (`"2:1,3:2,4:1"`: levels 2 and 4 once, level 3 twice, other levels never; a record's level is its
    `difficulty`); None (every record) for "".

    A prompt mix weighted toward the levels where the policy's pass@k far exceeds its pass@1: there a
    group is most often informative (some samples right, some wrong)."""
    if not spec:
        return None
    try:
        weights = {int(k): int(v) for k, v in (item.split(":") for item in spec.split(","))}
    except ValueError:
        raise ConfigError(f"rl.level_weights must read like '2:1,3:2' (level:weight), got {spec!r}") from None
    if any(w < 0 for w in weights.values()) or not any(weights.values()):
        raise ConfigError(f"rl.level_weights needs weights >= 0, one of them > 0; got {spec!r}")
    levels = np.array([int(records[i].get("difficulty", 0)) for i in range(len(records))])
    pool = np.concatenate([np.repeat(np.flatnonzero(levels == k), w) for k, w in sorted(weights.items())])
    if not len(pool):
        raise ConfigError(
            f"rl.level_weights {spec!r} selects no training problem (levels: {sorted(set(levels))})"
        )
    return np.sort(pool)


def draws_per_step(config) -> tuple[int, int]:
    """`(prompts drawn per round, max rounds)` of DAPO's dynamic sampling (`rl.dynamic_sampling`): each round
    draws `rl.oversample` times the batch's prompts, rounds repeat until `rl.prompts_per_step` informative
    groups are found or `rl.max_rounds` is reached; `(prompts_per_step, 1)` without it."""
    r = config.rl
    if not r.dynamic_sampling:
        return r.prompts_per_step, 1
    if r.oversample < 1 or r.max_rounds < 1 or r.oversample * r.max_rounds < 2:
        raise ConfigError(
            "rl.dynamic_sampling needs rl.oversample >= 1 and rl.max_rounds >= 1 with more than one "
            f"batch's prompts drawn in all (got oversample={r.oversample}, max_rounds={r.max_rounds})"
        )
    return r.prompts_per_step * r.oversample, r.max_rounds


def concatenate(rounds: list):
    """One pytree from a list of per-round pytrees of `[rows, ...]` arrays (prompts padded to one width)."""
    width = max(x[0].shape[1] for x in rounds)
    rounds = [(jnp.pad(x[0], ((0, 0), (0, width - x[0].shape[1]))), *x[1:]) for x in rounds]
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *rounds)


@dataclasses.dataclass(frozen=True)
class Rollouts:
    """The prompts of one RL step: `group_size` rows per prompt, padded and placed on the devices."""

    records: list  # one per row
    prompts: jax.Array  # i32[P * G, Lp]
    lengths: jax.Array  # i32[P * G]


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a step's prompts come from: the run's config, tokenizer, model, training records, the level
    pool (or None) and the rows' sharding."""

    config: object
    tokenizer: object
    model: Model
    records: object
    pool: np.ndarray | None
    rows: jax.sharding.Sharding

    @property
    def per_round(self) -> int:
        return draws_per_step(self.config)[0]

    @property
    def max_rounds(self) -> int:
        return draws_per_step(self.config)[1]

    def prompts(self, position: int) -> Rollouts:
        """The `per_round` prompts at data `position`, each repeated G times, placed on the rows."""
        c, count = self.config, self.per_round
        n = len(self.records if self.pool is None else self.pool)
        batch = [
            self.records[int(i if self.pool is None else self.pool[i])]
            for i in prompt_order(position, count, n, c.seed)
        ]
        prompts, lengths = pad_prompts(
            [prompt_tokens(self.tokenizer, x) for x in batch],
            self.tokenizer.pad_id,
            c.rl.max_new_tokens,
            self.model.max_seq_len,
        )
        prompts, lengths = repeat_groups(prompts, lengths, c.rl.group_size)
        prompts, lengths = jax.device_put((prompts, lengths), self.rows)
        return Rollouts([x for x in batch for _ in range(c.rl.group_size)], prompts, lengths)

    def gold(self, batch: Rollouts) -> jax.Array:
        """i32[B]: each row's integer answer (on-device rewards)."""
        return jax.device_put(np.array([int(x["answer"]) for x in batch.records], np.int32), self.rows)

    def decode(self, out) -> list[str]:
        return [self.tokenizer.decode(ids) for ids in completions(out)]


def fused(source: Source, fused_step: Callable) -> Callable:
    """`sample_and_learn(state, position)` around `programs.make_fused_step`: one program per step."""

    def sample_and_learn(state, position):
        batch = source.prompts(position)
        state, metrics, out = fused_step(state, batch.prompts, batch.lengths, source.gold(batch))
        return state, metrics, source.decode(out), batch.records, {}

    return sample_and_learn


def device_draw(source: Source, draw: Callable) -> Callable:
    """`draw(state, batch, host) -> (state, rollout, rewards f32[B], texts)` with on-device rewards
    (`programs.make_draw`)."""

    def one_round(state, batch: Rollouts, host: dict):
        state, key = learner.split_rng(state)
        policy = state["params"]["policy"]
        out, total, per_fn = draw(policy, batch.prompts, batch.lengths, key, source.gold(batch))
        for k, v in per_fn.items():
            host.setdefault(f"reward/{k}", []).append(float(v.mean()))
        return state, out, total, source.decode(out)

    return one_round


def host_draw(source: Source, rollout: Callable, reward_fns: dict, spec: rule.RewardSpec) -> Callable:
    """`draw(state, batch, host) -> (state, rollout, rewards f32[B], texts)` with host verifiers; each
    reward function's mean and error count are appended to `host` (one entry per round)."""

    def one_round(state, batch: Rollouts, host: dict):
        state, key = learner.split_rng(state)
        out = rollout(state["params"]["policy"], batch.prompts, batch.lengths, key)
        texts = source.decode(out)  # waits for the rollout
        total, per_fn, failures = rule.score(
            reward_fns, spec, texts, batch.records, mesh_lib.to_host(out.lengths)
        )
        for k, v in per_fn.items():
            host.setdefault(f"reward/{k}", []).append(float(v.mean()))
        for k, v in failures.items():
            host.setdefault(f"reward_errors/{k}", []).append(float(v))
        return state, out, jnp.asarray(total, jnp.float32), texts

    return one_round


def rounds(source: Source, draw: Callable, learn: Callable, step_params) -> Callable:
    """`sample_and_learn(state, position)`: rounds of `draw` until the batch has `rl.prompts_per_step`
    informative groups (or `max_rounds`), then `learn` on the selected groups. `step_params`: the learn
    step's PRM params (process supervision) or None."""
    r = source.config.rl

    def sample_and_learn(state, position):
        started, host, drawn, texts, records, informative = time.time(), {}, [], [], [], 0
        for i in range(source.max_rounds):
            batch = source.prompts(position + i * source.per_round)
            state, out, total, round_texts = draw(state, batch, host)
            drawn.append((batch.prompts, batch.lengths, out, total))
            texts += round_texts
            records += batch.records
            informative += int(dynamic_sampling.informative_groups(total.reshape(-1, r.group_size)).sum())
            if informative >= r.prompts_per_step:  # the batch is full: no more rounds
                break
        host = {k: float(np.mean(v)) for k, v in host.items()}
        host["rollout_seconds"] = time.time() - started
        prompts, lengths, out, total = concatenate(drawn)
        metrics = programs.draw_metrics(out, total, r.prompts_per_step, r.group_size)
        if len(total) > r.prompts_per_step * r.group_size:
            prompts, lengths, out, total, _ = programs.select_rollout(
                prompts, lengths, out, total, (), r.prompts_per_step, r.group_size
            )
        prompts, lengths, out, total = jax.device_put((prompts, lengths, out, total), source.rows)
        state, learned = learn(state, prompts, lengths, out, total, step_params)
        return state, {**learned, **metrics}, texts, records, host

    return sample_and_learn
