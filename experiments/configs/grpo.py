"""GRPO on multi-step arithmetic after an SFT cold start, on the CPU.

Command:   python -m rtc.main --config=experiments/configs/grpo.py --workdir=/tmp/rtc_grpo
           (variants, joined by `_`: `ppo` the PPO-with-critic baseline, `scratch` GRPO from random weights
           (no cold start), `pretrained` start from llama2.c's stories260K (any checkpoint:
           `--config.pretrained=DIR`), `tiny` shrinks everything for the end-to-end tests)
Hardware:  2 CPU cores.
Runtime and expected result: see experiments/README.md (measured).

Every rl.* option names the paper it comes from (rtc/rl/advantages.py, rtc/rl/losses.py).
"""

import ml_collections

from experiments.configs import quickstart


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    variant = set(arg.split("_")) if arg else set()
    c = quickstart.get_config("tiny" if "tiny" in variant else "")
    c.mode = "ppo" if "ppo" in variant else "grpo"
    c.pretrained = ""  # a pretrained checkpoint to start from (see README, "Pretrained models")
    # The initial policy: an SFT run's workdir, else a cold-start SFT of sft_steps steps, else random weights.
    c.init = ml_collections.ConfigDict(dict(sft_workdir="", sft_steps=600))
    c.train.update(
        num_steps=60, learning_rate=5e-5, warmup_steps=5, weight_decay=0.0, log_every=5, checkpoint_every=20
    )
    c.rl = ml_collections.ConfigDict(
        dict(
            prompts_per_step=16,
            group_size=8,
            max_new_tokens=96,
            temperature=1.0,
            advantage="grpo",  # grpo | dr_grpo | rloo | batch_std
            advantage_eps=1e-4,
            std_ddof=1,  # 1: sample std (TRL, verl); 0: population std
            epsilon=0.2,
            epsilon_high=0.28,  # DAPO clip-higher; -1: symmetric
            dual_clip=-1.0,  # > 1: dual clip (Ye et al. 2020); <= 0: off
            ratio_level="token",  # token | sequence (GSPO)
            aggregation="token_mean",  # sequence_mean (GRPO) | token_mean (DAPO) | constant (Dr. GRPO)
            kl_coef=0.04,
            kl_estimator="k3",
            mu=2,  # two updates per rollout batch: the second sees ratios != 1, so clipping acts
            mask_zero_variance=True,
            process_supervision=False,  # advantages from a PRM's step rewards (rewards.prm_workdir)
            trace_samples=4,  # completions (one per prompt) saved to traces.jsonl at each logged step
            device_rewards="auto",  # auto | on | off: fuse sample -> reward -> update into one program
            gamma=1.0,  # PPO
            lam=0.95,
            value_clip=0.2,
            vf_coef=0.5,
        )
    )
    c.rewards = ml_collections.ConfigDict(
        dict(weights=dict(correct=1.0, format=0.1), overlong_cache=16, on_error=0.0, prm_workdir="")
    )
    if (
        "pretrained" in variant
    ):  # llama2.c's stories260K, cold-started with SFT, then GRPO (see pretrained_sft.py)
        c.pretrained = "stories260K/stories260K.bin"
        c.pretrained_tokenizer = ""
        c.pretrained_template = ""
        c.model.preset = "pretrained"  # informational: the checkpoint defines the architecture
        c.train.seq_len = 96
    if "scratch" in variant:
        c.init.sft_steps = 0
        c.train.learning_rate = 1e-3
    if "tiny" in variant:
        c.init.sft_steps = 2
        c.train.update(num_steps=3, checkpoint_every=2, log_every=1, warmup_steps=1)
        c.rl.update(prompts_per_step=2, group_size=4, max_new_tokens=32)
        c.eval.update(num_examples=8, batch_size=8, max_new_tokens=32)
    unknown = variant - {"tiny", "ppo", "scratch", "pretrained"}
    if unknown:
        raise ValueError(f"unknown grpo variant {arg!r}; known parts: tiny, ppo, scratch, pretrained")
    return c
