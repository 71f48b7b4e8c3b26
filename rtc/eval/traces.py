"""Reading thinking traces: their steps, self-correction (the "aha moment") and repetition.

DeepSeek-AI 2025 (DeepSeek-R1, sec. 2.2.4) describes the "aha moment": mid-training the policy starts to
revisit and re-evaluate earlier steps. Here a trace *self-corrects* when it changes its mind:
- a revision: a step computes the expression of an earlier step (`lhs=value`) and gets another value; or
- a retraction: a step opening with a correction cue such as "Wait" or "Actually", followed (in that step
  or the next) by a step that does not build on the value stated just before the cue (that value is not
  one of its operands) and reaches another value: `37+31=68`, `Actually, no.`, `37+32=69`.
A step repeated with the same value is repetition, not correction (`repetition_rate` counts it), and a
cue the sampler injected (budget forcing's "Wait,": pass it as `injected`) is not the model retracting
anything. The rate over a batch is the fraction of completions that self-correct, plotted over RL training.
"""

import json
import re
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


def _equation(step: str) -> tuple[str, str] | None:
    """`(lhs, value)` of a step `lhs=value`, spaces removed (after any leading cue words); None without '='."""
    if "=" not in step:
        return None
    lhs, value = step.rsplit("=", 1)
    lhs = lhs.replace(" ", "").split(",")[-1]  # "Wait,8*4" -> "8*4"
    return lhs, value.strip()


def _builds_on(lhs: str, value: str) -> bool:
    """Whether `value` (its digits) is one of the operands of the expression `lhs`: a step continuing from it."""
    digits = value.lstrip("-")
    return bool(digits) and digits in re.findall(r"\d+", lhs)


def _opens_with_cue(step: str, injected: Sequence[str]) -> bool:
    """Whether `step` opens with a correction cue the model wrote (not one of the `injected` strings)."""
    if any(step.startswith(cue) for cue in injected if cue):
        return False
    return step.lower().startswith(CORRECTION_CUES)


def self_corrects(text: str, injected: Sequence[str] = ()) -> bool:
    """Whether the trace revises an earlier step's value, or retracts a value and states another.

    `injected`: strings the sampler forced into the trace (e.g. budget forcing's cue); a step opening with
    one of them is not a retraction, though a revision after it still counts.
    """
    steps = thinking_steps(text)
    values: dict[str, str] = {}  # lhs -> the value the trace last gave it
    previous = None  # the value stated by the step before
    for i, step in enumerate(steps):
        equation = _equation(step)
        if _opens_with_cue(step, injected) and previous is not None:
            after = equation or (_equation(steps[i + 1]) if i + 1 < len(steps) else None)
            if after is not None and after[1] != previous and not _builds_on(after[0], previous):
                return True
        if equation is not None:
            lhs, value = equation
            if lhs in values and values[lhs] != value:
                return True
            values[lhs] = value
            previous = value
    return False


def self_correction_rate(texts: Sequence[str], injected: Sequence[str] = ()) -> float:
    """The fraction of completions whose thinking self-corrects (0 for an empty batch)."""
    return sum(self_corrects(t, injected) for t in texts) / len(texts) if texts else 0.0


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
