"""The rtc command line: `python -m rtc.main --config=experiments/configs/NAME.py[:arg] --workdir=DIR`.

Any config field can be overridden with `--config.key=value` (e.g. `--config.train.num_steps=10`);
an unknown key or config file is an error that names it, and so is a damaged checkpoint, a bad data
file or tokenizer model, or a setting the run rejects (one line `rtc: ...`, no traceback).
`--distributed` makes each process of a multi-process run (one per host, every one running the same
command) call `jax.distributed.initialize()`, which finds the coordinator, process count and id on a
TPU pod and on Slurm, Open MPI and Kubernetes clusters; elsewhere it is a one-line error. Or name the
run explicitly on every process: `--coordinator=HOST:PORT --num_processes=N --process_id=I` (on the
CPU, collectives then go through gloo).

`python -m rtc.main --help` (or no arguments) lists the modes and the config files.
"""

import ast
import importlib
import logging
import sys
from pathlib import Path

import jax
from absl import app, flags
from ml_collections import config_flags

from rtc.checkpoint import CheckpointError
from rtc.data.download import ChecksumError
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
RUN_ERRORS = (
    CheckpointError,
    DataFormatError,
    TokenizerModelError,
    FileNotFoundError,
    ConfigError,
    ChecksumError,
)

# config.mode -> ("module:function" with `function(config, workdir)`, what it does); imported only when chosen.
MODES = {
    "sft": ("rtc.recipes:sft_recipe", "supervised fine-tuning on reasoning traces, then held-out evaluation"),
    "grpo": ("rtc.recipes:rl_recipe", "GRPO after an SFT cold start, then held-out evaluation"),
    "ppo": ("rtc.recipes:rl_recipe", "PPO with a learned critic, then held-out evaluation"),
    "orm": (
        "rtc.recipes:reward_model_recipe",
        "outcome reward model: labelled solutions, training, evaluation",
    ),
    "prm": ("rtc.recipes:reward_model_recipe", "process reward model: step labels, training, evaluation"),
    "search": (
        "rtc.analysis.test_time_scaling:run",
        "test-time scaling: best-of-N, voting, beam, DVTS, MCTS",
    ),
    "verifiers": ("rtc.analysis.verifier_scaling:run", "PRM vs ORM vs majority vote as N grows"),
    "export": ("rtc.api:export_run", "a finished run as a Hugging Face folder (safetensors + tokenizer)"),
    "serve": ("rtc.serve.app:serve_run", "an OpenAI-compatible endpoint (chat completions) for a model"),
}
CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"
HELP_FLAGS = ("-h", "--help", "-?", "--helpshort")


def mode_runner(mode: str):
    """The run function registered for `mode`."""
    module, function = MODES[mode][0].split(":")
    return getattr(importlib.import_module(module), function)


def config_files(folder: Path = CONFIGS) -> dict[str, str]:
    """`{file name: first line of its docstring}` of every config (a module with `get_config`) in `folder`,
    read without importing them."""
    found = {}
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text())
        if any(isinstance(node, ast.FunctionDef) and node.name == "get_config" for node in tree.body):
            found[path.name] = ((ast.get_docstring(tree) or "").strip().splitlines() or [""])[0]
    return found


def usage() -> str:
    """What `--help` prints: the command, the modes, the config files, the flags."""
    lines = [
        "usage: python -m rtc.main --config=experiments/configs/NAME.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...]",
        "",
        "A config file names the mode and every setting; --config.KEY=VALUE overrides one",
        "(e.g. --config.sft.num_steps=10). ARG picks a variant (e.g. quickstart.py:tiny, a seconds-long check).",
        "",
        "modes (a config's `mode` field):",
        *(f"  {mode:<10} {description}" for mode, (_, description) in MODES.items()),
        "",
        "configs (experiments/configs):",
        *(f"  {name:<19} {line}" for name, line in config_files().items()),
        "",
        "flags:",
        "  --config=FILE[:ARG]   the experiment config",
        "  --workdir=DIR         data, checkpoints, metrics and results of the run",
        "  --distributed         join a multi-process run found by jax.distributed.initialize()",
        "  --coordinator=HOST:PORT --num_processes=N --process_id=I   join one named explicitly",
        "  --helpfull            every flag, absl's and jax's included",
    ]
    return "\n".join(lines) + "\n"


def print_usage_and_exit(argv: list[str]) -> None:
    """`--help` / `-h`: the usage on stdout, exit 0; no arguments at all: the usage on stderr, exit 2."""
    if len(argv) <= 1:
        sys.stderr.write(usage())
        sys.exit(2)
    if any(arg in HELP_FLAGS for arg in argv[1:]):
        sys.stdout.write(usage())
        sys.exit(0)


def main(argv):
    if len(argv) > 1:
        sys.exit(
            f"rtc: unexpected arguments {' '.join(argv[1:])} (flags take the form --name=value; see --help)"
        )
    explicit = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    if any(v is not None for v in explicit):  # before anything touches a device
        if any(v is None for v in explicit):
            sys.exit("rtc: --coordinator, --num_processes and --process_id go together")
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
        sys.exit(f"rtc: unknown mode {config.mode} in the config; known: {', '.join(MODES)}")
    try:
        mode_runner(config.mode)(config, _WORKDIR.value)
    except NonFiniteError as error:
        sys.exit(f"stopped: {error}; the last good checkpoint in {_WORKDIR.value}/checkpoints is kept")
    except RUN_ERRORS as error:
        sys.exit("rtc: " + " ".join(str(error).split()))


def unknown_key_message(error: Exception, argv: list[str]) -> str:
    """One plain line naming the override of a missing config field (ml_collections raises a KeyError
    whose text is a quoted key and maybe a "Did you mean" line, or an AttributeError naming the lookup)."""
    while error.args and isinstance(error.args[0], Exception):  # an AttributeError wrapping the KeyError
        error = error.args[0]
    text = str(error.args[0]) if error.args else str(error)
    first, *rest = text.strip().splitlines() or [""]
    name = first.strip("\"'")
    overrides = [a.split("=")[0].removeprefix("--config.") for a in argv if a.startswith("--config.")]
    given = [key for key in overrides if name in key.split(".") or key in text] or [name]
    hint = next((line for line in rest if line.startswith("Did you mean")), "")
    if hint:  # 'Did you mean "num_steps" instead of "num_step"?' -> 'did you mean num_steps?'
        hint = "; did you mean " + hint.split('"')[1] + "?"
    return f"rtc: unknown config key {given[0]}{hint} (see the config file for the known keys)"


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with config mistakes reported in one line instead of a traceback."""
    print_usage_and_exit(argv)
    try:
        remaining = flags.FLAGS(argv)
        _CONFIG.value.keys()  # ml_collections defers a config file's load error to the first access
        return remaining
    except (AttributeError, KeyError) as error:  # ml_collections: an override of a missing field
        sys.exit(unknown_key_message(error, argv))
    except (OSError, ValueError, TypeError, flags.Error) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        details = [line for line in lines[1:] if "No such file" in line or "Error:" in line] or lines[1:][-1:]
        sys.exit(" ".join(["rtc: bad command line:", lines[0], *details]))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
