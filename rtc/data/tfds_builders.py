"""TFDS builders for the rtc tasks, prepared locally as ArrayRecord and read with random access.

`load(task, split, data_dir, **options)` prepares `<data_dir>/<task>/<config>/<version>/` on first use
and returns a random-access sequence of records with `str` values (`as_data_source()`, no TensorFlow).
Records keep generation order (`disable_shuffling=True`), so index `i` is the generator's `i`-th
record. Prepared data is keyed by task, config name and `VERSION`: bump `VERSION` when a generator
changes. A generated task's config is its options (sizes, seed, levels); a file task's is the sha256 of
its files, which are prepared whole: its `num_train` / `num_test` options (and MATH-500's held-out
train split) are views of the prepared data (`split_view`). The builders skip TFDS's global name
registry (they are not meant for `tfds.builder`).
"""

import collections.abc
import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import jax
import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from jax.experimental import multihost_utils

from rtc.data import arithmetic, countdown, download, gsm8k, math500, tasks
from rtc.errors import ConfigError

VERSION = "1.1.0"  # 1.1.0: arithmetic levels grow operand size too (LEVEL_SPECS)
FILE_FORMAT = "array_record"


def features() -> tfds.features.FeaturesDict:
    """The common task record as TFDS features."""
    text_list = tfds.features.Sequence(tfds.features.Text())
    return tfds.features.FeaturesDict(
        {
            "question": tfds.features.Text(),
            "steps": text_list,
            "step_values": text_list,
            "answer": tfds.features.Text(),
            "difficulty": tfds.features.Scalar(dtype=np.int32),
            "meta": tfds.features.Text(),
        }
    )


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
    """Size, seed and difficulty levels of a generated task; the config name encodes all four."""

    num_train: int = 0
    num_test: int = 0
    seed: int = 0
    levels: tuple[int, ...] = ()


def synthetic_config(num_train: int, num_test: int, seed: int, levels: Sequence[int]) -> SyntheticConfig:
    """A config named e.g. `train20000_test1000_seed0_levels1-2-3-4-5`."""
    levels = tuple(int(level) for level in levels)
    name = f"train{num_train}_test{num_test}_seed{seed}_levels{'-'.join(map(str, levels))}"
    return SyntheticConfig(name=name, num_train=num_train, num_test=num_test, seed=seed, levels=levels)


class _TaskBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared `_info` and split generation; subclasses say which splits and records."""

    VERSION = tfds.core.Version(VERSION)
    SPLITS: tuple[str, ...] = ("train", "test")

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS 4.9.10 otherwise lazily imports `importlib_resources` (declared only for Python < 3.9)
        # for builders defined inside a package, and fails without it.
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(builder=self, features=features(), disable_shuffling=True)

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: records are generated or read from local files.
        return {split: self._generate_examples(split) for split in self.SPLITS}

    def _generate_examples(self, split: str) -> Iterator[tuple[int, dict]]:
        yield from enumerate(self._records(split))

    def _records(self, split: str) -> Iterator[dict]:
        raise NotImplementedError


class _SyntheticBuilder(_TaskBuilder, skip_registration=True):
    """A generated task: `generate(split, num_examples, seed, levels)` from the config."""

    def _records(self, split: str) -> Iterator[dict]:
        config = self.builder_config
        num_examples = config.num_train if split == "train" else config.num_test
        return self.GENERATE(split, num_examples, config.seed, config.levels)


class Arithmetic(_SyntheticBuilder, skip_registration=True):
    """Multi-step integer arithmetic (`rtc.data.arithmetic`)."""

    name = "arithmetic"
    GENERATE = staticmethod(arithmetic.generate)
    BUILDER_CONFIGS = [synthetic_config(20_000, 1_000, 0, arithmetic.LEVELS)]


class Countdown(_SyntheticBuilder, skip_registration=True):
    """Countdown number puzzles (`rtc.data.countdown`)."""

    name = "countdown"
    GENERATE = staticmethod(countdown.generate)
    BUILDER_CONFIGS = [synthetic_config(20_000, 1_000, 0, countdown.LEVELS)]


@dataclasses.dataclass
class FileConfig(tfds.core.BuilderConfig):
    """The folder a file task is read from; the config name is the sha256 of the files read, so other
    files (a shorter copy, a newer release) are prepared apart instead of served stale."""

    source_dir: str = ""


class _FileBuilder(_TaskBuilder, skip_registration=True):
    """A task read as it is from the jsonl files under the config's `source_dir`."""

    def _records(self, split: str) -> Iterator[dict]:
        return self.GENERATE(split, self.builder_config.source_dir)


class Gsm8k(_FileBuilder, skip_registration=True):
    """GSM8K (`rtc.data.gsm8k`)."""

    name = "gsm8k"
    SPLITS = gsm8k.SPLITS
    GENERATE = staticmethod(gsm8k.generate)


class Math500(_FileBuilder, skip_registration=True):
    """MATH-500 (`rtc.data.math500`), as published: a test split only."""

    name = "math500"
    SPLITS = math500.SPLITS
    GENERATE = staticmethod(math500.generate)


BUILDERS = {builder.name: builder for builder in (Arithmetic, Countdown, Gsm8k, Math500)}


def source_root(task_name: str, source_dir: str | Path | None) -> Path:
    """The folder holding `<task>/<split>.jsonl`: `source_dir` as it is, else the data root's checked copy."""
    if source_dir:
        return Path(source_dir).expanduser()
    names = tuple(f"{split}.jsonl" for split in BUILDERS[task_name].SPLITS)
    return download.ensure(task_name, names).parent


