"""PPO with a learned critic on multi-step arithmetic: the baseline GRPO replaces (same model, data, budget).

Command:   python -m rtc.main --config=experiments/configs/ppo.py --workdir=/tmp/rtc_ppo
           (`:tiny` to check a setup in seconds). Same as `grpo.py:ppo`; results in experiments/README.md.
"""

from experiments.configs import grpo


def get_config(arg: str = ""):
    return grpo.get_config("_".join(filter(None, [arg, "ppo"])))
