"""Quickstart: SFT cold start of a small reasoning model on multi-step arithmetic, on the CPU.

Command:   python -m rtc.main --config=experiments/configs/quickstart.py --workdir=/tmp/rtc_quickstart
Hardware:  2 CPU cores.
Runtime and result: README.md, "Two commands" (measured).

`:tiny` shrinks everything (test-tiny model, a few steps) to check a setup in seconds.
"""

from experiments.configs import common


def get_config(arg: str = ""):
    parts = common.variants(arg, {"tiny"}, "quickstart")
    c = common.base("sft")
    c.sft = common.sft()
    return common.shrink(c) if "tiny" in parts else c
