"""GRPO and PPO step throughput, and the split of a step between rollout and update.

Run: `python bench/rl_throughput.py [--preset cpu-small] [--steps 5]` (about 3 min on 2 CPU cores).
Times, after one compiling step, (a) the fused step (sample -> on-device reward -> advantages -> update in
one XLA program) and (b) the host-verifier path: the compiled rollout, host rewards, then the learn step,
each timed alone. Prints one table: prompts/s, generated tokens/s, and the rollout / update share.
"""

import argparse
import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rtc.data import arithmetic
from rtc.data.format import prompt_tokens
from rtc.data.tasks import get_task
from rtc.model import Model, model_config
from rtc.parallel import mesh as mesh_lib
from rtc.rewards import rule
from rtc.rl import learner, programs
from rtc.rl import training as rl_training
from rtc.rl.rollout import repeat_groups
from rtc.sampling.rules import SamplingRule
from rtc.sampling.sampler import SamplerConfig, completions, pad_prompts
from rtc.tokenizer.tokenizer import Tokenizer
from rtc.train import optimizer as optimizer_lib

WEIGHTS = (("correct", 1.0), ("format", 0.1))


def setup(algorithm: str, preset: str, prompts_per_step: int, group_size: int, max_new_tokens: int):
    tokenizer = Tokenizer.load()
    model = Model(model_config(preset, vocab_size=tokenizer.vocab_size))
    cfg = learner.RLConfig(algorithm=algorithm, group_size=group_size, max_new_tokens=max_new_tokens)
    sampler_cfg = SamplerConfig(
        max_new_tokens, (tokenizer.answer_end_id, tokenizer.eos_id), rule=SamplingRule(temperature=1.0)
    )
    optimizer = optimizer_lib.adamw(1e-5, 0.0, 1.0)
    critic = Model(dataclasses.replace(model.config, scalar_head=True)) if algorithm == "ppo" else None
    params = model.init_params(jax.random.key(0))
    critic_params = rl_training.critic_params(params, critic, jax.random.key(1)) if critic else None
    state = learner.init_state(params, optimizer, jax.random.key(2), critic_params)
    mesh = mesh_lib.make_mesh(None)
    shardings = (jax.tree.map(lambda _: mesh_lib.replicated(mesh), state), mesh_lib.batch_sharded(mesh))
    # placed as rtc.rl.training places it: an unplaced state's type differs from the step's output, so the
    # second step would compile again, inside the timed loop
    state = jax.device_put(state, shardings[0])
    records = list(arithmetic.generate("train", prompts_per_step, seed=0))
    prompts, lengths = pad_prompts(
        [prompt_tokens(tokenizer, r) for r in records], tokenizer.pad_id, max_new_tokens, model.max_seq_len
    )
    prompts, lengths = repeat_groups(prompts, lengths, group_size)
    group_records = [r for r in records for _ in range(group_size)]
    gold = jnp.array([int(r["answer"]) for r in group_records], jnp.int32)
    return locals()


def learner_parts(s) -> programs.Learner:
    return programs.Learner(s["model"], s["critic"], s["cfg"], s["optimizer"], None, s["tokenizer"].pad_id)


def fused_stepper(s) -> Callable[[], int]:
    """One fused step per call, returning the tokens it generated; the compiling step is already made."""
    reward = programs.DeviceReward.of(s["tokenizer"], WEIGHTS, s["cfg"].max_new_tokens, 0)
    fused = programs.make_fused_step(learner_parts(s), s["sampler_cfg"], reward, s["shardings"])
    state = jax.tree.map(jnp.copy, s["state"])

    def call():
        nonlocal state
        state, _, out = fused(state, s["prompts"], s["lengths"], s["gold"])
        return int(out.lengths.sum())  # waits for the step

    call()
    return call


def split_stepper(s) -> Callable[[], tuple[np.ndarray, int]]:
    """One rollout -> host rewards -> learn step per call, returning `(seconds f64[3] of the three parts,
    generated tokens)`; the compiling step is already made."""
    rollout = programs.make_rollout(s["model"], s["sampler_cfg"], s["shardings"][1])
    learn = programs.make_learn_step(learner_parts(s), s["shardings"])
    fns = rule.make_reward_fns(get_task("arithmetic"), s["cfg"].max_new_tokens, 0)
    spec = rule.RewardSpec(WEIGHTS)
    state = jax.tree.map(jnp.copy, s["state"])

    def call():
        nonlocal state
        t0 = time.perf_counter()
        state, key = learner.split_rng(state)
        out = jax.block_until_ready(rollout(state["params"]["policy"], s["prompts"], s["lengths"], key))
        t1 = time.perf_counter()
        texts = [s["tokenizer"].decode(ids) for ids in completions(out)]
        total, _, _ = rule.score(fns, spec, texts, s["group_records"], np.asarray(out.lengths))
        t2 = time.perf_counter()
        state, _ = jax.block_until_ready(
            learn(state, s["prompts"], s["lengths"], out, jnp.asarray(total), None)
        )
        return np.array([t1 - t0, t2 - t1, time.perf_counter() - t2]), int(out.lengths.sum())

    call()
    return call


def time_fused(s, num_steps: int) -> tuple[float, float]:
    """Seconds per fused step and generated tokens per step."""
    call = fused_stepper(s)
    started = time.perf_counter()
    tokens = sum(call() for _ in range(num_steps))
    return (time.perf_counter() - started) / num_steps, tokens / num_steps


def time_split(s, num_steps: int) -> tuple[float, float, float, float]:
    """Seconds per step in the rollout, in host rewards and in the learn step; generated tokens per step."""
    call = split_stepper(s)
    results = [call() for _ in range(num_steps)]
    times = sum(seconds for seconds, _ in results) / num_steps
    return (*times, sum(tokens for _, tokens in results) / num_steps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=96)
    args = parser.parse_args()
    print(
        f"{args.preset}, {args.prompts} prompts x G={args.group}, up to {args.new_tokens} new tokens, "
        f"{jax.device_count()} device(s); mean of {args.steps} steps after a compiling one\n"
    )
    header = (
        f"{'algorithm':<10}{'fused s/step':>13}{'prompts/s':>11}{'gen tok/s':>11}"
        f"{'rollout s':>11}{'rewards s':>11}{'update s':>10}{'rollout %':>11}"
    )
    print(header)
    for algorithm in ("grpo", "ppo"):
        s = setup(algorithm, args.preset, args.prompts, args.group, args.new_tokens)
        seconds, tokens = time_fused(s, args.steps)
        rollout, rewards, update, _ = time_split(s, args.steps)
        share = rollout / (rollout + rewards + update)
        print(
            f"{algorithm:<10}{seconds:>13.2f}{args.prompts / seconds:>11.1f}{tokens / seconds:>11,.0f}"
            f"{rollout:>11.2f}{rewards:>11.3f}{update:>10.2f}{share:>11.0%}"
        )


if __name__ == "__main__":
    main()
