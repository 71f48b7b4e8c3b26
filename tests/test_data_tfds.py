"""Tests for the TFDS builders: local ArrayRecord preparation and random access equal the generators."""

import json

import pytest

from rtc.data import arithmetic, countdown, gsm8k, tfds_builders


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


def test_gsm8k_builder_reads_source_dir(tmp_path):
    source = tmp_path / "source"
    (source / "gsm8k").mkdir(parents=True)
    lines = [
        json.dumps({"question": f"q{i}", "answer": f"{i}+1 = <<{i}+1={i + 1}>>{i + 1}\n#### {i + 1}"})
        for i in range(3)
    ]
    for split in ("train", "test"):
        (source / "gsm8k" / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    loaded = tfds_builders.load("gsm8k", "test", tmp_path / "prepared", source_dir=source)
    assert list(loaded) == list(gsm8k.generate("test", data_dir=source))
    assert loaded[2]["steps"] == ["2+1 = 3"] and loaded[2]["answer"] == "3"


def test_load_rejects_unknown_task_split_and_arguments(tmp_path):
    with pytest.raises(KeyError, match="known tasks"):
        tfds_builders.load("mmlu", "test", tmp_path)
    with pytest.raises(ValueError, match="has splits"):
        tfds_builders.load("math500", "train", tmp_path)
    with pytest.raises(TypeError, match="unexpected arguments"):
        tfds_builders.load("arithmetic", "train", tmp_path, num_examples=3)


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
