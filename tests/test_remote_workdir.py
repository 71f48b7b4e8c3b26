"""A run's workdir as a URL (`gs://bucket/run`): every file goes through `etils.epath`, offline.

`gs://` is served by an fsspec in-memory filesystem that, like GCS and S3, cannot open a file for
appending. Checkpoint arrays go through tensorstore, which cannot see that store: those tests check
that orbax receives the URL unchanged, and the end-to-end run keeps its checkpoints in a local folder.
"""

import importlib
import os
from pathlib import Path

import fsspec
import ml_collections
import numpy as np
import pytest
from etils import epath
from etils.epath import backend, gpath
from fsspec.implementations.memory import MemoryFileSystem

from rtc import recipes
from rtc.checkpoint import Checkpointer
from rtc.checkpoint import checkpointer as checkpointer_lib
from rtc.eval import traces
from rtc.metrics import MetricWriter, read_metrics
from rtc.rewards import labelled_data
from rtc.rewards import training as rm_training
from rtc.analysis import verifier_scaling
from rtc.train import loop
from test_metrics import read_events, scalars

RUN = "gs://bucket/run"


class ObjectStore(MemoryFileSystem):
    """An in-memory bucket (its own store, not `memory://`'s) that refuses appends, as GCS and S3 do."""

    store = {}
    pseudo_dirs = [""]

    def _open(self, path, mode="rb", **kwargs):
        if "a" in mode:
            raise NotImplementedError(f"object stores cannot append ({path})")
        return super()._open(path, mode, **kwargs)


def _reset_epath_caches():
    """epath caches one fsspec filesystem per scheme, and whether to use TensorFlow's gfile instead."""
    type(backend.fsspec_backend)._get_filesystem.cache_clear()
    gpath._is_tf_installed.cache_clear()


@pytest.fixture
def bucket(monkeypatch, tmp_path):
    """`gs://` (epath asks fsspec for "gcs") in memory for one test; the registry is restored after it.
    The test runs in `tmp_path`, so a path mangled into a local `gs:` folder would show there."""
    registry = importlib.import_module("fsspec.registry")  # the module: `fsspec.registry` is its mapping
    saved = {name: registry._registry.get(name) for name in ("gs", "gcs")}
    monkeypatch.setenv("EPATH_USE_TF", "false")  # with TensorFlow installed, epath would use its gfile
    monkeypatch.chdir(tmp_path)
    for name in saved:
        fsspec.register_implementation(name, ObjectStore, clobber=True)
    _reset_epath_caches()
    yield ObjectStore.store
    ObjectStore.store.clear()
    ObjectStore.pseudo_dirs[:] = [""]
    for name, implementation in saved.items():
        if implementation is None:
            registry._registry.pop(name, None)
        else:
            fsspec.register_implementation(name, implementation, clobber=True)
    _reset_epath_caches()
    assert not (tmp_path / "gs:").exists()


def download_events(remote: epath.Path, local: Path) -> list:
    """The TensorBoard events of a remote `tb/` folder, read from a local copy."""
    local.mkdir()
    for path in remote.iterdir():
        (local / path.name).write_bytes(path.read_bytes())
    return read_events(local)


def test_gs_goes_to_the_object_store_and_refuses_appends(bucket):
    (epath.Path(RUN) / "a.txt").write_text("x")
    assert list(bucket) == [f"{RUN}/a.txt"]
    with pytest.raises(NotImplementedError, match="cannot append"):
        epath.Path(RUN, "a.txt").open("a")


def test_metric_writer_uploads_at_most_every_push_interval_and_on_flush(bucket):
    writer = MetricWriter(RUN, enabled=True, progress=False, push_every_s=3600)
    writer.write(1, {"loss": 2.0})
    writer.write(2, {"loss": 1.0})  # within the interval: staged, not copied
    assert read_metrics(RUN) == [{"step": 1, "loss": 2.0}]
    writer.flush()
    assert read_metrics(RUN) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}]
    writer.write(3, {"loss": 0.5})
    writer.close()
    assert [r["step"] for r in read_metrics(RUN)] == [1, 2, 3]


