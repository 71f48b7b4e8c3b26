"""A checker: the policy's network trained further on the task (experiments/configs/checker.py), read back
as a generative verifier (`self_check.checker_scores`, `checker_step_rewards`). Loaded from its run
directory with the checks that it is an SFT run reading the policy's tokens."""

import json

import ml_collections
from etils import epath

from rtc.checkpoint import Checkpointer
from rtc.errors import ConfigError
from rtc.pretrained.run_model import load_model

RUN_CONFIG = "config.json"  # the resolved config every run writes to its workdir


def load_checker(workdir, tokenizer_path, pretrained, tokenizer) -> tuple:
    """`(model, params)` of the checker in `workdir`: an SFT run trained with the policy's
    `tokenizer_path` and `pretrained` settings and `tokenizer`'s vocabulary; anything else is a
    ConfigError naming what differs."""
    path = epath.Path(workdir) / RUN_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {workdir} is not an rtc run directory")
    run = ml_collections.ConfigDict(json.loads(path.read_text()))
    if run.mode != "sft":
        raise ConfigError(
            f"checker_workdir {workdir} is a {run.mode!r} run; a checker is an SFT run "
            "(experiments/configs/checker.py)"
        )
    for field, value in (("tokenizer_path", tokenizer_path), ("pretrained", pretrained)):
        if run.get(field) != value:
            raise ConfigError(
                f"checker_workdir {workdir} was trained with {field}={run.get(field)!r}, "
                f"this run uses {value!r}: the checker must read the policy's tokens"
            )
    checker_tokenizer, model, _ = load_model(run)
    if checker_tokenizer.vocab_size != tokenizer.vocab_size:
        raise ConfigError(
            f"checker_workdir {workdir} has a vocabulary of {checker_tokenizer.vocab_size}, "
            f"the policy {tokenizer.vocab_size}"
        )
    with Checkpointer(epath.Path(workdir) / "checkpoints") as checkpointer:
        params = checkpointer.restore_params()
    return model, params
