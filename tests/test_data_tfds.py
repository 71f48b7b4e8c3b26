"""Tests for the TFDS builders: local ArrayRecord preparation and random access equal the generators."""

import json

import pytest

from rtc.data import arithmetic, countdown, gsm8k, tasks, tfds_builders
from rtc.errors import ConfigError


def test_arithmetic_prepares_array_record_and_matches_generator(tmp_path):
    kwargs = {"num_train": 60, "num_test": 20, "seed": 5, "levels": (1, 3)}
    train = tfds_builders.load("arithmetic", "train", tmp_path, **kwargs)
    assert len(train) == 60
    assert list(train) == list(arithmetic.generate("train", 60, seed=5, levels=(1, 3)))
    assert train[-1] == train[59] and train[2:4] == [train[2], train[3]]
    with pytest.raises(IndexError):
        train[60]
    files = sorted(path.name for path in tmp_path.rglob("*.array_record-*"))
    assert files == [
        "arithmetic-test.array_record-00000-of-00001",
        "arithmetic-train.array_record-00000-of-00001",
    ]
    record = train[0]
    assert all(isinstance(record[key], str) for key in ("question", "answer", "meta"))
    assert all(isinstance(step, str) for step in record["steps"] + record["step_values"])
    assert isinstance(record["difficulty"], int)


def test_second_load_does_not_regenerate(tmp_path, monkeypatch):
    first = tfds_builders.load("countdown", "test", tmp_path, num_train=10, num_test=6, seed=1)
    assert list(first) == list(countdown.generate("test", 6, seed=1))

    def fail(*args, **kwargs):
        raise AssertionError("regenerated")

    monkeypatch.setattr(tfds_builders.Countdown, "GENERATE", staticmethod(fail))
    assert list(tfds_builders.load("countdown", "test", tmp_path, num_train=10, num_test=6, seed=1)) == list(
        first
    )
    with pytest.raises(AssertionError, match="regenerated"):
        tfds_builders.load("countdown", "test", tmp_path, num_train=10, num_test=6, seed=2)


def write_gsm8k(source, count: int) -> None:
    """`count` one-step problems `q<i>` with answer i + 1, as both splits of `source/gsm8k`."""
    (source / "gsm8k").mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"question": f"q{i}", "answer": f"{i}+1 = <<{i}+1={i + 1}>>{i + 1}\n#### {i + 1}"})
        for i in range(count)
    ]
    for split in ("train", "test"):
        (source / "gsm8k" / f"{split}.jsonl").write_text("\n".join(lines) + "\n")


def test_gsm8k_builder_reads_source_dir(tmp_path):
    source = tmp_path / "source"
    write_gsm8k(source, 3)
    loaded = tfds_builders.load("gsm8k", "test", tmp_path / "prepared", source_dir=source)
    assert list(loaded) == list(gsm8k.generate("test", data_dir=source))
    assert loaded[2]["steps"] == ["2+1 = 3"] and loaded[2]["answer"] == "3"
    limited = tfds_builders.load("gsm8k", "train", tmp_path / "prepared", source_dir=source, num_train=2)
    assert [r["question"] for r in limited] == ["q0", "q1"]


def test_other_source_files_are_prepared_apart(tmp_path):
    source = tmp_path / "source"
    write_gsm8k(source, 3)
    assert len(tfds_builders.load("gsm8k", "test", tmp_path / "prepared", source_dir=source)) == 3
    write_gsm8k(source, 5)  # the same folder with other files: not served the stale copy
    assert len(tfds_builders.load("gsm8k", "test", tmp_path / "prepared", source_dir=source)) == 5
    assert len(list((tmp_path / "prepared" / "gsm8k").iterdir())) == 2


