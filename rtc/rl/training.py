"""GRPO and PPO training: rollouts, rewards, advantages and updates, run by the shared loop.

Each step samples `rl.group_size` completions for each of `rl.prompts_per_step` prompts, scores them and
updates the policy (and PPO's critic). With rewards on device (the arithmetic task's rule rewards) sample ->
reward -> advantage -> update is one jitted program; other verifiers run on the host between a jitted
rollout and a jitted learn step. Resume is exact: the checkpoint holds the policy (and critic), the frozen
reference policy, optimizer state, step, rng and data position.
"""

import dataclasses
import logging
import resource
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from rtc.data.answers import extract_answer
from rtc.data.tasks import get_task
from rtc.data.tfds_builders import task_records
from rtc.errors import ConfigError
from rtc.eval import traces
from rtc.metrics import MetricWriter
from rtc.model import Model
from rtc.parallel import config_mesh, distributed, placement
from rtc.rewards import device as device_rewards
from rtc.rewards import rule
from rtc.rl import draws, learner, losses, programs
from rtc.sampling.rules import SamplingRule
from rtc.sampling.sampler import SamplerConfig
from rtc.train import loop
from rtc.train import optimizer as optimizer_lib


def _fields(cls, block) -> dict:
    return {f.name: block[f.name] for f in dataclasses.fields(cls) if f.name in block}


def rl_config(config: ml_collections.ConfigDict) -> learner.RLConfig:
    """The static `RLConfig` of `config.rl`, field by field (and `config.mode`: grpo or ppo)."""
    loss = losses.PolicyLossConfig(**_fields(losses.PolicyLossConfig, config.rl))
    return learner.RLConfig(
        **{**_fields(learner.RLConfig, config.rl), "algorithm": config.mode, "loss": loss}
    )


def rollout_sampler(config: ml_collections.ConfigDict, tokenizer) -> SamplerConfig:
    """Sampling for rollouts: temperature `rl.temperature`; stops at the tokenizer's `stop_ids`
    (`</answer>`, its eos ids and its chat template's turn end)."""
    r = config.rl
    return SamplerConfig(
        max_new_tokens=r.max_new_tokens,
        stop_ids=tuple(tokenizer.stop_ids),
        pad_id=tokenizer.pad_id,
        rule=SamplingRule(temperature=r.temperature),
    )


def critic_params(policy_params, critic: Model, rng: jax.Array):
    """The critic starts as a copy of the initial policy's network with a fresh (zero) scalar head."""
    params = dict(critic.init_params(rng))
    params.update({k: jax.tree.map(jnp.copy, v) for k, v in policy_params.items() if k in params})
    return params


def process_reward(config, tokenizer=None):
    """`(step_reward_fn, params)` for process supervision: a PRM's probability that each step is right
    (`config.rewards.prm_workdir`, a PRM run) or a checker's probability of each step
    (`config.rewards.checker_workdir`, an SFT run trained past the policy, experiments/configs/checker.py);
    `(None, None)` without `rl.process_supervision`."""
    if not config.rl.process_supervision:
        return None, None
    prm_dir, checker_dir = config.rewards.prm_workdir, config.rewards.get("checker_workdir")
    if bool(prm_dir) == bool(checker_dir):
        raise ConfigError(
            "rl.process_supervision needs one step verifier: rewards.prm_workdir (a PRM run, "
            "experiments/configs/prm.py) or rewards.checker_workdir (experiments/configs/checker.py)"
            + (", not both" if prm_dir else "")
        )
    if checker_dir:
        return checker_step_reward(config, tokenizer)
    from rtc.rewards import reward_model, training  # the reward-model stack only when asked for

    description = training.load_description(prm_dir)
    if description.get("kind") != "prm":
        raise ConfigError(f"{prm_dir} holds a {description.get('kind')}, not a PRM")
    prm, prm_params = training.load_reward_model(prm_dir)
    delimiter = int(description["delimiter_id"])

    def step_reward_fn(params, tokens, completion):
        return reward_model.prm_step_rewards(prm, params, tokens, completion, delimiter)

    return step_reward_fn, prm_params