def file_config(task_name: str, source_dir: str | Path | None) -> FileConfig:
    """A config named `sha256-<first 16 hex digits of the sha256 of the task's files>`."""
    root = source_root(task_name, source_dir)
    digest = hashlib.sha256()
    for split in BUILDERS[task_name].SPLITS:
        digest.update((root / task_name / f"{split}.jsonl").read_bytes())
    return FileConfig(name=f"sha256-{digest.hexdigest()[:16]}", source_dir=str(root))


def make_builder(task_name: str, data_dir: str | Path, **options) -> tfds.core.DatasetBuilder:
    """The builder of `task_name` writing under `data_dir`, for the task's `options` (`tasks.task_options`:
    checked, defaults filled in)."""
    options = tasks.task_options({"name": task_name, **options})
    builder_class = BUILDERS[task_name]
    common = {"data_dir": str(data_dir), "file_format": FILE_FORMAT}
    if issubclass(builder_class, _FileBuilder):
        return builder_class(config=file_config(task_name, options["source_dir"]), **common)
    config = synthetic_config(options["num_train"], options["num_test"], options["seed"], options["levels"])
    # TFDS refuses a config object equal to, but not identical with, a predefined one.
    predefined = {known.name for known in builder_class.BUILDER_CONFIGS}
    return builder_class(config=config.name if config.name in predefined else config, **common)


def decode_record(record: dict) -> dict:
    """TFDS output (bytes, lists of bytes, numpy ints) as plain `str` / `list[str]` / `int`."""

    def decode(value):
        if isinstance(value, bytes):
            return value.decode("utf-8")
        if isinstance(value, (list, tuple, np.ndarray)):
            return [decode(item) for item in value]
        if isinstance(value, np.integer):
            return int(value)
        return value

    return {key: decode(value) for key, value in record.items()}


class DecodedSource(collections.abc.Sequence):
    """Random access to a prepared split, each record decoded by `decode_record`; `indices` (default: all)
    picks and orders the records this view shows."""

    def __init__(self, source, indices: Sequence[int] | None = None):
        self._source = source
        self._indices = range(len(source)) if indices is None else indices

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(f"record {index} out of range for {len(self)} records")
        return decode_record(self._source[self._indices[index]])


def question_order(questions: Sequence[str]) -> list[int]:
    """Indices sorted by the sha256 of each question (ties by index): a fixed pseudo-random order that does
    not depend on the order of the file."""
    keys = [hashlib.sha256(question.encode("utf-8")).hexdigest() for question in questions]
    return sorted(range(len(questions)), key=lambda i: (keys[i], i))


def held_out_indices(task: tasks.Task, split: str, questions: Sequence[str], num_test: int) -> list[int]:
    """A `train_from_test` task's split, as indices into its published test split: the first `num_test`
    problems of `question_order` are the test split, the others the train split (in that order);
    `num_test` = 0 keeps the whole published test split, in file order, and leaves no train split."""
    if num_test == 0:
        if split == "train":
            raise ConfigError(
                f"task {task.name!r} publishes only a test split: set task.num_test to the number of its "
                f"{len(questions)} problems held out for testing, and the others form the train split"
            )
        return list(range(len(questions)))
    if num_test >= len(questions):
        raise ConfigError(
            f"task.num_test={num_test} holds out all {len(questions)} {task.name} problems: "
            "nothing is left to train on; lower it"
        )
    order = question_order(questions)
    return order[:num_test] if split == "test" else order[num_test:]


def split_view(task_name: str, split: str, source, options: dict) -> DecodedSource:
    """Split `split` of a prepared task: a file task's limited to `num_train` / `num_test` records (0: all),
    a `train_from_test` task's carved out of its test split (`held_out_indices`)."""
    task = tasks.get_task(task_name)
    if task.synthetic:
        return DecodedSource(source)
    indices = range(len(source))
    if task.train_from_test:
        questions = [decode_record(source[i])["question"] for i in indices]
        indices = held_out_indices(task, split, questions, options["num_test"])
    limit = options[f"num_{split}"] if not (task.train_from_test and split == "test") else 0
    return DecodedSource(source, indices[:limit] if limit else indices)


def load(task_name: str, split: str, data_dir: str | Path, **options) -> DecodedSource:
    """Split `split` of `task_name` as a random-access sequence of dicts, preparing it if missing.

    `options`: the task's (`rtc.data.tasks`). With several processes, `data_dir` must be shared by all of
    them: process 0 prepares and the others wait at a barrier until it is done, so no two processes write
    the same files.
    """
    task = tasks.get_task(task_name)
    splits = ("train", "test") if task.train_from_test else task.splits
    if split not in splits:
        raise ConfigError(f"task {task_name!r} has splits {splits}, not {split!r}")
    options = tasks.task_options({"name": task_name, **options})
    builder = make_builder(task_name, data_dir, **options)
    if jax.process_index() == 0 and not builder.is_prepared():
        builder.download_and_prepare()
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("rtc-data-prepared")
        builder = make_builder(task_name, data_dir, **options)  # re-reads what process 0 wrote
    source_split = "test" if task.train_from_test else split
    return split_view(task_name, split, builder.as_data_source(split=source_split), options)


def task_records(config, split: str, workdir: str | Path) -> DecodedSource:
    """Split `split` of the run's `config.task` (its name and options, `rtc.data.tasks.task_options`),
    prepared under `config.data_dir` (default `WORKDIR/data`)."""
    options = {key: value for key, value in config.task.items() if key != "name"}
    # epath keeps a bucket URL whole (pathlib would turn gs://B/run into the local path gs:/B/run)
    data_dir = epath.Path(config.data_dir) if config.data_dir else epath.Path(workdir) / "data"
    return load(config.task.name, split, data_dir, **options)
