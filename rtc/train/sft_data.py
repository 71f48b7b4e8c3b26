"""Supervised cold-start data: prompt + gold reasoning chain as fixed-length token arrays.

The loss is taken on the completion only (`<think>...</think><answer>...</answer></s>`); the prompt
is context, not a target (DeepSeek-R1 cold start, sec. 2.3.1). Every batch has the same static shape.
Examples are packed into rows (several short examples per row, positions restarting at 0 so each
attends only to itself), which spends compute on tokens rather than padding. The stream of rows is
a pure function of (seed, position), so a resumed run reads the same batches.
"""

import functools
from typing import Sequence

import numpy as np

from rtc.data.format import completion_text, prompt_text


def encode_example(tokenizer, example: dict) -> tuple[list[int], list[int]]:
    """`([bos] + prompt + completion + [eos], loss_mask)`; the mask is 1 on completion and eos."""
    prompt = [tokenizer.bos_id] + tokenizer.encode(prompt_text(example))
    completion = tokenizer.encode(completion_text(example)) + [tokenizer.eos_id]
    return prompt + completion, [0] * len(prompt) + [1] * len(completion)


def encode_dataset(tokenizer, records: Sequence[dict], seq_len: int) -> dict[str, np.ndarray]:
    """`{"tokens": i32[N, seq_len + 1], "loss_mask": f32[N, seq_len + 1], "lengths": i32[N]}`, right-padded.

    An example longer than `seq_len + 1` tokens is an error naming it (raise `seq_len`).
    """
    n = len(records)
    tokens = np.full((n, seq_len + 1), tokenizer.pad_id, np.int32)
    loss_mask = np.zeros((n, seq_len + 1), np.float32)
    lengths = np.zeros((n,), np.int32)
    for i in range(n):
        ids, mask = encode_example(tokenizer, records[i])
        if len(ids) > seq_len + 1:
            raise ValueError(
                f"example {i} has {len(ids)} tokens, more than seq_len + 1 = {seq_len + 1}; "
                f"raise data.seq_len"
            )
        tokens[i, : len(ids)] = ids
        loss_mask[i, : len(ids)] = mask
        lengths[i] = len(ids)
    return {"tokens": tokens, "loss_mask": loss_mask, "lengths": lengths}


@functools.lru_cache(maxsize=4)
def _epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng((seed, epoch)).permutation(num_examples)


def pack(order: np.ndarray, lengths: np.ndarray, row_len: int) -> list[np.ndarray]:
    """Greedy in-order packing: examples in `order` fill rows of `row_len` tokens (a full row closes)."""
    rows, row, used = [], [], 0
    for i in order:
        if row and used + lengths[i] > row_len:
            rows.append(np.array(row))
            row, used = [], 0
        row.append(i)
        used += lengths[i]
    if row:
        rows.append(np.array(row))
    return rows


@functools.lru_cache(maxsize=4)
def _epoch_rows(lengths: tuple[int, ...], row_len: int, packed: bool, seed: int, epoch: int) -> tuple:
    order = _epoch_order(len(lengths), seed, epoch)
    if not packed:
        return tuple(np.array([i]) for i in order)
    return tuple(pack(order, np.array(lengths), row_len))


def row_stream(
    position: int, count: int, lengths: np.ndarray, row_len: int, packed: bool, seed: int
) -> list[np.ndarray]:
    """The `count` rows (arrays of example indices) starting at row `position` of the stream.

    Epoch e packs the examples in its own seeded order; the stream is epoch 0's rows, then epoch 1's...
    """
    key = tuple(int(x) for x in lengths)
    rows, epoch, start = [], 0, 0
    while len(rows) < count:
        epoch_rows = _epoch_rows(key, row_len, packed, seed, epoch)
        lo = max(position - start, 0)
        if lo < len(epoch_rows):
            rows += list(epoch_rows[lo : lo + count - len(rows)])
        start += len(epoch_rows)
        epoch += 1
    return rows


def assemble(data: dict[str, np.ndarray], rows: Sequence[np.ndarray], pad_id: int) -> dict[str, np.ndarray]:
    """A batch `{"tokens", "loss_mask", "positions"}: [len(rows), T+1]` from rows of example indices.

    Positions restart at 0 for each example; padding after the last example is its own segment.
    """
    width = data["tokens"].shape[1]
    tokens = np.full((len(rows), width), pad_id, np.int32)
    loss_mask = np.zeros((len(rows), width), np.float32)
    positions = np.zeros((len(rows), width), np.int32)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            n = data["lengths"][i]
            tokens[r, at : at + n] = data["tokens"][i, :n]
            loss_mask[r, at : at + n] = data["loss_mask"][i, :n]
            positions[r, at : at + n] = np.arange(n)
            at += n
    return {"tokens": tokens, "loss_mask": loss_mask, "positions": positions}


def process_rows(batch_size: int, process_index: int, process_count: int) -> slice:
    """This process's rows of a global batch (each host feeds its local devices)."""
    per_process = batch_size // process_count
    return slice(process_index * per_process, (process_index + 1) * per_process)
