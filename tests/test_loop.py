"""The one training loop, driven by SFT: exact resume, resuming past a damaged checkpoint, non-finite
stops, window metrics, a workdir that loads from its path alone, evaluation errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import assert_trees_close
from rtc import recipes
from rtc.checkpoint import Checkpointer, CheckpointError
from rtc.data.format import prompt_tokens
from rtc.data.tfds_builders import task_records
from rtc.eval import policy
from rtc.metrics import MetricWriter, NonFiniteError, read_metrics
from rtc.pretrained.run_model import build_model
from rtc.train import loop, sft
from rtc.train.sft import sft_loss
from rtc.train.state import make_update


def train(config, workdir, tokenizer, model, halt_after=None):
    return sft.train(config, config.sft, workdir, tokenizer, model, halt_after=halt_after)


# --- the loop ---------------------------------------------------------------------------------------


def _damage(step_dir):
    """Overwrites every array file of a saved step with zeros of the same size."""
    for path in step_dir.rglob("*"):
        if path.is_file() and "state" in path.parts and path.stat().st_size > 64:
            path.write_bytes(b"\0" * path.stat().st_size)


def test_resumed_run_equals_uninterrupted(tiny_config, tokenizer, model, tmp_path):
    tiny_config.sft.num_steps = 6  # checkpoints at 2, 4, 6
    whole = train(tiny_config, tmp_path / "a", tokenizer, model)

    # killed after step 3: step 3 is lost, the rerun restarts from 2
    state = train(tiny_config, tmp_path / "b", tokenizer, model, halt_after=3)
    assert int(state["step"]) == 3
    assert Checkpointer(tmp_path / "b/checkpoints").all_steps() == [2]
    resumed = train(tiny_config, tmp_path / "b", tokenizer, model)

    assert int(whole["step"]) == int(resumed["step"]) == 6
    assert_trees_close(resumed, whole)
    metas = []
    for run in ("a", "b"):
        with Checkpointer(tmp_path / run / "checkpoints") as ckpt:
            assert ckpt.latest_step() == 6
            restored, meta = ckpt.restore(whole)
        assert_trees_close(restored, whole)
        metas.append(meta)
    assert metas[0]["data_position"] == metas[1]["data_position"] == 6 * tiny_config.sft.batch_size
    losses = [{r["step"]: r["train/loss"] for r in read_metrics(tmp_path / run)} for run in ("a", "b")]
    assert losses[1][4] == pytest.approx(losses[0][4], abs=1e-6)  # b logs step 2 twice, then 4 and 6
    assert losses[1][6] == pytest.approx(losses[0][6], abs=1e-6)

    # A damaged latest checkpoint is refused, naming the step to resume from; resuming there instead sets
    # the damaged step aside (kept, not deleted) and still ends where the uninterrupted run did.
    train(tiny_config, tmp_path / "c", tokenizer, model, halt_after=4)  # checkpoints 2 and 4
    _damage(tmp_path / "c/checkpoints/4")
    with pytest.raises(CheckpointError, match=r"step 4 .* damaged.*--config.sft.resume_step=2"):
        train(tiny_config, tmp_path / "c", tokenizer, model)
    tiny_config.sft.resume_step = 2
    assert_trees_close(train(tiny_config, tmp_path / "c", tokenizer, model), whole)
    assert (tmp_path / "c/checkpoints/4.set_aside").is_dir()
    assert Checkpointer(tmp_path / "c/checkpoints").all_steps() == [4, 6]


def _nan_loss(params, batch, model):
    loss, metrics = sft_loss(params, batch, model)
    loss = loss * jnp.nan
    return loss, {**metrics, "loss": loss}


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(
    tiny_config, tokenizer, model, tmp_path, monkeypatch
):
    good = train(tiny_config, tmp_path, tokenizer, model, halt_after=2)  # checkpoint at step 2
    monkeypatch.setattr(sft, "sft_loss", _nan_loss)
    # Step 3 goes bad; log_every = 2, so the check at step 4 catches it, names step 3, saves nothing.
    with pytest.raises(NonFiniteError, match=r"non-finite loss.* at step 3"):
        train(tiny_config, tmp_path, tokenizer, model)
    with Checkpointer(tmp_path / "checkpoints") as ckpt:
        assert ckpt.all_steps() == [2]
        restored, meta = ckpt.restore(good)
    assert meta["data_position"] == 2 * tiny_config.sft.batch_size
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(restored["params"]))
    assert_trees_close(restored, good)


def _nan_loss_at_step(bad_step):
    """`make_update` whose loss metric is nan at `bad_step` only (the params stay finite)."""

    def make(loss_fn, optimizer, schedule):
        update = make_update(loss_fn, optimizer, schedule)

        def nan_at_step(state, batch):
            state, metrics = update(state, batch)
            loss = jnp.where(state["step"] == bad_step, jnp.nan, metrics["loss"])
            return state, {**metrics, "loss": loss}

        return nan_at_step

    return make


def test_non_finite_step_inside_the_log_window_is_named(tiny_config, tokenizer, model, tmp_path, monkeypatch):
    tiny_config.sft.update(log_every=4, checkpoint_every=4)
    monkeypatch.setattr(sft, "make_update", _nan_loss_at_step(2))
    closed = []
    for cls in (loop.Checkpointer, loop.MetricWriter):
        monkeypatch.setattr(
            cls, "close", lambda self, close=cls.close: closed.append(type(self)) or close(self)
        )
    # Steps 3 and 4 are finite again: only the window check sees step 2, and it names it.
    with pytest.raises(NonFiniteError, match=r"non-finite loss at step 2: loss=nan"):
        train(tiny_config, tmp_path, tokenizer, model)
    assert Checkpointer(tmp_path / "checkpoints").all_steps() == []
    assert sorted(c.__name__ for c in closed) == ["Checkpointer", "MetricWriter"]  # closed on the way out


def test_logs_window_means_and_throughput_of_timed_steps(tiny_config, tokenizer, model, tmp_path):
    every = tiny_config.copy_and_resolve_references()
    every.sft.log_every = 1
    train(every, tmp_path / "every", tokenizer, model)
    train(tiny_config, tmp_path / "pairs", tokenizer, model)  # log_every = 2
    per_step = {r["step"]: r for r in read_metrics(tmp_path / "every")}
    pairs = {r["step"]: r for r in read_metrics(tmp_path / "pairs")}
    assert sorted(per_step) == [1, 2, 3, 4] and sorted(pairs) == [2, 4]
    for step in (2, 4):
        for name in ("loss", "token_accuracy", "grad_norm", "target_tokens"):
            mean = (per_step[step - 1][f"train/{name}"] + per_step[step][f"train/{name}"]) / 2
            assert pairs[step][f"train/{name}"] == pytest.approx(mean, rel=1e-5), (step, name)
        assert pairs[step]["train/learning_rate"] == pytest.approx(per_step[step]["train/learning_rate"])
    # Step 1 compiles and is not timed: its window has no throughput, and step 2's counts step 2 only.
    assert "train/row_tokens_per_second" not in per_step[1]
    row_tokens = tiny_config.sft.batch_size * tiny_config.sft.seq_len
    targets = {step: per_step[step]["train/target_tokens"] for step in (2, 3, 4)}

    def target_share(logged):  # the same elapsed time divides both rates
        return logged["train/target_tokens_per_second"] / logged["train/row_tokens_per_second"]

    for step in (2, 3, 4):
        assert target_share(per_step[step]) == pytest.approx(targets[step] / row_tokens, rel=1e-6)
    assert target_share(pairs[2]) == pytest.approx(targets[2] / row_tokens, rel=1e-6)
    assert target_share(pairs[4]) == pytest.approx((targets[3] + targets[4]) / (2 * row_tokens), rel=1e-6)


def _nan_gradient_loss(params, batch, model):
    """The true loss plus sqrt(0): the value stays finite, its gradient is 0 * inf = nan."""
    loss, metrics = sft_loss(params, batch, model)
    return loss + jnp.sqrt(jnp.sum(params["final_norm"]) * 0.0), metrics


def test_non_finite_gradient_stops_before_the_checkpoint(
    tiny_config, tokenizer, model, tmp_path, monkeypatch
):
    tiny_config.sft.update(log_every=1, checkpoint_every=1)
    monkeypatch.setattr(sft, "sft_loss", _nan_gradient_loss)
    with pytest.raises(NonFiniteError, match=r"non-finite grad_norm at step 1: grad_norm=nan \(.*loss=\d"):
        train(tiny_config, tmp_path, tokenizer, model)
    assert Checkpointer(tmp_path / "checkpoints").all_steps() == []


def test_a_finished_workdir_loads_from_its_path_alone(tiny_config, sft_run):
    config, _, model, params = recipes.load_run(sft_run)
    assert config.to_json(sort_keys=True) == tiny_config.to_json(sort_keys=True)
    with Checkpointer(sft_run / "checkpoints") as ckpt:
        saved = ckpt.restore_params()
    assert_trees_close(params, saved)
    assert jax.tree.structure(params) == jax.tree.structure(model.init_params(jax.random.key(1)))


# --- evaluation -------------------------------------------------------------------------------------


def test_prompt_longer_than_the_context_is_named(tiny_config, tokenizer, tmp_path):
    tiny_config.model.max_seq_len = 40  # less than any prompt plus eval.max_new_tokens = 48
    model = build_model(tiny_config, tokenizer.vocab_size)
    params = model.init_params(jax.random.key(0))
    records = task_records(tiny_config, "test", tmp_path)
    first_batch = [records[i] for i in range(tiny_config.eval.batch_size)]
    longest = max(len(prompt_tokens(tokenizer, r)) for r in first_batch)
    with (
        MetricWriter(tmp_path, progress=False) as writer,
        pytest.raises(
            ValueError,
            match=rf"prompt of {longest} tokens plus max_new_tokens=48 exceeds the model's context of 40",
        ),
    ):
        policy.evaluate(tiny_config, tmp_path, tokenizer, model, params, writer, step=0)