def test_metric_writer_stages_and_uploads(bucket):
    writer = MetricWriter(RUN, enabled=True, progress=False)
    writer.write(1, {"loss": 2.5, "lr": 0.5})
    assert read_metrics(RUN) == [{"step": 1, "loss": 2.5, "lr": 0.5}]  # uploaded before close
    writer.write(2, {"loss": 1.25, "hist": np.array([1.0, 2.0])}, prefix="train/")
    writer.write_text(2, "sample", "<think>1+1=2</think><answer>2</answer>")
    staging = writer._local
    writer.close()
    assert not staging.exists()
    assert read_metrics(RUN) == [
        {"step": 1, "loss": 2.5, "lr": 0.5},
        {"step": 2, "train/loss": 1.25, "train/hist": [1.0, 2.0]},
    ]
    assert read_metrics(f"{RUN}/metrics.jsonl") == read_metrics(RUN)
    samples = epath.Path(RUN, "samples.txt").read_text()
    assert samples == "=== step 2 sample ===\n<think>1+1=2</think><answer>2</answer>\n"
    events = download_events(epath.Path(RUN, "tb"), Path("tb_copy"))
    assert scalars(events) == {("loss", 1): 2.5, ("lr", 1): 0.5, ("train/loss", 2): 1.25}
    assert any(v.tag.startswith("sample") for e in events for v in e.summary.value)