def checker_step_reward(config, tokenizer):
    """`(step_reward_fn, checker_params)`: the checker of `config.rewards.checker_workdir` reads each step
    (`self_check.checker_step_rewards`, its log-probs reduced by `rewards.checker_step_reduce`, sum or
    mean); it must read the policy's tokens."""
    from rtc.rewards import checker  # the verifier stack only when asked for
    from rtc.rewards.self_check import checker_step_rewards

    reduce = config.rewards.get("checker_step_reduce", "sum")
    if reduce not in ("sum", "mean"):
        raise ConfigError(f"rewards.checker_step_reduce must be 'sum' or 'mean', got {reduce!r}")

    model, params = checker.load_checker(
        config.rewards.checker_workdir, config.get("tokenizer_path"), config.get("pretrained"), tokenizer
    )
    delimiter = tokenizer.step_id

    def step_reward_fn(params, tokens, completion):
        return checker_step_rewards(model, params, tokens, completion, delimiter, reduce)

    return step_reward_fn, params


def state_bytes(state: dict) -> int:
    """Bytes of the trained params plus optimizer state (not the frozen reference)."""
    leaves = jax.tree.leaves((state["params"], state["opt_state"]))
    return int(sum(x.size * x.dtype.itemsize for x in leaves if hasattr(x, "dtype")))


def use_device_rewards(config, task, tokenizer=None) -> bool:
    """Rewards on device when asked (`auto`: when the task's answers are integers, the rewards are rules
    and the tokenizer writes digits one per token)."""
    choice = config.rl.device_rewards
    possible = (
        task.name == "arithmetic"
        and all(k in device_rewards.DEVICE_REWARDS for k in config.rewards.weights)
        and (tokenizer is None or device_rewards.supports(tokenizer))
    )
    if choice == "auto":
        return possible
    if choice == "on" and not possible:
        raise ConfigError(
            f"rl.device_rewards='on' needs the arithmetic task and rewards from {device_rewards.DEVICE_REWARDS}"
        )
    return choice == "on"


def peak_rss_bytes() -> int:
    """The process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def completion_metrics(task, texts: list[str], records: list[dict]) -> dict:
    """Host metrics of a rollout's completions: accuracy, self-correction and repetition rates."""
    return {
        "accuracy": float(
            np.mean([task.is_correct(extract_answer(x), rec) for x, rec in zip(texts, records)])
        ),
        "self_correction_rate": traces.self_correction_rate(texts),
        "repetition_rate": traces.repetition_rate(texts),
    }


def save_traces(config, workdir: epath.Path, task, step: int, texts: list[str], records: list[dict]) -> None:
    """One completion per prompt of the first few prompts, appended to `traces.jsonl` (process 0)."""
    shown = slice(0, config.rl.trace_samples * config.rl.group_size, config.rl.group_size)
    texts, records = texts[shown], records[shown]
    correct = [task.is_correct(extract_answer(x), rec) for x, rec in zip(texts, records)]
    traces.append_samples(
        workdir / traces.TRACES_FILE, step, texts, [x["question"] for x in records], correct
    )


def describe(step: int, logged: dict, num_steps: int) -> str:
    clip = logged["clip_fraction_low"] + logged["clip_fraction_high"]
    return (
        f"step {step}/{num_steps}  reward {logged['reward_mean']:.3f}  acc {logged['accuracy']:.3f}"
        f"  kl {logged.get('kl', 0.0):.4f}  clip {clip:.3f}  len {logged['completion_length']:.1f}"
    )


def make_step(
    config, workdir: epath.Path, tokenizer, model: Model, parts: programs.Learner, state_sharding, mesh
):
    """`step(state, position) -> (state, device metrics, host metrics)`: one rollout batch and its update.

    Without dynamic sampling, or with on-device rewards and one round, one compiled program samples and
    learns (`draws.fused`); otherwise rounds are drawn until the batch is full (`draws.rounds`).
    """
    r = config.rl
    task = get_task(config.task.name)
    records = task_records(config, "train", workdir)
    rows = config_mesh.batch_sharding(mesh)
    weights = tuple((str(k), float(v)) for k, v in config.rewards.weights.items())
    step_reward_fn, prm_params = process_reward(config, tokenizer)
    source = draws.Source(config, tokenizer, model, records, draws.level_pool(records, r.level_weights), rows)
    sampler_cfg = rollout_sampler(config, tokenizer)
    if step_reward_fn is None and use_device_rewards(config, task, tokenizer):
        reward = programs.DeviceReward.of(tokenizer, weights, r.max_new_tokens, config.rewards.overlong_cache)
        if source.max_rounds == 1:
            fused = programs.make_fused_step(
                parts, sampler_cfg, reward, (state_sharding, rows), num_groups=r.prompts_per_step
            )
            sample_and_learn = draws.fused(source, fused)
        else:
            draw = draws.device_draw(
                source, programs.make_draw(model, sampler_cfg, reward, rows, r.group_size)
            )
            learn = programs.make_learn_step(parts, (state_sharding, rows))
            sample_and_learn = draws.rounds(source, draw, learn, None)
    else:
        reward_fns = rule.make_reward_fns(task, r.max_new_tokens, config.rewards.overlong_cache)
        spec = rule.RewardSpec(weights, config.rewards.on_error)
        spec.check(list(reward_fns))
        draw = draws.host_draw(
            source, programs.make_rollout(model, sampler_cfg, rows, r.group_size), reward_fns, spec
        )
        learn = programs.make_learn_step(parts, (state_sharding, rows), step_reward_fn)
        sample_and_learn = draws.rounds(source, draw, learn, prm_params)

    def step(state, position):
        started = time.time()
        state, metrics, texts, drawn_records, host = sample_and_learn(state, position)
        host.update(completion_metrics(task, texts, drawn_records))
        number = int(state["step"])
        if r.trace_samples and (number % r.trace_every == 0 or number == 1) and distributed.is_primary():
            save_traces(config, workdir, task, number, texts, drawn_records)
        host["step_seconds"] = time.time() - started
        return state, metrics, host

    return step


