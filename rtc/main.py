"""The rtc command line: `python -m rtc.main --config=experiments/configs/NAME.py[:arg] --workdir=DIR`.

Any config field can be overridden with `--config.key=value` (e.g. `--config.train.num_steps=10`);
an unknown key or config file is an error that names it, and so is a damaged checkpoint, a bad data
file or tokenizer model, or a setting the run rejects (one line `rtc: ...`, no traceback).
`--distributed` makes each process of a multi-process run (one per host, every one running the same
command) call `jax.distributed.initialize()`, which finds the coordinator, process count and id on a
TPU pod and on Slurm, Open MPI and Kubernetes clusters; elsewhere it is a one-line error. Or name the
run explicitly on every process: `--coordinator=HOST:PORT --num_processes=N --process_id=I` (on the
CPU, collectives then go through gloo).
"""

import importlib
import logging
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

from rtc.checkpoint import CheckpointError
from rtc.data.jsonl import DataFormatError
from rtc.errors import ConfigError
from rtc.parallel import distributed
from rtc.metrics import NonFiniteError
from rtc.tokenizer.tokenizer import TokenizerModelError

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (NAME.py[:arg]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for data, checkpoints and metrics.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() first (one process per host)."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator", None, "HOST:PORT of process 0, to join a multi-process run without auto-detection."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run (with --coordinator).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0 .. num_processes - 1.")
flags.mark_flags_as_required(["config", "workdir"])

# Errors whose message says what to fix; a traceback would only bury it. (DataFormatError is a
# ValueError; FileNotFoundError covers a missing data file or data root.)
RUN_ERRORS = (CheckpointError, DataFormatError, TokenizerModelError, FileNotFoundError, ConfigError)

# config.mode -> "module:function" with `function(config, workdir)`; imported only when chosen.
MODES = {
    "sft": "rtc.recipes:sft_recipe",
    "grpo": "rtc.recipes:rl_recipe",
    "ppo": "rtc.recipes:rl_recipe",
    "orm": "rtc.recipes:reward_model_recipe",
    "prm": "rtc.recipes:reward_model_recipe",
    "search": "rtc.analysis.test_time_scaling:run",
    "verifiers": "rtc.analysis.verifier_scaling:run",
}


def mode_runner(mode: str):
    """The run function registered for `mode`."""
    module, function = MODES[mode].split(":")
    return getattr(importlib.import_module(module), function)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    explicit = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    if any(v is not None for v in explicit):  # before anything touches a device
        if any(v is None for v in explicit):
            raise app.UsageError("--coordinator, --num_processes and --process_id go together")
        try:
            distributed.initialize(*explicit)
        except ConfigError as error:
            sys.exit("rtc: " + " ".join(str(error).split()))
    elif _DISTRIBUTED.value:
        try:
            jax.distributed.initialize()
        except (RuntimeError, ValueError) as error:
            sys.exit(f"rtc: --distributed found no multi-process environment to join: {error}")
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.ERROR)  # orbax and tfds log every file they touch
    config = _CONFIG.value
    if config.mode not in MODES:
        raise app.UsageError(f"unknown mode {config.mode!r}; known: {sorted(MODES)}")
    try:
        mode_runner(config.mode)(config, _WORKDIR.value)
    except NonFiniteError as error:
        sys.exit(f"stopped: {error}; the last good checkpoint in {_WORKDIR.value}/checkpoints is kept")
    except RUN_ERRORS as error:
        sys.exit("rtc: " + " ".join(str(error).split()))


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with config mistakes reported in one line instead of a traceback."""
    try:
        remaining = flags.FLAGS(argv)
        _CONFIG.value.keys()  # ml_collections defers a config file's load error to the first access
        return remaining
    except (AttributeError, KeyError) as error:  # ml_collections: an override of a missing field
        name = str(error).strip("\"'")
        given = [a.split("=")[0].removeprefix("--") for a in argv if a.startswith("--config.") and name in a]
        sys.exit(
            f"rtc: unknown config key {given[0] if given else name!r} (see the config file for the known keys)"
        )
    except (OSError, ValueError, TypeError, flags.Error) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        details = [line for line in lines[1:] if "No such file" in line or "Error:" in line] or lines[1:][-1:]
        sys.exit(" ".join(["rtc: bad command line:", lines[0], *details]))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
