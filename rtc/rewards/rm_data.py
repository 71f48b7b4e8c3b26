"""Reward-model data: sampled solutions, their steps, and the fixed-shape arrays the losses read.

A solution is `[bos] + prompt` then the completion tokens the policy emitted (kept as ids: encoding
the decoded text again need not give the same ids, and the reward model must score what the policy
wrote). A step is the completion's tokens up to and including a step delimiter (the newline), so
`<think>a=1\nb=2\n</think><answer>2</answer>` has two steps; the answer block is not a step.
"""

import dataclasses
import os
from collections.abc import Sequence

import jax
import numpy as np

from rtc.data.answers import extract_answer
from rtc.errors import ConfigError
from rtc.data.format import prompt_tokens
from rtc.sampling.sampler import SamplerConfig, completions, generate

NO_DELIMITER = "no_delimiter"
EMPTY_STEP = "empty_step"


@dataclasses.dataclass(frozen=True)
class Solution:
    """One completion of one problem; `human_labels` (one per step) only for human-labelled data."""

    record: dict
    prompt_ids: tuple[int, ...]  # [bos] + prompt
    completion_ids: tuple[int, ...]
    human_labels: tuple[float, ...] | None = None


def step_ends(completion_ids: Sequence[int], delimiter_id: int) -> list[int]:
    """Indices into the completion of its step delimiters, e.g. `[4, 9, 12]`."""
    return [i for i, token in enumerate(completion_ids) if token == delimiter_id]


def step_token_spans(completion_ids: Sequence[int], delimiter_id: int) -> list[tuple[int, int]]:
    """`(start, end)` of each step's content, the delimiter at `end` excluded."""
    spans, start = [], 0
    for end in step_ends(completion_ids, delimiter_id):
        spans.append((start, end))
        start = end + 1
    return spans


def defect(completion_ids: Sequence[int], delimiter_id: int, ignore_ids: Sequence[int] = ()) -> str | None:
    """Why a completion cannot be labelled step by step, or None.

    `no_delimiter`: it has no step. `empty_step`: a step has no content (two delimiters in a row, or
    a delimiter right after `<think>`; tokens in `ignore_ids` do not count as content).
    """
    spans = step_token_spans(completion_ids, delimiter_id)
    if not spans:
        return NO_DELIMITER
    ignored = set(ignore_ids)
    if any(all(t in ignored for t in completion_ids[s:e]) for s, e in spans):
        return EMPTY_STEP
    return None


def step_texts(tokenizer, completion_ids: Sequence[int], delimiter_id: int) -> list[str]:
    """The decoded content of each step (delimiter excluded)."""
    return [tokenizer.decode(completion_ids[s:e]) for s, e in step_token_spans(completion_ids, delimiter_id)]


def sample_solutions(
    model,
    params,
    tokenizer,
    records: Sequence[dict],
    cfg: SamplerConfig,
    group_size: int,
    batch_size: int,
    rng: jax.Array,
) -> list[Solution]:
    """`group_size` sampled solutions per record (record-major), decoded in fixed-size batches.

    The last batch is padded with copies of its first prompt so every sampler call has one shape.
    """
    prompts = [tuple(prompt_tokens(tokenizer, r)) for r in records for _ in range(group_size)]
    owners = [r for r in records for _ in range(group_size)]
    solutions = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        real = len(chunk)
        chunk += [chunk[0]] * (batch_size - real)
        out = generate(model, params, chunk, jax.random.fold_in(rng, start), cfg)
        for i, ids in enumerate(completions(out)[:real]):
            solutions.append(Solution(owners[start + i], chunk[i], tuple(ids)))
    return solutions


def outcome_labels(task, tokenizer, solutions: Sequence[Solution]) -> np.ndarray:
    """f32[M]: 1 where the task's verifier accepts the solution's final answer."""
    return np.array(
        [task.is_correct(extract_answer(tokenizer.decode(s.completion_ids)), s.record) for s in solutions],
        np.float32,
    )


def encode_solutions(solutions: Sequence[Solution], seq_len: int, pad_id: int) -> dict[str, np.ndarray]:
    """`{"tokens": i32[M, seq_len], "completion_mask": bool[M, seq_len]}`, right-padded.

    A solution longer than `seq_len` is an error naming it (raise the sequence length).
    """
    tokens = np.full((len(solutions), seq_len), pad_id, np.int32)
    mask = np.zeros((len(solutions), seq_len), bool)
    for i, s in enumerate(solutions):
        ids = s.prompt_ids + s.completion_ids
        if len(ids) > seq_len:
            raise ConfigError(f"solution {i} has {len(ids)} tokens, more than seq_len={seq_len}")
        tokens[i, : len(ids)] = ids
        mask[i, len(s.prompt_ids) : len(ids)] = True
    return {"tokens": tokens, "completion_mask": mask}


def step_label_arrays(
    solutions: Sequence[Solution], labels: Sequence[Sequence[float]], delimiter_id: int, seq_len: int
) -> dict[str, np.ndarray]:
    """`{"step_labels": f32[M, seq_len], "step_mask": f32[M, seq_len]}`: each label at its step's delimiter.

    The rows line up with `encode_solutions(solutions, seq_len, ...)`. A solution whose number of
    labels differs from its number of steps is an error naming it and both counts.
    """
    step_labels = np.zeros((len(solutions), seq_len), np.float32)
    step_mask = np.zeros((len(solutions), seq_len), np.float32)
    for i, (s, row_labels) in enumerate(zip(solutions, labels, strict=True)):
        ends = [len(s.prompt_ids) + e for e in step_ends(s.completion_ids, delimiter_id)]
        if len(ends) != len(row_labels):
            raise ConfigError(f"solution {i} has {len(ends)} steps but {len(row_labels)} step labels")
        if ends and ends[-1] >= seq_len:
            raise ConfigError(f"solution {i} ends a step at token {ends[-1]}, past seq_len={seq_len}")
        step_labels[i, ends] = row_labels
        step_mask[i, ends] = 1.0
    return {"step_labels": step_labels, "step_mask": step_mask}


def save_arrays(path, arrays: dict[str, np.ndarray]) -> None:
    """Writes `arrays` to an `.npz` file (no pickled objects), atomically via a temporary file."""
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_arrays(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
