"""The GRPO / PPO run: initial policy (cold start or not), rollouts, rewards, updates, checkpoints, evaluation.

A plain function like `sft_loop.run`. The policy starts from, in order of precedence: a pretrained
checkpoint (`config.pretrained`), an SFT run's workdir (`config.init.sft_workdir`), a cold-start SFT
run of `config.init.sft_steps` steps into `WORKDIR/sft`, or random weights (RL from scratch). Resume is
exact: the checkpoint holds the policy (and critic), the frozen reference policy, optimizer state, step,
rng and data position.
"""

import dataclasses
import logging
import resource
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rtc.checkpoint import Checkpointer
from rtc.data.answers import extract_answer
from rtc.data.tasks import get_task
from rtc.eval import traces
from rtc.eval.accuracy import prompt_tokens
from rtc.metrics import MetricWriter, check_finite
from rtc.model import Model
from rtc.parallel import config_mesh, distributed, placement
from rtc.parallel import mesh as mesh_lib
from rtc.rewards import device as device_rewards
from rtc.rewards import rule
from rtc.rl import learner, losses, steps
from rtc.rl.rollout import repeat_groups
from rtc.sampling.rules import SamplingRule
from rtc.sampling.sampler import SamplerConfig, completions, pad_prompts
from rtc.train import sft_loop
from rtc.errors import ConfigError


def rl_config(config: ml_collections.ConfigDict) -> learner.RLConfig:
    """The static `RLConfig` from `config.rl` (and `config.mode`: grpo or ppo)."""
    r = config.rl
    loss = losses.PolicyLossConfig(
        epsilon=r.epsilon,
        epsilon_high=None if r.epsilon_high < 0 else r.epsilon_high,
        dual_clip=None if r.dual_clip <= 0 else r.dual_clip,
        ratio_level=r.ratio_level,
        aggregation=r.aggregation,
        kl_coef=r.kl_coef,
        kl_estimator=r.kl_estimator,
    )
    return learner.RLConfig(
        algorithm=config.mode,
        group_size=r.group_size,
        advantage=r.advantage,
        advantage_eps=r.advantage_eps,
        std_ddof=r.std_ddof,
        loss=loss,
        temperature=r.temperature,
        mu=r.mu,
        mask_zero_variance=r.mask_zero_variance,
        max_new_tokens=r.max_new_tokens,
        gamma=r.gamma,
        lam=r.lam,
        value_clip=None if r.value_clip <= 0 else r.value_clip,
        vf_coef=r.vf_coef,
        process_supervision=r.process_supervision,
    )


def rollout_sampler(config: ml_collections.ConfigDict, tokenizer) -> SamplerConfig:
    """Sampling for rollouts: temperature `rl.temperature`, stop at `</answer>` or eos."""
    r = config.rl
    return SamplerConfig(
        max_new_tokens=r.max_new_tokens,
        stop_ids=(tokenizer.answer_end_id, tokenizer.eos_id),
        pad_id=tokenizer.pad_id,
        rule=SamplingRule(temperature=r.temperature),
    )


def prompt_order(position: int, count: int, num_records: int, seed: int) -> np.ndarray:
    """i64[count]: the record indices at data positions `position .. position + count` (a fresh permutation
    of the records every epoch), so the batch at any position is a pure function of it."""
    positions = np.arange(position, position + count)
    epochs, offsets = positions // num_records, positions % num_records
    perms = {e: np.random.default_rng([seed, int(e)]).permutation(num_records) for e in set(epochs.tolist())}
    return np.array([perms[e][o] for e, o in zip(epochs.tolist(), offsets.tolist())])


def initial_policy(config, workdir: Path, tokenizer, model: Model, pretrained=None):
    """The params RL starts from (see the module docstring), and where they came from.

    `pretrained`: a loaded checkpoint's params (`rtc.pretrained.from_config`); a cold-start SFT starts from them.
    """
    init = config.init
    if init.sft_workdir:
        return sft_loop.restore_params(config, init.sft_workdir, model), f"SFT run {init.sft_workdir}"
    if init.sft_steps > 0:
        sft = ml_collections.ConfigDict(config.to_dict())
        sft.train.update(num_steps=init.sft_steps, halt_after=-1)
        state = sft_loop.train(sft, workdir / "sft", tokenizer, model, pretrained)
        return state["params"], f"cold start: {init.sft_steps} SFT steps in {workdir / 'sft'}"
    if pretrained is not None:
        return pretrained, f"pretrained checkpoint {config.pretrained}"
    return model.init_params(jax.random.key(config.seed)), "random weights (no cold start)"


def critic_params(policy_params, critic: Model, rng: jax.Array):
    """The critic starts as a copy of the initial policy's network with a fresh (zero) scalar head."""
    params = dict(critic.init_params(rng))
    params.update({k: jax.tree.map(jnp.copy, v) for k, v in policy_params.items() if k in params})
    return params


