"""PPO with a learned critic on multi-step arithmetic: the baseline GRPO replaces (same model, data, budget).

Command:   python -m rtc.main --config=experiments/configs/ppo.py --workdir=/tmp/rtc_ppo
           (`:tiny` for the end-to-end test). Same as `grpo.py:ppo`; see experiments/README.md for results.
"""

from experiments.configs import grpo


def get_config(arg: str = ""):
    return grpo.get_config("_".join(filter(None, [arg, "ppo"])))