def test_resumed_remote_run_downloads_then_appends(bucket):
    epath.Path(RUN).mkdir(parents=True, exist_ok=True)
    epath.Path(RUN, "metrics.jsonl").write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "lo')
    with MetricWriter(RUN, enabled=True, progress=False) as writer:
        writer.write(1, {"loss": 3.0})
        writer.write_text(1, "s", "first")
    with MetricWriter(RUN, enabled=True, progress=False) as writer:  # the resumed run
        writer.write(2, {"loss": 2.0})
        writer.write_text(2, "s", "second")
    assert read_metrics(RUN) == [{"step": 1, "loss": 3.0}, {"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}]
    samples = epath.Path(RUN, "samples.txt").read_text()
    assert samples == "=== step 1 s ===\nfirst\n=== step 2 s ===\nsecond\n"
    assert len(list(epath.Path(RUN, "tb").iterdir())) == 2  # one event file per writer, as locally
    events = download_events(epath.Path(RUN, "tb"), Path("tb_copy"))
    assert scalars(events) == {("loss", 1): 3.0, ("loss", 2): 2.0}


def test_disabled_remote_writer_writes_nothing(bucket):
    with MetricWriter(RUN, enabled=False) as writer:
        writer.write(1, {"loss": 1.0})
    assert bucket == {}


def test_config_round_trip(bucket):
    config = ml_collections.ConfigDict({"mode": "sft", "seed": 3, "task": {"name": "arithmetic"}})
    recipes.write_config(config, RUN)
    assert f"{RUN}/config.json" in bucket
    assert recipes.read_config(RUN).to_dict() == config.to_dict()
    with pytest.raises(FileNotFoundError, match="gs://bucket/other is not an rtc run directory"):
        recipes.read_config("gs://bucket/other")


def test_traces_rewritten_whole(bucket):
    path = epath.Path(RUN, traces.TRACES_FILE)
    traces.truncate_samples(path, 0)  # no file yet: nothing to do
    traces.append_samples(path, 1, ["<think>1+1=3\n1+1=2\n</think>"], ["q1"], [True])
    traces.append_samples(str(path), 2, ["a", "b"], ["q2", "q3"], [False, True])
    assert [(r["step"], r["question"], r["correct"]) for r in traces.read_samples(path)] == [
        (1, "q1", True),
        (2, "q2", False),
        (2, "q3", True),
    ]
    assert traces.read_samples(path)[0]["self_corrects"] is True
    traces.truncate_samples(path, 1)
    assert [r["question"] for r in traces.read_samples(str(path))] == ["q1"]


def test_reward_model_files(bucket):
    arrays = {"tokens": np.arange(6, dtype=np.int32).reshape(2, 3), "label": np.array([0.0, 1.0], np.float32)}
    config = ml_collections.ConfigDict(
        {
            "mode": "orm",
            "rm_data": {"labels": "verifier"},
            "task": {"name": "arithmetic"},
            "rm": {"seq_len": 3},
            "seed": 0,
            "policy_workdir": "gs://bucket/policy",
        }
    )
    signature = {
        "mode": "orm",
        "rm_data": {"labels": "verifier"},
        "task": {"name": "arithmetic"},
        "seq_len": 3,
        "seed": 0,
        "policy": "gs://bucket/policy",
    }
    directory = epath.Path(RUN, "rm_data")
    labelled_data.save_training_data(directory, arrays, {"signature": signature, "counts": {"solutions": 2}})
    assert {f"{RUN}/rm_data/train.npz", f"{RUN}/rm_data/train.json"} <= set(bucket)
    cached = labelled_data.training_data(config, RUN, None, None, None)  # from the cache: no sampling
    assert set(cached) == {"tokens", "label"}
    np.testing.assert_array_equal(cached["tokens"], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(cached["label"], [0.0, 1.0])
    epath.Path(RUN, rm_training.DESCRIPTION_FILE).write_text('{"kind": "orm"}')
    assert rm_training.load_description(RUN) == {"kind": "orm"}


def test_verifier_outputs(bucket):
    outputs = {
        "problems": 1,
        "large_n": 2,
        "sample_accuracy": 0.5,
        "curves": {"majority": {1: (0.5, 0.0, 1.0), 2: (1.0, 1.0, 1.0)}},
        "within_problem_auroc": {"orm": 1.0},
        "pooled_auroc": {"orm": 1.0},
        "oracle": {1: 0.5, 2: 0.75},
    }
    verifier_scaling.write_outputs(epath.Path(RUN), outputs, "t")
    assert {f"{RUN}/verifiers.json", f"{RUN}/verifiers.md", f"{RUN}/verifiers.png"} <= set(bucket)
    assert epath.Path(RUN, "verifiers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        "| majority | 0.500 [0.000, 1.000] | 1.000 [1.000, 1.000] |"
        in epath.Path(RUN, "verifiers.md").read_text()
    )


class FakeManager:
    """Stands in for orbax's CheckpointManager: records the directory it is given, holds steps 1-3."""

    directories = []

    def __init__(self, directory, options=None):
        FakeManager.directories.append(directory)

    def all_steps(self):
        return [1, 2, 3]

    def latest_step(self):
        return 3

    def reload(self):
        pass

    def close(self):
        pass


def test_orbax_receives_the_url_unchanged(bucket, monkeypatch):
    FakeManager.directories = []
    monkeypatch.setattr(checkpointer_lib.ocp, "CheckpointManager", FakeManager)
    assert loop.latest_step(RUN) == 3
    with Checkpointer(epath.Path(RUN) / "checkpoints") as checkpointer:
        for step in (2, 3):
            epath.Path(RUN, "checkpoints", str(step)).mkdir(parents=True)
            epath.Path(RUN, "checkpoints", str(step), "state").write_text("x")
        moved = checkpointer.set_aside_after(1)
    assert FakeManager.directories == [f"{RUN}/checkpoints", f"{RUN}/checkpoints"]
    assert moved == [f"{RUN}/checkpoints/2.set_aside", f"{RUN}/checkpoints/3.set_aside"]
    assert sorted(k for k in bucket if "/checkpoints/" in k) == [
        f"{RUN}/checkpoints/2.set_aside/state",
        f"{RUN}/checkpoints/3.set_aside/state",
    ]


def test_sft_recipe_in_a_gs_workdir(bucket, monkeypatch, tiny_config, tmp_path):
    """A tiny SFT run halted after step 2, resumed, then evaluated, with every file but the checkpoints
    in the bucket (orbax would write those through tensorstore's gcs driver)."""
    seen = []

    def local_checkpoints(directory, **kwargs):
        seen.append(os.fspath(directory))
        return Checkpointer(tmp_path / "checkpoints", **kwargs)

    monkeypatch.setattr(loop, "Checkpointer", local_checkpoints)
    assert recipes.sft_recipe(tiny_config, RUN, halt_after=2) == {}
    results = recipes.sft_recipe(tiny_config, RUN)
    assert set(results) == {"greedy", "sampled"}
    assert seen == [f"{RUN}/checkpoints"] * 2
    assert Checkpointer(tmp_path / "checkpoints").all_steps() == [2, 4]
    assert recipes.read_config(RUN).sft.num_steps == 4
    records = read_metrics(RUN)
    assert [r["step"] for r in records if "train/loss" in r] == [2, 4]  # the resumed run appended step 4
    evaluated = [r for r in records if "eval/greedy/mean_thinking_tokens" in r]
    assert [r["step"] for r in evaluated] == [4]
    assert evaluated[0]["eval/greedy/mean_thinking_tokens"] == results["greedy"]["mean_thinking_tokens"]
    assert "=== step 4 eval/trace ===" in epath.Path(RUN, "samples.txt").read_text()
    events = download_events(epath.Path(RUN, "tb"), tmp_path / "tb_copy")
    assert {step for (tag, step) in scalars(events) if tag == "train/loss"} == {2, 4}


def test_two_local_writers_keep_their_own_event_files(tmp_path):
    """Training's writer, then evaluation's, opened within one second: neither overwrites the other."""
    for step in (1, 2):
        with MetricWriter(tmp_path, enabled=True, progress=False) as writer:
            writer.write(step, {"loss": float(step)})
    assert len(list((tmp_path / "tb").iterdir())) == 2
    assert scalars(read_events(tmp_path / "tb")) == {("loss", 1): 1.0, ("loss", 2): 2.0}