def process_reward(config):
    """`(step_reward_fn, prm_params)` from the PRM run in `config.rewards.prm_workdir` (process supervision),
    or `(None, None)`."""
    if not config.rl.process_supervision:
        return None, None
    if not config.rewards.prm_workdir:
        raise ConfigError(
            "rl.process_supervision needs rewards.prm_workdir (a PRM run, experiments/configs/prm.py)"
        )
    from rtc.rewards import reward_model, rm_loop  # the reward-model stack only when asked for

    description = rm_loop.load_description(config.rewards.prm_workdir)
    if description.get("kind") != "prm":
        raise ConfigError(f"{config.rewards.prm_workdir} holds a {description.get('kind')}, not a PRM")
    prm, prm_params = rm_loop.load_reward_model(config.rewards.prm_workdir)
    delimiter = int(description["delimiter_id"])

    def step_reward_fn(params, tokens, completion):
        return reward_model.prm_step_rewards(prm, params, tokens, completion, delimiter)

    return step_reward_fn, prm_params


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


def train(config, workdir: Path, tokenizer, model: Model, pretrained=None) -> dict:
    """Runs (or resumes) RL to `config.train.num_steps`; returns the final train state.

    `pretrained`: params of a loaded checkpoint to start from (see `initial_policy`)."""
    t, r, cfg = config.train, config.rl, rl_config(config)
    task = get_task(config.task.name)
    records = sft_loop.task_records(config, "train", workdir)
    mesh = placement.mesh_from_config(config)
    rows_per_step = r.prompts_per_step * r.group_size
    config_mesh.batch_size_per_chip(rows_per_step, mesh)  # the rollout rows must split evenly
    rows = config_mesh.batch_sharding(mesh)

    schedule, optimizer = sft_loop.make_optimizer(config)
    critic = Model(dataclasses.replace(model.config, scalar_head=True)) if cfg.algorithm == "ppo" else None
    weights = tuple((str(k), float(v)) for k, v in config.rewards.weights.items())
    step_reward_fn, prm_params = process_reward(config)
    on_device = step_reward_fn is None and use_device_rewards(config, task, tokenizer)
    reward_fns = rule.make_reward_fns(task, r.max_new_tokens, config.rewards.overlong_cache)
    spec = rule.RewardSpec(weights, config.rewards.on_error)
    spec.check(list(reward_fns))
    sampler_cfg = rollout_sampler(config, tokenizer)

    with Checkpointer(workdir / "checkpoints", max_to_keep=t.max_to_keep) as checkpointer:
        resuming = checkpointer.latest_step() is not None
        if resuming:  # the template's values are replaced by the checkpoint's
            policy, origin = model.init_params(jax.random.key(0)), "checkpoint"
        else:
            policy, origin = initial_policy(config, workdir, tokenizer, model, pretrained)
        logging.info("policy from %s", origin)
        rng = jax.random.key(config.seed + 17)
        critic_init = critic_params(policy, critic, jax.random.fold_in(rng, 1)) if critic else None
        # built by one jitted program, placed by the sharding rules (replicated unless the mesh has
        # fsdp / tensor axes): the policy may arrive sharded from an SFT run on other processes
        state, state_sharding = placement.init_sharded(
            lambda policy, critic, rng: learner.init_state(policy, optimizer, rng, critic),
            (policy, critic_init, jax.random.fold_in(rng, 2)),
            mesh,
            placement.rules_from_config(config, mesh),
        )
        position = 0
        if resuming:
            state, meta = checkpointer.restore(state)
            position = meta["data_position"]
            logging.info("resumed from step %d (data position %d)", int(state["step"]), position)
        parts = steps.Learner(model, critic, cfg, optimizer, schedule, tokenizer.pad_id)
        if on_device:
            reward = steps.DeviceReward.of(
                tokenizer, weights, r.max_new_tokens, config.rewards.overlong_cache
            )
            fused = steps.make_fused_step(parts, sampler_cfg, reward, (state_sharding, rows))
        else:
            rollout = steps.make_rollout(model, sampler_cfg, rows)
            learn = steps.make_learn_step(parts, (state_sharding, rows), step_reward_fn)

        start = int(state["step"])
        if distributed.is_primary():  # the steps after the checkpoint are sampled again: their traces too
            traces.truncate_samples(workdir / traces.TRACES_FILE, start)
        with MetricWriter(workdir, total_steps=t.num_steps, initial_step=start) as writer:
            for step in range(start + 1, t.num_steps + 1):
                started = time.time()
                batch = [
                    records[int(i)]
                    for i in prompt_order(position, r.prompts_per_step, len(records), config.seed)
                ]
                prompts, lengths = pad_prompts(
                    [prompt_tokens(tokenizer, x) for x in batch],
                    tokenizer.pad_id,
                    r.max_new_tokens,
                    model.max_seq_len,
                )
                prompts, lengths = repeat_groups(prompts, lengths, r.group_size)
                group_records = [x for x in batch for _ in range(r.group_size)]
                prompts, lengths = jax.device_put((prompts, lengths), rows)
                host = {}
                if on_device:
                    gold = jax.device_put(np.array([int(x["answer"]) for x in group_records], np.int32), rows)
                    state, metrics, out = fused(state, prompts, lengths, gold)
                    texts = [tokenizer.decode(ids) for ids in completions(out)]
                else:
                    state, key = learner.split_rng(state)
                    out = rollout(state["params"]["policy"], prompts, lengths, key)
                    texts = [tokenizer.decode(ids) for ids in completions(out)]  # waits for the rollout
                    rollout_time = time.time() - started
                    total, per_fn, failures = rule.score(
                        reward_fns, spec, texts, group_records, mesh_lib.to_host(out.lengths)
                    )
                    host.update({f"reward/{k}": float(v.mean()) for k, v in per_fn.items()})
                    host.update({f"reward_std/{k}": float(v.std()) for k, v in per_fn.items()})
                    host.update({f"reward_errors/{k}": float(v) for k, v in failures.items()})
                    state, metrics = learn(
                        state, prompts, lengths, out, jax.device_put(total, rows), prm_params
                    )
                    host["rollout_seconds"] = rollout_time
                position += r.prompts_per_step
                metrics = jax.device_get(metrics)
                check_finite(step, metrics, keys=("loss", "grad_norm"))
                logged = {k: float(v) for k, v in metrics.items()}
                logged.update(host)
                logged["accuracy"] = float(
                    np.mean([task.is_correct(extract_answer(x), rec) for x, rec in zip(texts, group_records)])
                )
                logged["self_correction_rate"] = traces.self_correction_rate(texts)
                logged["repetition_rate"] = traces.repetition_rate(texts)
                if (
                    r.get("trace_samples", 0)
                    and (step % t.log_every == 0 or step == 1)
                    and distributed.is_primary()
                ):
                    shown = slice(0, r.get("trace_samples", 0) * r.group_size, r.group_size)  # one per prompt
                    traces.append_samples(
                        workdir / traces.TRACES_FILE,
                        step,
                        texts[shown],
                        [x["question"] for x in group_records[shown]],
                        [
                            task.is_correct(extract_answer(x), rec)
                            for x, rec in zip(texts[shown], group_records[shown])
                        ],
                    )
                logged["step_seconds"] = time.time() - started
                writer.write(step, logged, prefix="train/")
                writer.advance()
                if step % t.log_every == 0 or step == t.num_steps:
                    writer.log(
                        f"step {step}/{t.num_steps}  reward {logged['reward_mean']:.3f}  acc {logged['accuracy']:.3f}"
                        f"  kl {logged.get('kl', 0.0):.4f}  clip {logged['clip_fraction_low'] + logged['clip_fraction_high']:.3f}"
                        f"  len {logged['completion_length']:.1f}"
                    )
                if step % t.checkpoint_every == 0 or step == t.num_steps:
                    checkpointer.save(step, state, {"data_position": position, "task": config.task.name})
                if step == t.halt_after:
                    logging.warning("halting after step %d as configured (train.halt_after)", step)
                    break
            writer.write(
                int(state["step"]),
                {"param_and_optimizer_bytes": state_bytes(state), "peak_rss_bytes": peak_rss_bytes()},
                prefix="memory/",
            )
    return state


