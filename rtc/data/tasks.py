"""The task registry: `get_task(name)` gives a task's splits, options, record source and answer checker.

Each task declares the options its config block takes (`Task.options`); `task_options(block)` checks a
config's `task` block against them: an unknown task name, or a field the task does not take, is a
`ConfigError` naming the choices. The options:
- arithmetic, countdown (generated): `num_train`, `num_test` (problems per split), `seed`, `levels`
  (difficulty levels drawn from);
- gsm8k, math500 (files): `source_dir` (the folder holding `<task>/<split>.jsonl` as it is; None: the
  data root's checked copy, `rtc.data.download`), `num_train`, `num_test` (0: every record of the split).
  MATH-500 publishes only a test split: `num_test` > 0 holds that many of its problems out as the test
  split and the rest form the train split (a deterministic choice, by the sha256 of each question, so it
  does not depend on the file's order); `num_test` = 0 keeps all 500 as the test split (the benchmark)
  and there is no train split.
"""

import dataclasses
from collections.abc import Callable, Iterator, Mapping

from rtc.data import answers, arithmetic, countdown, gsm8k, math500
from rtc.errors import ConfigError


class UnknownTaskError(ConfigError, KeyError):
    """A task name that is not registered (a `ConfigError`, and a `KeyError` for lookups)."""

    __str__ = BaseException.__str__  # KeyError's would print the message quoted


@dataclasses.dataclass(frozen=True)
class Option:
    """One field of a task's config block: its default (None: unset) and type."""

    name: str
    default: object
    type: type


@dataclasses.dataclass(frozen=True)
class Task:
    """A reasoning task.

    `generate(split, ...)` yields common records (question, steps, step_values, answer, difficulty,
    meta); `is_correct(predicted_answer, record)` checks an extracted answer. `splits`: the splits the
    source publishes; `train_from_test`: the train split is carved out of the test split (`num_test`).
    """

    name: str
    splits: tuple[str, ...]
    generate: Callable[..., Iterator[dict]]
    is_correct: Callable[[str | None, dict], bool]
    synthetic: bool
    options: tuple[Option, ...]
    train_from_test: bool = False

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(option.name for option in self.options)


def synthetic_options(levels) -> tuple[Option, ...]:
    """20,000 train and 1,000 test problems of every level, seed 0."""
    return (
        Option("num_train", 20_000, int),
        Option("num_test", 1_000, int),
        Option("seed", 0, int),
        Option("levels", tuple(levels), tuple),
    )


FILE_OPTIONS = (Option("source_dir", None, str), Option("num_train", 0, int), Option("num_test", 0, int))


def _gsm8k_correct(predicted: str | None, example: dict) -> bool:
    return answers.numbers_equal(predicted, example["answer"])


def _math500_correct(predicted: str | None, example: dict) -> bool:
    return answers.math_equal(predicted, example["answer"])


_TASKS = {
    task.name: task
    for task in (
        Task(
            "arithmetic",
            ("train", "test"),
            arithmetic.generate,
            arithmetic.is_correct,
            synthetic=True,
            options=synthetic_options(arithmetic.LEVELS),
        ),
        Task(
            "countdown",
            ("train", "test"),
            countdown.generate,
            countdown.is_correct,
            synthetic=True,
            options=synthetic_options(countdown.LEVELS),
        ),
        Task("gsm8k", gsm8k.SPLITS, gsm8k.generate, _gsm8k_correct, synthetic=False, options=FILE_OPTIONS),
        Task(
            "math500",
            math500.SPLITS,
            math500.generate,
            _math500_correct,
            synthetic=False,
            options=FILE_OPTIONS,
            train_from_test=True,
        ),
    )
}
TASK_NAMES = tuple(_TASKS)


def get_task(name: str) -> Task:
    """The registered task `name`; an unknown name raises `UnknownTaskError` listing the known ones."""
    if name not in _TASKS:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)}")
    return _TASKS[name]


def task_options(block: Mapping) -> dict:
    """The options of task `block["name"]` from a config's task block: each given value, else the default
    (also for a given None). A field the task does not take is a `ConfigError`, even when None."""
    task = get_task(block["name"])
    given = {key: value for key, value in block.items() if key != "name"}
    foreign = sorted(set(given) - set(task.option_names))
    if foreign:
        raise ConfigError(
            f"task {task.name!r} takes {', '.join(task.option_names)}, not {', '.join(foreign)} "
            f"(a task block written for another task; start from a {task.name} config)"
        )
    options = {o.name: o.default if given.get(o.name) is None else given[o.name] for o in task.options}
    if "levels" in options:
        options["levels"] = tuple(int(level) for level in options["levels"])
    for name in ("num_train", "num_test"):
        if options[name] < 0:
            raise ConfigError(f"task.{name}={options[name]} must be >= 0")
    return options
