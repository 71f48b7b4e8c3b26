"""The fields every experiment shares; each config in this folder builds on these and nothing else.

Blocks: `task` (the dataset: its name and exactly the options that task takes, `task(name)`), `model` (a preset plus optional overrides), `eval` (held-out decoding and its
reasoning budget), and one training block per role: `sft` (supervised cold start), `rl` (GRPO / PPO),
`rm` (reward-model training). A field whose value is None is unset: `placeholder(type)` keeps its type
for command-line overrides (`--config.eval.budget_tokens=64`).
"""

import ml_collections
from ml_collections.config_dict import placeholder

from rtc.data.tasks import get_task
from rtc.model.config import ModelConfig


def model_fields(preset: str) -> ml_collections.ConfigDict:
    """`preset` plus every model field as an optional override (None = the preset's value)."""
    fields = {"preset": preset}
    for name, field in ModelConfig.__dataclass_fields__.items():
        if name != "vocab_size":  # always the tokenizer's
            fields[name] = placeholder(type(field.default))
    return ml_collections.ConfigDict(fields)


def task(name: str, **values) -> ml_collections.ConfigDict:
    """The task block of `name`: the name and every option the task takes (`rtc.data.tasks`), at its
    default unless given in `values`. Other tasks' options are absent, so overriding one from the command
    line is an unknown-key error, and a block written for another task is rejected when data is read."""
    options = get_task(name).options
    unknown = set(values) - {option.name for option in options}
    if unknown:
        raise ValueError(f"task {name!r} takes no {', '.join(sorted(unknown))}")
    fields = {"name": name}
    for option in options:
        value = values.get(option.name, option.default)
        fields[option.name] = placeholder(option.type) if value is None else value
    return ml_collections.ConfigDict(fields)


def training(**fields) -> ml_collections.ConfigDict:
    """A training block: batch, optimizer (AdamW, warmup then cosine decay) and the loop's cadence.

    `resume_step`: continue from this checkpoint instead of the latest (when the latest is damaged).
    """
    block = dict(
        batch_size=32,
        seq_len=128,
        num_steps=600,
        learning_rate=2e-3,
        warmup_steps=50,
        weight_decay=0.1,
        grad_clip=1.0,
        log_every=50,
        checkpoint_every=200,
        max_to_keep=2,
        resume_step=placeholder(int),
    )
    block.update(fields)
    return ml_collections.ConfigDict(block)


def base(mode: str) -> ml_collections.ConfigDict:
    """The task (multi-step arithmetic), model (cpu-small) and held-out evaluation of the CPU experiments."""
    c = ml_collections.ConfigDict()
    c.mode = mode
    c.seed = 0
    c.num_devices = 0  # 0: every device
    c.mesh = ""  # e.g. "data=-1,fsdp=8"; "": data parallel over every device
    c.sharding_rules = "auto"
    c.tokenizer_path = placeholder(str)  # None: the tokenizer shipped with rtc
    c.data_dir = placeholder(str)  # None: WORKDIR/data
    c.pretrained = placeholder(str)  # a HF model directory or llama2.c .bin to start from (README)
    c.pretrained_tokenizer = placeholder(str)  # None: the checkpoint's own
    c.pretrained_template = placeholder(str)  # None: the family's chat template
    c.task = task("arithmetic")
    c.model = model_fields("cpu-small")
    c.eval = ml_collections.ConfigDict(
        dict(
            num_examples=512,
            batch_size=128,
            max_new_tokens=96,
            temperature=0.7,
            top_p=1.0,
            reasoning_effort=placeholder(str),  # low / medium / high: a share of max_new_tokens for thinking
            budget_tokens=placeholder(int),  # at most this many thinking tokens, then </think> is forced
            min_thinking_tokens=0,  # > 0: an earlier </think> is replaced by the cue (s1 budget forcing)
            cue="Wait,",
            cache_phases=1,  # > 1: grow the KV cache in phases (faster decoding, one compile per phase)
            num_traces=3,
        )
    )
    return c


def sft() -> ml_collections.ConfigDict:
    """The quickstart's SFT block: 600 steps of 32 packed rows of 128 tokens."""
    return training(pack=True)  # pack: several examples per row


def shrink(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The `:tiny` variant: the test-tiny model, a few steps and problems, to check a setup in seconds."""
    c.task.update(num_train=64, num_test=16)
    c.model.preset = "test-tiny"
    c.eval.update(num_examples=8, batch_size=8, max_new_tokens=48, num_traces=1)
    if "sft" in c:
        c.sft.update(batch_size=8, num_steps=4, warmup_steps=1, log_every=2, checkpoint_every=2)
    return c


def variants(arg: str, known: set[str], name: str) -> set[str]:
    """The `_`-joined parts of a config argument, each checked against `known`."""
    parts = set(arg.split("_")) if arg else set()
    if parts - known:
        raise ValueError(f"unknown {name} variant {arg!r}; known parts: {', '.join(sorted(known))}")
    return parts
