"""GRPO on multi-step arithmetic after an SFT cold start, on the CPU.

Command:   python -m rtc.main --config=experiments/configs/grpo.py --workdir=/tmp/rtc_grpo
           (variants, joined by `_`: `ppo` the PPO-with-critic baseline, `scratch` GRPO from random weights
           (no cold start), `pretrained` start from llama2.c's stories260K (any checkpoint:
           `--config.pretrained=DIR`), `tiny` shrinks everything to check a setup in seconds)
Hardware:  2 CPU cores.
Runtime and result: experiments/README.md, "Reinforcement learning on arithmetic" and "Dynamic sampling and a
           level-weighted prompt mix": from the quickstart's SFT run, 60 steps took 21 s/step (21 min plus
           the evaluation) with other jobs on the 2 cores; sampled held-out accuracy 35.0% -> 37.3%, greedy
           unchanged at 37.7%. With `--config.rl.num_steps=240` (73 min beside other jobs): greedy 36.3% ->
           37.3%, sampled 34.0% -> 36.7% on 512 problems; paired on 1,000 held-out problems
           (experiments/paired_eval.py) +1.5 [+0.3, +2.7] greedy and +3.0 [+1.9, +4.2] sampled points, +7.5
           / +11.5 on level 2; the training reward plateaus by step 80.

The policy starts from `policy_workdir` (a finished SFT run) if set, else from a cold start of `sft.num_steps`
SFT steps into WORKDIR/sft, else (`sft.num_steps=0`) from `pretrained` or random weights.
Every `rl.*` option names the paper it comes from (rtc/rl/advantages.py, rtc/rl/losses.py).
"""

import ml_collections
from ml_collections.config_dict import placeholder

from experiments.configs import common


def rl_block() -> ml_collections.ConfigDict:
    """16 prompts x G=8 samples per step, 60 steps; clip-higher, token-mean loss, k3 KL to the reference."""
    block = common.training(
        num_steps=60, learning_rate=5e-5, warmup_steps=5, weight_decay=0.0, log_every=1, checkpoint_every=20
    )
    block.update(
        prompts_per_step=16,
        group_size=8,
        max_new_tokens=96,
        temperature=1.0,
        advantage="grpo",  # grpo | dr_grpo | rloo | batch_std
        advantage_eps=1e-4,
        std_ddof=1,  # 1: sample std (TRL, verl); 0: population std
        epsilon=0.2,
        epsilon_high=0.28,  # DAPO clip-higher; None: symmetric
        dual_clip=placeholder(float),  # > 1: dual clip (Ye et al. 2020); None: off
        ratio_level="token",  # token | sequence (GSPO)
        aggregation="token_mean",  # sequence_mean (GRPO) | token_mean (DAPO) | constant (Dr. GRPO)
        kl_coef=0.04,
        kl_estimator="k3",
        mu=2,  # two updates per rollout batch: the second sees ratios != 1, so clipping acts
        mask_zero_variance=True,
        # DAPO dynamic sampling: each round draws `oversample` x prompts_per_step prompts; rounds repeat
        # until prompts_per_step groups with differing rewards are found (or max_rounds); the update
        # trains on those (any shortfall filled with masked zero-variance groups)
        # prompts by level, where the cold-started policy's pass@8 far exceeds its pass@1 (level 1 is
        # solved, level 5 out of reach); "": every problem (the task's own mix)
        level_weights="2:1,3:1,4:1",
        dynamic_sampling=True,
        oversample=2,
        max_rounds=3,
        overlong_filter=False,  # DAPO: completions cut by max_new_tokens get no loss
        logprob_parity=True,  # log max |sampler log p - learner log p| (free with mu > 1)
        process_supervision=False,  # advantages from step rewards (rewards.prm_workdir or checker_workdir)
        trace_samples=4,  # completions (one per prompt) saved to traces.jsonl every trace_every steps
        trace_every=5,
        device_rewards="auto",  # auto | on | off: fuse sample -> reward -> update into one program
        gamma=1.0,  # PPO
        lam=0.95,
        value_clip=0.2,  # None: no value clipping
        vf_coef=0.5,
    )
    return block


def get_config(arg: str = ""):
    parts = common.variants(arg, {"tiny", "ppo", "scratch", "pretrained"}, "grpo")
    c = common.base("ppo" if "ppo" in parts else "grpo")
    c.policy_workdir = placeholder(str)  # a finished SFT run to start from (skips the cold start)
    c.sft = common.sft()  # the cold start
    c.rl = rl_block()
    c.rewards = ml_collections.ConfigDict(
        dict(
            weights=dict(correct=1.0, format=0.1),
            overlong_cache=16,
            on_error=0.0,
            prm_workdir=placeholder(str),  # process supervision by a PRM's step probabilities
            checker_workdir=placeholder(str),  # ... or by a checker's (experiments/configs/checker.py)
            checker_step_reduce="sum",  # a checker's step reward: exp of the sum (or "mean") of its log-probs
        )
    )
    if "pretrained" in parts:  # llama2.c's stories260K, cold-started with SFT, then GRPO
        c.pretrained = "stories260K/stories260K.bin"  # data root, else the copy in tests/data
        c.sft.seq_len = 96
    if "scratch" in parts:
        c.sft.num_steps = 0
        c.rl.learning_rate = 1e-3
        # a random policy's groups are all wrong: rounds of dynamic sampling would find nothing to keep
        c.rl.update(dynamic_sampling=False, level_weights="")
    if "tiny" in parts:
        common.shrink(c)
        c.sft.update(num_steps=2, checkpoint_every=2)
        c.rl.update(num_steps=3, checkpoint_every=2, log_every=1, warmup_steps=1, trace_every=1)
        c.rl.update(prompts_per_step=2, group_size=4, max_new_tokens=32)
        c.eval.update(max_new_tokens=32)
    return c
