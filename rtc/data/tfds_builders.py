"""TFDS builders for the rtc tasks, prepared locally as ArrayRecord and read with random access.

`load(task, split, data_dir)` prepares `<data_dir>/<task>/<config>/<version>/` on first use and
returns a random-access sequence of records with `str` values (`as_data_source()`, no TensorFlow).
Records keep generation order (`disable_shuffling=True`), so index `i` is the generator's `i`-th
record. Prepared data is keyed by task, config name and `VERSION`: bump `VERSION` when a generator
changes. The builders skip TFDS's global name registry (they are not meant for `tfds.builder`).
"""

import collections.abc
import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

import jax
import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from jax.experimental import multihost_utils

from rtc.data import arithmetic, countdown, gsm8k, math500
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


class _FileBuilder(_TaskBuilder, skip_registration=True):
    """A task read from jsonl files under `source_dir` (default `rtc.data.paths.data_root()`)."""

    def __init__(self, *, source_dir: str | Path | None = None, **kwargs):
        self._source_dir = source_dir
        super().__init__(**kwargs)

    def _records(self, split: str) -> Iterator[dict]:
        return self.GENERATE(split, self._source_dir)


class Gsm8k(_FileBuilder, skip_registration=True):
    """GSM8K (`rtc.data.gsm8k`)."""

    name = "gsm8k"
    SPLITS = gsm8k.SPLITS
    GENERATE = staticmethod(gsm8k.generate)


class Math500(_FileBuilder, skip_registration=True):
    """MATH-500 (`rtc.data.math500`), test split only."""

    name = "math500"
    SPLITS = math500.SPLITS
    GENERATE = staticmethod(math500.generate)


BUILDERS = {builder.name: builder for builder in (Arithmetic, Countdown, Gsm8k, Math500)}
_DEFAULT_LEVELS = {"arithmetic": arithmetic.LEVELS, "countdown": countdown.LEVELS}


def make_builder(task_name: str, data_dir: str | Path, **task_kwargs) -> tfds.core.DatasetBuilder:
    """The builder of `task_name` writing under `data_dir`.

    Synthetic tasks take `num_train`, `num_test`, `seed`, `levels`; file tasks take `source_dir`.
    """
    if task_name not in BUILDERS:
        raise KeyError(f"unknown task {task_name!r}; known tasks: {', '.join(BUILDERS)}")
    builder_class = BUILDERS[task_name]
    common = {"data_dir": str(data_dir), "file_format": FILE_FORMAT}
    if issubclass(builder_class, _SyntheticBuilder):
        default = builder_class.BUILDER_CONFIGS[0]
        config = synthetic_config(
            task_kwargs.pop("num_train", default.num_train),
            task_kwargs.pop("num_test", default.num_test),
            task_kwargs.pop("seed", default.seed),
            task_kwargs.pop("levels", _DEFAULT_LEVELS[task_name]),
        )
        if task_kwargs:
            raise TypeError(f"unexpected arguments for {task_name}: {sorted(task_kwargs)}")
        # TFDS refuses a config object equal to, but not identical with, a predefined one.
        predefined = {known.name for known in builder_class.BUILDER_CONFIGS}
        return builder_class(config=config.name if config.name in predefined else config, **common)
    return builder_class(**common, **task_kwargs)


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
    """Random access to a prepared split, each record decoded by `decode_record`."""

    def __init__(self, source):
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(f"record {index} out of range for {len(self)} records")
        return decode_record(self._source[index % len(self)])


def load(task_name: str, split: str, data_dir: str | Path, **task_kwargs) -> DecodedSource:
    """Split `split` of `task_name` as a random-access sequence of dicts, preparing it if missing.

    With several processes, `data_dir` must be shared by all of them: process 0 prepares and the
    others wait at a barrier until it is done, so no two processes write the same files.
    """
    builder = make_builder(task_name, data_dir, **task_kwargs)
    if split not in builder.SPLITS:
        raise ConfigError(f"task {task_name!r} has splits {builder.SPLITS}, not {split!r}")
    if jax.process_index() == 0 and not builder.is_prepared():
        builder.download_and_prepare()
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("rtc-data-prepared")
        builder = make_builder(task_name, data_dir, **task_kwargs)  # re-reads what process 0 wrote
    return DecodedSource(builder.as_data_source(split=split))


def task_records(config, split: str, workdir: str | Path) -> DecodedSource:
    """Split `split` of the run's `config.task`, prepared under `config.data_dir` (default `WORKDIR/data`)."""
    kwargs = {k: v for k, v in config.task.items() if k != "name"}
    if "levels" in kwargs:
        kwargs["levels"] = tuple(kwargs["levels"])
    data_dir = Path(config.data_dir) if config.data_dir else Path(workdir) / "data"
    return load(config.task.name, split, data_dir, **kwargs)