def restore_policy(config, workdir: str | Path, model: Model, step: int | None = None):
    """The policy params of an RL run's checkpoint (default: the latest), e.g. for evaluation or search."""
    _, optimizer = sft_loop.make_optimizer(config)
    policy = model.init_params(jax.random.key(0))
    critic = None
    if config.mode == "ppo":
        critic_model = Model(dataclasses.replace(model.config, scalar_head=True))
        critic = critic_params(policy, critic_model, jax.random.key(0))
    template = learner.init_state(policy, optimizer, jax.random.key(0), critic)
    with Checkpointer(Path(workdir) / "checkpoints") as checkpointer:
        state, _ = checkpointer.restore(template, step=step)
    return state["params"]["policy"]


def peak_rss_bytes() -> int:
    """The process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """RL then held-out evaluation of the policy; returns the evaluation results."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tokenizer, model, pretrained = sft_loop.load_model(config)
    logging.info("%s on %s", config.mode, config.task.name)
    state = train(config, workdir, tokenizer, model, pretrained)
    if int(state["step"]) < config.train.num_steps:
        return {}
    with MetricWriter(workdir, progress=False) as writer:
        return sft_loop.evaluate(
            config, workdir, tokenizer, model, state["params"]["policy"], writer, int(state["step"])
        )