def init_state(
    config, block, model: Model, critic: Model | None, initial_policy: Callable, workdir: epath.Path, mesh
):
    """`(state, state sharding, optimizer, schedule)`: the RL train state placed by the sharding rules.

    `initial_policy()` gives the starting params; it is not called when the run resumes (the checkpoint's
    values replace the template's)."""
    schedule, optimizer = optimizer_lib.from_block(block)
    if loop.latest_step(workdir) is not None:
        policy, origin = model.init_params(jax.random.key(0)), "checkpoint"
    else:
        policy, origin = initial_policy()
    logging.info("policy from %s", origin)
    rng = jax.random.key(config.seed + 17)
    critic_init = critic_params(policy, critic, jax.random.fold_in(rng, 1)) if critic else None
    # one jitted program places the state by the sharding rules: the policy may arrive sharded
    state, state_sharding = placement.init_sharded(
        lambda policy, critic, rng: learner.init_state(policy, optimizer, rng, critic),
        (policy, critic_init, jax.random.fold_in(rng, 2)),
        mesh,
        placement.rules_from_config(config, mesh),
    )
    return state, state_sharding, optimizer, schedule


def train(
    config,
    block,
    workdir: epath.PathLike,
    tokenizer,
    model: Model,
    initial_policy: Callable,
    *,
    halt_after=None,
):
    """Runs (or resumes) RL for `block.num_steps` steps; returns the final train state.

    `initial_policy() -> (params, origin)`: where the policy starts (an SFT run, a pretrained checkpoint,
    random weights); `config.mode` (grpo or ppo) is the algorithm, chosen here once: PPO adds a critic.
    """
    workdir = epath.Path(workdir)
    cfg = rl_config(config)
    mesh = placement.mesh_from_config(config)
    config_mesh.batch_size_per_chip(config.rl.prompts_per_step * config.rl.group_size, mesh)
    critic = Model(dataclasses.replace(model.config, scalar_head=True)) if cfg.algorithm == "ppo" else None
    state, state_sharding, optimizer, schedule = init_state(
        config, block, model, critic, initial_policy, workdir, mesh
    )
    parts = programs.Learner(
        model,
        critic,
        cfg,
        optimizer,
        schedule,
        tokenizer.pad_id,
        tuple(rollout_sampler(config, tokenizer).stop_ids),
    )

    def truncate_traces(start: int):  # the steps after the checkpoint are sampled again: their traces too
        if distributed.is_primary():
            traces.truncate_samples(workdir / traces.TRACES_FILE, start)

    cadence = loop.Cadence.of(block)
    state = loop.run(
        workdir,
        state,
        make_step(config, workdir, tokenizer, model, parts, state_sharding, mesh),
        cadence,
        rows_per_step=int(np.prod(draws.draws_per_step(config))),  # prompts a step may draw
        describe=lambda step, logged: describe(step, logged, cadence.num_steps),
        meta={"task": config.task.name},
        halt_after=halt_after,
        on_resume=truncate_traces,
    )
    with MetricWriter(workdir, progress=False) as writer:
        memory = {"param_and_optimizer_bytes": state_bytes(state), "peak_rss_bytes": peak_rss_bytes()}
        writer.write(int(state["step"]), memory, prefix="memory/")
    return state
