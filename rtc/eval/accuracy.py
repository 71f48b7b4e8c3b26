"""Held-out accuracy by difficulty: sample completions, extract answers, check with the task's verifier."""

import collections
from typing import Sequence

import jax
import numpy as np

from rtc.data.answers import extract_answer
from rtc.data.format import prompt_tokens
from rtc.parallel import mesh as mesh_lib
from rtc.sampling.sampler import SamplerConfig, completions, generate


def sample_completions(
    model,
    params,
    tokenizer,
    records: Sequence[dict],
    cfg: SamplerConfig,
    rng: jax.Array,
    batch_size: int,
    stream=None,
    batch_sharding=None,
) -> tuple[list[str], list[int]]:
    """Completion texts and thinking-token counts for `records`, in fixed-size batches.

    The last batch is padded with copies of its first prompt so every call has one shape. With
    `batch_sharding` each device decodes its share of the rows.
    """
    texts, thinking = [], []
    for start in range(0, len(records), batch_size):
        chunk = [prompt_tokens(tokenizer, r) for r in records[start : start + batch_size]]
        real = len(chunk)
        chunk += [chunk[0]] * (batch_size - real)
        out = generate(
            model, params, chunk, jax.random.fold_in(rng, start), cfg, stream, batch_sharding=batch_sharding
        )
        out = mesh_lib.to_host(out)  # rows live on other processes' devices too
        texts += [tokenizer.decode(ids) for ids in completions(out)[:real]]
        thinking += np.asarray(out.thinking_tokens)[:real].tolist()
    return texts, thinking


def accuracy_by_difficulty(task, records: Sequence[dict], texts: Sequence[str]) -> dict[str, float]:
    """`{"accuracy": overall, "accuracy/level_1": ..., ...}` from completions and gold records."""
    correct = collections.defaultdict(list)
    for record, text in zip(records, texts):
        ok = task.is_correct(extract_answer(text), record)
        correct[int(record["difficulty"])].append(ok)
        correct["all"].append(ok)
    result = {"accuracy": float(np.mean(correct.pop("all")))}
    for level in sorted(correct):
        result[f"accuracy/level_{level}"] = float(np.mean(correct[level]))
    return result


def format_table(results: dict[str, dict[str, float]]) -> str:
    """A text table: one row per difficulty level, one column per decoding mode."""
    modes = list(results)
    keys = [k for k in results[modes[0]] if k.startswith("accuracy/")] + ["accuracy"]
    lines = [f"{'difficulty':<12}" + "".join(f"{m:>12}" for m in modes)]
    for key in keys:
        label = key.split("_")[-1] if "/" in key else "all"
        lines.append(f"{label:<12}" + "".join(f"{results[m][key]:>12.1%}" for m in modes))
    return "\n".join(lines)
