"""Supervised cold-start data: prompt + gold reasoning chain as fixed-length token arrays.

The loss is taken on the completion only (`<think>...</think><answer>...</answer></s>`); the prompt
is context, not a target (DeepSeek-R1 cold start, sec. 2.3.1). Every batch has the same static shape.
Examples are packed into rows (several short examples per row, positions restarting at 0 so each
attends only to itself), which spends compute on tokens rather than padding. The stream of rows is
a pure function of (seed, position), so a resumed run reads the same batches.
"""

import bisect
from typing import Sequence

import numpy as np

from rtc.data.format import completion_text, prompt_tokens
from rtc.errors import ConfigError


def encode_example(tokenizer, example: dict) -> tuple[list[int], list[int]]:
    """`(prompt + completion + [eos], loss_mask)`; the prompt is `prompt_tokens` (the one inference
    conditions on); the mask is 1 on completion and eos."""
    prompt = prompt_tokens(tokenizer, example)
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
            raise ConfigError(
                f"example {i} has {len(ids)} tokens, more than seq_len + 1 = {seq_len + 1}; "
                f"raise train.seq_len"
            )
        tokens[i, : len(ids)] = ids
        loss_mask[i, : len(ids)] = mask
        lengths[i] = len(ids)
    return {"tokens": tokens, "loss_mask": loss_mask, "lengths": lengths}


def pack(order: np.ndarray, lengths: np.ndarray, row_len: int) -> list[np.ndarray]:
    """Greedy in-order packing: examples in `order` fill rows of `row_len` tokens (a full row closes)."""
    rows, row, used = [], [], 0
    for i, n in zip(order.tolist(), np.asarray(lengths)[order].tolist()):
        if row and used + n > row_len:
            rows.append(np.array(row))
            row, used = [], 0
        row.append(i)
        used += n
    if row:
        rows.append(np.array(row))
    return rows


class RowStream:
    """The stream of rows (arrays of example indices): epoch 0's rows, then epoch 1's, and so on.

    Epoch e orders the examples by a permutation seeded with `(seed, e)` and packs them into rows of
    `row_len` tokens (or one example a row when not `packed`), so the stream is a pure function of
    (seed, position). Each epoch is packed once, when first read; the row lists of epochs behind the
    last read are dropped (only their row counts are kept) and rebuilt if asked for again.
    """

    def __init__(self, lengths: np.ndarray, row_len: int, packed: bool, seed: int):
        self.lengths = np.asarray(lengths)
        self.row_len = row_len
        self.packed = packed
        self.seed = seed
        self._ends: list[int] = []  # _ends[e]: rows in epochs 0..e
        self._epochs: dict[int, list[np.ndarray]] = {}

    def _pack(self, epoch: int) -> list[np.ndarray]:
        order = np.random.default_rng((self.seed, epoch)).permutation(len(self.lengths))
        if self.packed:
            return pack(order, self.lengths, self.row_len)
        return [np.array([i]) for i in order.tolist()]

    def _epoch_rows(self, epoch: int) -> list[np.ndarray]:
        if epoch not in self._epochs:
            self._epochs[epoch] = self._pack(epoch)
        return self._epochs[epoch]

    def _epoch_of(self, position: int) -> int:
        """The epoch holding row `position`; epochs before it are packed only to count their rows."""
        while not self._ends or self._ends[-1] <= position:
            epoch = len(self._ends)
            rows = self._pack(epoch)
            self._ends.append((self._ends[-1] if self._ends else 0) + len(rows))
            if self._ends[-1] > position:
                self._epochs[epoch] = rows
        return bisect.bisect_right(self._ends, position)

    def rows(self, position: int, count: int) -> list[np.ndarray]:
        """The `count` rows starting at row `position` of the stream."""
        first, last = self._epoch_of(position), self._epoch_of(position + count - 1)
        rows = []
        for epoch in range(first, last + 1):
            start = self._ends[epoch - 1] if epoch else 0
            rows += self._epoch_rows(epoch)[max(position - start, 0) : position + count - start]
        for old in [e for e in self._epochs if e < first]:
            del self._epochs[old]
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