def test_math500_train_split_is_held_out_by_question_hash(tmp_path):
    source = tmp_path / "source"
    (source / "math500").mkdir(parents=True)
    raw = lambda i: {
        "problem": f"p{i}",
        "solution": f"So \\boxed{{{i}}}.",
        "answer": str(i),
        "subject": "Algebra",
        "level": 1,
        "unique_id": f"test/algebra/{i}.json",
    }
    (source / "math500" / "test.jsonl").write_text("".join(json.dumps(raw(i)) + "\n" for i in range(6)))
    load = lambda split, **options: [
        r["question"] for r in tfds_builders.load("math500", split, tmp_path, source_dir=source, **options)
    ]
    assert load("test") == ["p0", "p1", "p2", "p3", "p4", "p5"]  # num_test=0: all of it, in file order
    # sha256("p<i>") begins 169b (p0), f645 (p1), 3946 (p2), 43bb (p3), ab71 (p4), 536c (p5).
    assert tfds_builders.question_order(["p0", "p1", "p2", "p3", "p4", "p5"]) == [0, 2, 3, 5, 4, 1]
    assert load("test", num_test=2) == ["p0", "p2"]
    assert load("train", num_test=2) == ["p3", "p5", "p4", "p1"]
    assert load("train", num_test=2, num_train=3) == ["p3", "p5", "p4"]
    with pytest.raises(ConfigError, match="publishes only a test split: set task.num_test"):
        load("train")
    with pytest.raises(ConfigError, match="holds out all 6 math500 problems"):
        load("train", num_test=6)


def test_load_rejects_unknown_task_split_and_options(tmp_path):
    with pytest.raises(
        ConfigError, match="unknown task 'mmlu'; known tasks: arithmetic, countdown, gsm8k, math500"
    ):
        tfds_builders.load("mmlu", "test", tmp_path)
    with pytest.raises(ConfigError, match="has splits"):
        tfds_builders.load("gsm8k", "valid", tmp_path)
    with pytest.raises(ConfigError, match="takes num_train, num_test, seed, levels, not num_examples"):
        tfds_builders.load("arithmetic", "train", tmp_path, num_examples=3)
    with pytest.raises(ConfigError, match="takes source_dir, num_train, num_test, not levels"):
        tfds_builders.load("gsm8k", "train", tmp_path, levels=(1, 2))
    with pytest.raises(ConfigError, match="task.num_test=-1 must be >= 0"):
        tfds_builders.load("gsm8k", "test", tmp_path, num_test=-1)


def test_task_options_fill_defaults_and_keep_given_values():
    assert tasks.task_options({"name": "countdown", "num_train": 5, "levels": [2]}) == {
        "num_train": 5,
        "num_test": 1_000,
        "seed": 0,
        "levels": (2,),
    }
    assert tasks.task_options({"name": "gsm8k", "source_dir": None}) == {
        "source_dir": None,
        "num_train": 0,
        "num_test": 0,
    }
    with pytest.raises(KeyError):  # an unknown task is also a lookup error
        tasks.get_task("gsm8kk")


def test_with_several_processes_only_process_zero_prepares(tmp_path, monkeypatch):
    kwargs = {"num_train": 10, "num_test": 4, "seed": 3}
    builder = lambda: tfds_builders.make_builder("countdown", tmp_path, **kwargs)
    barriers = []

    def process_zero_prepares_meanwhile(name):  # process 1 waits here while process 0 prepares
        barriers.append(name)
        assert not builder().is_prepared()
        builder().download_and_prepare()

    monkeypatch.setattr(tfds_builders.jax, "process_count", lambda: 2)
    monkeypatch.setattr(tfds_builders.jax, "process_index", lambda: 1)
    monkeypatch.setattr(tfds_builders.multihost_utils, "sync_global_devices", process_zero_prepares_meanwhile)
    loaded = tfds_builders.load("countdown", "test", tmp_path, **kwargs)
    assert barriers == ["rtc-data-prepared"]
    assert list(loaded) == list(countdown.generate("test", 4, seed=3))

    def prepared_before_the_barrier(name):
        barriers.append(name)
        assert builder().is_prepared()

    kwargs["seed"] = 4
    monkeypatch.setattr(tfds_builders.jax, "process_index", lambda: 0)
    monkeypatch.setattr(tfds_builders.multihost_utils, "sync_global_devices", prepared_before_the_barrier)
    loaded = tfds_builders.load("countdown", "test", tmp_path, **kwargs)
    assert barriers == ["rtc-data-prepared"] * 2
    assert list(loaded) == list(countdown.generate("test", 4, seed=4))
