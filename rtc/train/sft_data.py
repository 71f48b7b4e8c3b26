"""Supervised cold-start data: prompt + gold reasoning chain as fixed-length token arrays.

The loss is taken on the completion only (`<think>...</think><answer>...</answer></s>`); the prompt
is context, not a target (DeepSeek-R1 cold start, sec. 2.3.1). Every batch has the same static shape.
The order of examples is a pure function of (seed, position), so a resumed run reads the same batches.
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
  """`{"tokens": i32[N, seq_len + 1], "loss_mask": f32[N, seq_len + 1]}`, right-padded with pad_id.

  An example longer than `seq_len + 1` tokens is an error naming it (raise `seq_len`).
  """
  n = len(records)
  tokens = np.full((n, seq_len + 1), tokenizer.pad_id, np.int32)
  loss_mask = np.zeros((n, seq_len + 1), np.float32)
  for i in range(n):
    ids, mask = encode_example(tokenizer, records[i])
    if len(ids) > seq_len + 1:
      raise ValueError(f"example {i} has {len(ids)} tokens, more than seq_len + 1 = {seq_len + 1}; "
                       f"raise data.seq_len")
    tokens[i, :len(ids)] = ids
    loss_mask[i, :len(ids)] = mask
  return {"tokens": tokens, "loss_mask": loss_mask}


@functools.lru_cache(maxsize=4)
def _epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  return np.random.default_rng((seed, epoch)).permutation(num_examples)


def batch_indices(position: int, batch_size: int, num_examples: int, seed: int) -> np.ndarray:
  """Example indices of the batch starting at stream `position` (examples consumed so far).

  The stream visits every example once per epoch, each epoch in its own seeded order.
  """
  stream = np.arange(position, position + batch_size)
  epochs, offsets = np.divmod(stream, num_examples)
  return np.array([_epoch_order(num_examples, seed, int(e))[o] for e, o in zip(epochs, offsets)])


def process_rows(batch_size: int, process_index: int, process_count: int) -> slice:
  """This process's rows of a global batch (each host feeds its local devices)."""
  per_process = batch_size // process_count
  return slice(process_index * per_process, (process_index + 1) * per_process)
