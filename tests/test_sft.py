"""SFT cold start: the masked loss by hand, encoding and the batch stream."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from rtc.data import arithmetic
from rtc.data.format import completion_text, prompt_text
from rtc.train.sft import sft_loss
from rtc.train.sft_data import RowStream, assemble, encode_dataset, encode_example, pack, process_rows


class FixedLogits:
    """A stand-in model whose `apply` returns the given logits `f32[B, T, V]` whatever the input."""

    def __init__(self, logits):
        self.logits = jnp.asarray(logits, jnp.float32)
        self.calls = []

    def apply(self, params, tokens, positions, cache=None):
        self.calls.append((np.asarray(tokens), np.asarray(positions)))
        return self.logits, None, None


# --- the loss ---------------------------------------------------------------------------------------


def test_uniform_logits_give_log_vocab():
    b, t, v = 2, 5, 7
    tokens = jnp.array([[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]], jnp.int32)  # [B, T+1]
    loss_mask = jnp.array([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]], jnp.float32)
    model = FixedLogits(np.zeros((b, t, v)))
    loss, metrics = sft_loss(None, {"tokens": tokens, "loss_mask": loss_mask}, model)
    np.testing.assert_allclose(loss, math.log(v), rtol=1e-6)
    assert float(metrics["target_tokens"]) == 8  # mask[:, 1:] counts 3 + 5 targets
    inputs, positions = model.calls[0]
    np.testing.assert_array_equal(inputs, tokens[:, :-1])
    np.testing.assert_array_equal(positions, np.tile(np.arange(t), (b, 1)))


def test_masked_mean_over_target_tokens_of_the_batch():
    # V = 3, T = 3. logits = log(probs): the NLL of each target is -log p(target).
    q = 1 / 8  # probability of the target at masked (prompt) positions: would add log 8 each if counted
    probs = np.array(
        [
            # row 0: tokens [0, 1, 2, 1], loss mask [0, 0, 0, 1] -> only the last target (1) counts
            [
                [7 / 16, q, 7 / 16],
                [7 / 16, 7 / 16, q],
                [1 / 2, 1 / 4, 1 / 4],
            ],  # NLL of target 1 at t=2: log 4
            # row 1: tokens [0, 2, 0, 1], loss mask [0, 1, 1, 1] -> targets 2, 0, 1 all count
            [[1 / 4, 1 / 4, 1 / 2], [1 / 2, 1 / 4, 1 / 4], [1 / 4, 1 / 2, 1 / 4]],  # log 2 each
        ]
    )
    batch = {
        "tokens": jnp.array([[0, 1, 2, 1], [0, 2, 0, 1]], jnp.int32),
        "loss_mask": jnp.array([[0, 0, 0, 1], [0, 1, 1, 1]], jnp.float32),
    }
    loss, metrics = sft_loss(None, batch, FixedLogits(np.log(probs)))
    # Token-level mean over the 4 targets: (log 4 + 3 log 2) / 4 = 1.25 log 2.
    # (A per-example mean would give 1.5 log 2; counting the masked positions 11/6 log 2.)
    np.testing.assert_allclose(loss, 1.25 * math.log(2), rtol=1e-6)
    np.testing.assert_allclose(metrics["loss"], loss)
    assert float(metrics["target_tokens"]) == 4
    # argmax hits the target at the three row-1 positions, misses row 0's (argmax 0, target 1).
    np.testing.assert_allclose(metrics["token_accuracy"], 0.75, rtol=1e-6)


def test_batch_without_targets_has_zero_loss_not_nan():
    batch = {"tokens": jnp.zeros((1, 3), jnp.int32), "loss_mask": jnp.zeros((1, 3), jnp.float32)}
    loss, _ = sft_loss(None, batch, FixedLogits(np.zeros((1, 2, 4))))
    assert float(loss) == 0.0


# --- encoding ---------------------------------------------------------------------------------------


def test_encode_example_masks_bos_and_prompt(tokenizer):
    for record in arithmetic.generate("train", 5, seed=0):
        ids, mask = encode_example(tokenizer, record)
        prompt = [tokenizer.bos_id] + tokenizer.encode(prompt_text(record))
        assert len(ids) == len(mask)
        assert ids[: len(prompt)] == prompt
        assert mask[: len(prompt)] == [0] * len(prompt)
        assert mask[len(prompt) :] == [1] * (len(ids) - len(prompt))
        assert ids[len(prompt)] == tokenizer.think_start_id
        assert ids[-1] == tokenizer.eos_id
        assert tokenizer.decode(ids[len(prompt) : -1]) == completion_text(record)


def test_encode_dataset_pads_and_keeps_static_shape(tokenizer):
    records = list(arithmetic.generate("train", 4, seed=0))
    data = encode_dataset(tokenizer, records, seq_len=64)
    assert data["tokens"].shape == data["loss_mask"].shape == (4, 65)
    assert data["tokens"].dtype == np.int32 and data["loss_mask"].dtype == np.float32
    for i, record in enumerate(records):
        ids, mask = encode_example(tokenizer, record)
        np.testing.assert_array_equal(data["tokens"][i, : len(ids)], ids)
        np.testing.assert_array_equal(data["loss_mask"][i, : len(ids)], mask)
        assert np.all(data["tokens"][i, len(ids) :] == tokenizer.pad_id)
        assert np.all(data["loss_mask"][i, len(ids) :] == 0)


def test_too_long_example_is_named(tokenizer):
    short, long = arithmetic.generate("train", 2, seed=0, levels=(1, 5))
    n_short = len(encode_example(tokenizer, short)[0])
    n_long = len(encode_example(tokenizer, long)[0])
    assert n_long > n_short
    exact = encode_dataset(tokenizer, [short], seq_len=n_short - 1)  # fits with no padding
    assert exact["tokens"].shape == (1, n_short)
    with pytest.raises(
        ValueError, match=rf"example 1 has {n_long} tokens, more than seq_len \+ 1 = {n_short}"
    ):
        encode_dataset(tokenizer, [short, long], seq_len=n_short - 1)


# --- the batch stream -------------------------------------------------------------------------------


def _flat(rows):
    return np.concatenate(rows)


def row_stream(position, count, lengths, row_len, packed, seed):
    return RowStream(lengths, row_len, packed, seed).rows(position, count)


def test_unpacked_stream_is_seeded_permutations_crossing_epochs():
    n, seed, lengths = 10, 3, np.full(10, 5)
    a = row_stream(3, 5, lengths, 8, packed=False, seed=seed)
    np.testing.assert_array_equal(_flat(a), _flat(row_stream(3, 5, lengths, 8, packed=False, seed=seed)))
    assert not np.array_equal(
        _flat(row_stream(0, n, lengths, 8, False, 0)), _flat(row_stream(0, n, lengths, 8, False, 1))
    )
    epochs = [_flat(row_stream(e * n, n, lengths, 8, False, seed)) for e in range(3)]
    for order in epochs:
        np.testing.assert_array_equal(np.sort(order), np.arange(n))
    assert not np.array_equal(epochs[0], epochs[1])  # each epoch has its own order
    # Batches of 4 read the stream epoch 0, epoch 1, ... whatever the batch boundaries.
    stream = np.concatenate([_flat(row_stream(p, 4, lengths, 8, False, seed)) for p in range(0, 3 * n, 4)])
    np.testing.assert_array_equal(stream[: 3 * n], np.concatenate(epochs))
    np.testing.assert_array_equal(
        _flat(row_stream(8, 4, lengths, 8, False, seed)),
        [epochs[0][8], epochs[0][9], epochs[1][0], epochs[1][1]],
    )


def test_packing_golden_and_every_example_once_per_epoch():
    # Lengths 3, 4, 2, 5, 1 in order 0..4 into rows of 7: [0, 1] (7), [2, 3] (7), [4] (1).
    rows = pack(np.arange(5), np.array([3, 4, 2, 5, 1]), 7)
    assert [r.tolist() for r in rows] == [[0, 1], [2, 3], [4]]
    lengths = np.random.default_rng(0).integers(1, 9, size=50)
    epoch = row_stream(0, 10_000, lengths, 16, packed=True, seed=0)
    first_epoch_rows = len(pack(np.random.default_rng((0, 0)).permutation(50), lengths, 16))
    np.testing.assert_array_equal(np.sort(_flat(epoch[:first_epoch_rows])), np.arange(50))
    assert all(lengths[r].sum() <= 16 for r in epoch)


def _replayed_rows(position, count, lengths, row_len, packed, seed):
    """The stream by its definition: every epoch from 0 packed afresh, concatenated, then sliced."""
    rows, epoch = [], 0
    while len(rows) < position + count:
        order = np.random.default_rng((seed, epoch)).permutation(len(lengths))
        rows += pack(order, lengths, row_len) if packed else [np.array([i]) for i in order]
        epoch += 1
    return rows[position : position + count]


@pytest.mark.parametrize("packed", [True, False])
def test_stream_reads_equal_the_replayed_definition_in_any_order(packed):
    lengths = np.random.default_rng(1).integers(1, 17, size=37)
    stream = RowStream(lengths, 16, packed, seed=7)
    # Forward batches across many epochs, then a jump back to dropped epochs, then a fresh resume.
    reads = [(p, 9) for p in range(0, 400, 9)] + [(3, 30), (0, 0), (250, 200)]
    for position, count in reads:
        expected = _replayed_rows(position, count, lengths, 16, packed, seed=7)
        got = stream.rows(position, count)
        assert len(got) == count
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)
    resumed = RowStream(lengths, 16, packed, seed=7).rows(390, 9)
    np.testing.assert_array_equal(_flat(resumed), _flat(_replayed_rows(390, 9, lengths, 16, packed, 7)))


def test_stream_keeps_only_the_epochs_it_reads():
    stream = RowStream(np.full(10, 4), 8, packed=True, seed=0)  # 5 rows an epoch
    stream.rows(0, 12)
    assert sorted(stream._epochs) == [0, 1, 2]
    stream.rows(23, 5)
    assert sorted(stream._epochs) == [4, 5]  # epochs behind the read are dropped, their counts kept
    assert stream._ends == [5, 10, 15, 20, 25, 30]


def test_assemble_restarts_positions_and_pads():
    data = {
        "tokens": np.array([[5, 6, 7, 0, 0, 0], [8, 9, 0, 0, 0, 0]]),
        "loss_mask": np.array([[0, 1, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0]], np.float32),
        "lengths": np.array([3, 2]),
    }
    batch = assemble(data, [np.array([1, 0]), np.array([1])], pad_id=0)
    assert batch["tokens"].tolist() == [[8, 9, 5, 6, 7, 0], [8, 9, 0, 0, 0, 0]]
    assert batch["positions"].tolist() == [[0, 1, 0, 1, 2, 0], [0, 1, 0, 0, 0, 0]]
    assert batch["loss_mask"].tolist() == [[0, 1, 0, 1, 1, 0], [0, 1, 0, 0, 0, 0]]


def test_packed_rows_attend_only_within_their_example(tiny_model):
    model, params = tiny_model
    a, b = jnp.array([[5, 6, 7]]), jnp.array([[8, 9]])
    packed = jnp.concatenate([a, b], axis=1)
    logits, _, _ = model.apply(params, packed, jnp.array([[0, 1, 2, 0, 1]]))
    alone_a, _, _ = model.apply(params, a, jnp.arange(3)[None])
    alone_b, _, _ = model.apply(params, b, jnp.arange(2)[None])
    np.testing.assert_allclose(logits, jnp.concatenate([alone_a, alone_b], axis=1), atol=1e-5)


@pytest.mark.parametrize("process_count", [1, 2, 4, 8])
def test_process_rows_partition_the_batch(process_count):
    rows = [np.arange(8)[process_rows(8, i, process_count)] for i in range(process_count)]
    assert all(len(r) == 8 // process_count for r in rows)
    np.testing.assert_array_equal(np.concatenate(rows), np.arange(8))
