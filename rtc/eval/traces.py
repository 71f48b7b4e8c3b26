"""Reading thinking traces: their steps, self-correction (the "aha moment") and repetition.

DeepSeek-AI 2025 (DeepSeek-R1, sec. 2.2.4) describes the "aha moment": mid-training the policy starts to
revisit and re-evaluate earlier steps. Here a trace *self-corrects* when one of its steps returns to the
expression of an earlier step (recomputes it) or opens with a correction cue such as "Wait"; the rate
over a batch is the fraction of completions that do, plotted over RL training.
"""

import json
from typing import Sequence

from etils import epath

from rtc.data.special import STEP_DELIMITER, THINK_END, THINK_START
from rtc.metrics.writer import is_remote

CORRECTION_CUES = ("wait", "let me re", "actually", "no,")


def thinking_steps(text: str) -> list[str]:
    """The non-empty steps of the first `<think>` block (to `</think>` or the end of the text)."""
    if THINK_START not in text:
        return []
    thinking = text.split(THINK_START, 1)[1].split(THINK_END, 1)[0]
    return [step.strip() for step in thinking.split(STEP_DELIMITER) if step.strip()]


def _expression(step: str) -> str:
    """The left-hand side of `lhs=value`, spaces removed (the whole step if it has no '=')."""
    return step.split("=", 1)[0].replace(" ", "")


def self_corrects(text: str) -> bool:
    """Whether the trace revisits an earlier step's expression or has a step opening with a correction cue."""
    seen = set()
    for step in thinking_steps(text):
        if step.lower().startswith(CORRECTION_CUES):
            return True
        expression = _expression(step)
        if expression in seen:
            return True
        seen.add(expression)
    return False


def self_correction_rate(texts: Sequence[str]) -> float:
    """The fraction of completions whose thinking self-corrects (0 for an empty batch)."""
    return sum(map(self_corrects, texts)) / len(texts) if texts else 0.0


def repetition_rate(texts: Sequence[str], repeats: int = 3) -> float:
    """The fraction of traces with one step written at least `repeats` times ("reasoning thrashing")."""
    if not texts:
        return 0.0

    def thrashes(text: str) -> bool:
        steps = thinking_steps(text)
        return any(steps.count(step) >= repeats for step in set(steps))

    return sum(map(thrashes, texts)) / len(texts)


TRACES_FILE = "traces.jsonl"


def trace_record(step: int, text: str, question: str, correct: bool) -> dict:
    """One line of `traces.jsonl`: the completion and how its thinking reads."""
    return {
        "step": int(step),
        "question": question,
        "completion": text,
        "correct": bool(correct),
        "self_corrects": self_corrects(text),
        "thrashes": repetition_rate([text]) > 0,
    }


def append_samples(
    path: epath.PathLike, step: int, texts: Sequence[str], questions: Sequence[str], correct
) -> None:
    """Appends one JSON line per completion (`trace_record`) to `path` (an RL run's `traces.jsonl`):
    examples of traces over training. A URL (`gs://...`) is rewritten whole with the new lines at its
    end, as object stores cannot append."""
    lines = "".join(json.dumps(trace_record(step, *x)) + "\n" for x in zip(texts, questions, correct))
    path = epath.Path(path)
    if is_remote(path):
        path.write_text((path.read_text(encoding="utf-8") if path.exists() else "") + lines, encoding="utf-8")
    else:
        with open(path, "a", encoding="utf-8") as f:
            f.write(lines)


def read_samples(path: epath.PathLike) -> list[dict]:
    """The records of a `traces.jsonl` (a local path or a URL), in order."""
    text = epath.Path(path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def truncate_samples(path: epath.PathLike, last_step: int) -> None:
    """Drops the records after `last_step` (a resumed run writes those steps again); no file: nothing."""
    path = epath.Path(path)
    if path.is_file():
        kept = [r for r in read_samples(path) if r["step"] <= last_step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
