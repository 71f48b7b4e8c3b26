"""SFT on Cloud TPU: the quickstart's arithmetic task at 125M and 1B parameters, one variant per slice.

Command:   single host (v5e-8, v5e-8-1b, v4-8), from your machine, the workdir kept in gs:// between runs:
             tpu_scripts/run.sh NAME --sync gs://BUCKET/run -- \
                 python -m rtc.main --config=experiments/configs/tpu.py:v5e-8 --workdir=/tmp/run
           pod slice (v4-32, v5e-32), from your machine; every worker runs the command, each attempt
           resumes from the last checkpoint in the workdir, which every worker must see (a gcsfuse or
           Filestore mount: a gs:// workdir path is not supported yet; README, "Running on TPU"):
             tpu_scripts/launch.sh rtc-v4-32 --accelerator v4-32 --zone us-central2-b --spot --queued -- \
                 python -m rtc.main --config=experiments/configs/tpu.py:v4-32 --workdir=/mnt/gcs/BUCKET/run
Hardware:  VARIANTS below: chips, HBM per chip (v5e 16 GiB, v4 32 GiB; a v4-N has N/2 chips).
Runtime:   not measured yet.
Expected:  memory per chip (params, grads, AdamW state and XLA:CPU's compiled activations, float32,
           at the presets' 32k vocabulary; the shipped 1,024-piece tokenizer needs less):
             v5e-8     125m  data=8            batch 32  13.77 GiB of 16
             v5e-8-1b  1b    data=-1,fsdp=8    batch 8   10.02 GiB of 16
             v4-8      1b    data=-1,fsdp=4    batch 8   20.00 GiB of 32
             v4-32     1b    data=-1,fsdp=16   batch 32  17.10 GiB of 32
             v5e-32    1b    data=-1,fsdp=32   batch 32   8.56 GiB of 16
           regenerated with, e.g.
             python -m rtc.analysis.memory --preset 1b --mesh data=-1,fsdp=8 --devices 8 --batch 8 \\
                 --seq 1024 --compiled

`sharding_rules="auto"` picks the preset that uses every mesh axis of size > 1 (rtc/parallel/rules.py):
`dp` for the 125m run, `fsdp` (ZeRO-3) for the 1b runs.
"""

from typing import NamedTuple

import ml_collections

from experiments.configs import common


class Variant(NamedTuple):
    accelerator: str  # tpu_scripts/create.sh --accelerator
    chips: int
    hosts: int
    preset: str
    mesh: str
    batch_size: int
    memory_gib: float  # per chip, python -m rtc.analysis.memory ... --compiled
    hbm_gib: int  # per chip


VARIANTS = {
    "v5e-8": Variant("v5litepod-8", 8, 1, "125m", "data=8", 32, 13.77, 16),
    "v5e-8-1b": Variant("v5litepod-8", 8, 1, "1b", "data=-1,fsdp=8", 8, 10.02, 16),
    "v4-8": Variant("v4-8", 4, 1, "1b", "data=-1,fsdp=4", 8, 20.00, 32),
    "v4-32": Variant("v4-32", 16, 4, "1b", "data=-1,fsdp=16", 32, 17.10, 32),
    "v5e-32": Variant("v5litepod-32", 32, 8, "1b", "data=-1,fsdp=32", 32, 8.56, 16),
}
SEQ_LEN = 1024
# preset -> (learning rate, SFT steps): 1b batches are 8-32 rows, so a lower rate.
SCHEDULE = {"125m": (6e-4, 10_000), "1b": (3e-4, 10_000)}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    if arg not in VARIANTS:
        raise ValueError(f"unknown tpu variant {arg!r}; known: {', '.join(VARIANTS)}")
    v = VARIANTS[arg]
    learning_rate, num_steps = SCHEDULE[v.preset]
    c = common.base("sft")
    c.sft = common.sft()
    c.mesh = v.mesh
    c.sharding_rules = "auto"
    c.model.preset = v.preset
    c.task.update(num_train=1_000_000, num_test=2_000, levels=tuple(range(1, 9)))  # 6-8: 5-7 operations
    c.sft.update(
        batch_size=v.batch_size,
        seq_len=SEQ_LEN,
        num_steps=num_steps,
        learning_rate=learning_rate,
        warmup_steps=500,
        log_every=100,
        checkpoint_every=1000,  # a preempted spot VM loses at most this many steps
        max_to_keep=3,
    )
    # Eval batches split over every chip (1-D data mesh); a prompt + 256 new tokens fits every context.
    c.eval.update(num_examples=2_000, batch_size=128, max_new_tokens=256)
    return c
