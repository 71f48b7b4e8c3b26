"""The task registry: `get_task(name)` gives a task's splits, record source and answer checker."""

import dataclasses
from collections.abc import Callable, Iterator

from rtc.data import answers, arithmetic, countdown, gsm8k, math500


@dataclasses.dataclass(frozen=True)
class Task:
    """A reasoning task.

    `generate(split, **kwargs)` yields common records (question, steps, step_values, answer,
    difficulty, meta); `is_correct(predicted_answer, record)` checks an extracted answer.
    """

    name: str
    splits: tuple[str, ...]
    generate: Callable[..., Iterator[dict]]
    is_correct: Callable[[str | None, dict], bool]
    synthetic: bool


def _gsm8k_correct(predicted: str | None, example: dict) -> bool:
    return answers.numbers_equal(predicted, example["answer"])


def _math500_correct(predicted: str | None, example: dict) -> bool:
    return answers.math_equal(predicted, example["answer"])


_TASKS = {
    task.name: task
    for task in (
        Task("arithmetic", ("train", "test"), arithmetic.generate, arithmetic.is_correct, synthetic=True),
        Task("countdown", ("train", "test"), countdown.generate, countdown.is_correct, synthetic=True),
        Task("gsm8k", gsm8k.SPLITS, gsm8k.generate, _gsm8k_correct, synthetic=False),
        Task("math500", math500.SPLITS, math500.generate, _math500_correct, synthetic=False),
    )
}
TASK_NAMES = tuple(_TASKS)


def get_task(name: str) -> Task:
    """The registered task `name`; unknown names raise `KeyError` listing the known ones."""
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)}")
    return _TASKS[name]
