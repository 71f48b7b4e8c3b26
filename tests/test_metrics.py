"""MetricWriter outputs, read_metrics, and check_finite."""

import struct

import jax.numpy as jnp
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from rtc.metrics import MetricWriter, NonFiniteError, check_finite, read_metrics


def read_events(tb_dir) -> list:
    """Every Event in the TFRecord event files under `tb_dir` (length, crc, payload, crc per record)."""
    events = []
    for path in sorted(tb_dir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            events.append(event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length]))
            offset += 12 + length + 4
    return events


def scalars(events) -> dict:
    """{(tag, step): value} of the scalar summaries."""
    return {
        (v.tag, e.step): v.simple_value for e in events for v in e.summary.value if v.HasField("simple_value")
    }


def test_jsonl_and_tensorboard(tmp_path):
    with MetricWriter(tmp_path, total_steps=3, enabled=True, progress=False) as writer:
        writer.write(1, {"loss": 2.5, "lr": jnp.float32(0.5)})
        writer.write(2, {"loss": jnp.array(1.25), "hist": np.array([1.0, 2.0])}, prefix="train/")
        writer.write_text(2, "sample", "<think>1+1=2</think><answer>2</answer>")
        assert read_metrics(tmp_path / "metrics.jsonl") == [
            {"step": 1, "loss": 2.5, "lr": 0.5},
            {"step": 2, "train/loss": 1.25, "train/hist": [1.0, 2.0]},
        ]
    assert read_metrics(tmp_path) == read_metrics(tmp_path / "metrics.jsonl")
    events = read_events(tmp_path / "tb")
    assert scalars(events) == {("loss", 1): 2.5, ("lr", 1): 0.5, ("train/loss", 2): 1.25}
    assert any(v.tag.startswith("sample") for e in events for v in e.summary.value)
    assert "<answer>2</answer>" in (tmp_path / "samples.txt").read_text()


def test_resumed_run_appends_after_a_cut_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "lo')
    with MetricWriter(tmp_path, enabled=True, progress=False) as writer:
        writer.write(2, {"loss": 2.0})
    assert read_metrics(tmp_path) == [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}]


def test_disabled_writer_writes_nothing(tmp_path):
    with MetricWriter(tmp_path / "run", enabled=False, progress=True) as writer:
        writer.write(1, {"loss": 1.0})
        writer.write_text(1, "sample", "text")
        writer.advance()
    assert not (tmp_path / "run").exists()


def test_progress_bar_shows_loss(tmp_path, capsys):
    with MetricWriter(tmp_path, total_steps=4, enabled=True, progress=True) as writer:
        writer.write(1, {"loss": 0.125})
        writer.advance(2)
    err = capsys.readouterr().err
    assert "2/4" in err and "loss=0.125" in err


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_check_finite_raises_naming_step_and_metric(bad):
    with pytest.raises(NonFiniteError, match=rf"non-finite loss at step 7: loss={bad}.*grad_norm=3"):
        check_finite(7, {"loss": jnp.float32(bad), "grad_norm": 3.0})


def test_check_finite_passes_and_watches_chosen_keys():
    check_finite(1, {"loss": 0.5, "reward": float("nan")})
    with pytest.raises(NonFiniteError, match="non-finite reward at step 1"):
        check_finite(1, {"loss": 0.5, "reward": float("nan")}, keys=None)
    with pytest.raises(NonFiniteError, match="1 of 3 non-finite"):
        check_finite(1, {"loss": np.array([0.0, np.inf, 1.0])})
    with pytest.raises(KeyError, match="loss"):
        check_finite(1, {"reward": 1.0})
