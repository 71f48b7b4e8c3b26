"""PRM800K (Lightman et al. 2023) human step labels, read from a file: a path as given, or a registered
release file named relative to the data root (`prm800k/phase1_test.jsonl`, `prm800k/phase2_test.jsonl`),
downloaded there and checked on first use (`rtc.data.download`). The registered files are the release's
`*_test` phases: they label solutions to its held-out test problems, which are MATH-500's, so a PRM
trained on them must not be scored on MATH-500 (`load` warns); the much larger train phases are read from a
path given by hand.

Format: the PRM800K release's (github.com/openai/prm800k; one labelled solution per JSON line; the ratings live
in `label.steps[i].completions[j].rating`). The labelled trajectory takes, at each step, the chosen
completion, else the labeler's own `human_completion` (written because every candidate was wrong,
so it is correct: +1), else (labelling stopped at this step) the first rated completion.

Ratings map to labels as in the paper: +1 -> 1, -1 -> 0, neutral 0 -> 1 by default
(`neutral="positive"`; `"negative"` is the stricter reading). Supervision stops after the first -1
step ("we deliberately choose to supervise only up to the first incorrect step", Lightman et al.).

Defined behaviour for incomplete records, each counted in the returned counts:
- a step whose rating is missing (null): the trajectory is cut before it (`truncated_missing_rating`);
  a record left with no rated step is skipped (`no_rated_steps`);
- `finish_reason == "bad_problem"`: skipped (`bad_problem`), the labeler judged the problem broken;
- a malformed record (missing keys, bad types, a rating outside {-1, 0, 1, null}) raises
  `DataFormatError` naming `path:line`.

A step's own newlines become spaces, since in rtc the newline is the step delimiter; an empty step
text is kept, so the `empty_step` skip of the labelers counts it.
"""

import collections
import logging
import dataclasses
import re
from pathlib import Path

from rtc.data import download
from rtc.data.jsonl import DataFormatError, read_jsonl
from rtc.data.format import prompt_tokens
from rtc.rewards.rm_data import Solution
from rtc.data.special import ANSWER_END, ANSWER_START, STEP_DELIMITER, THINK_END, THINK_START

NEUTRAL = {"positive": 1.0, "negative": 0.0}
_NEWLINES = re.compile(r"\s*\n\s*")


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """A labelled solution: step texts and one label per step."""

    problem: str
    answer: str  # the MATH ground truth
    generated_answer: str  # the solution's own final answer ("" in phase 1)
    steps: tuple[str, ...]
    labels: tuple[float, ...]


def rating_label(rating: int, neutral: str = "positive") -> float:
    """+1 -> 1.0, -1 -> 0.0, 0 -> `NEUTRAL[neutral]`."""
    if neutral not in NEUTRAL:
        raise ValueError(f"neutral must be one of {sorted(NEUTRAL)}, got {neutral!r}")
    return {1: 1.0, -1: 0.0, 0: NEUTRAL[neutral]}[rating]


def _field(obj: dict, key: str, kinds: tuple, where: str):
    if not isinstance(obj, dict) or key not in obj:
        raise ValueError(f"{where}: missing key {key!r}")
    value = obj[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ValueError(f"{where}: {key!r} has type {type(value).__name__}")
    return value


def _step_choice(step: dict, where: str) -> tuple[str, int | None, bool]:
    """(text, rating or None, whether the trajectory stops after this step)."""
    candidates = _field(step, "completions", (list,), where)
    chosen = _field(step, "chosen_completion", (int, type(None)), where)
    human = _field(step, "human_completion", (str, type(None)), where)
    for j, c in enumerate(candidates):
        _field(c, "text", (str,), f"{where}.completions[{j}]")
        rating = _field(c, "rating", (int, type(None)), f"{where}.completions[{j}]")
        if rating not in (-1, 0, 1, None):
            raise ValueError(f"{where}.completions[{j}]: rating {rating} is not -1, 0, 1 or null")
    if chosen is not None:
        if not 0 <= chosen < len(candidates):
            raise ValueError(
                f"{where}: chosen_completion {chosen} out of range ({len(candidates)} completions)"
            )
        return candidates[chosen]["text"], candidates[chosen]["rating"], False
    if human is not None:
        return human, 1, False
    rated = [c for c in candidates if c["rating"] is not None]
    if rated:
        return rated[0]["text"], rated[0]["rating"], True
    return (candidates[0]["text"] if candidates else ""), None, True


def parse_record(raw: dict, neutral: str = "positive") -> tuple[Trajectory | None, str | None]:
    """`(trajectory, None)`, or `(None, skip reason)`; `ValueError` for a malformed record.

    A trajectory cut at a missing rating comes back with reason `truncated_missing_rating`.
    """
    question = _field(raw, "question", (dict,), "record")
    label = _field(raw, "label", (dict,), "record")
    problem = _field(question, "problem", (str,), "question")
    answer = question.get("ground_truth_answer") or ""
    generated = question.get("pre_generated_answer") or ""
    steps = _field(label, "steps", (list,), "label")
    if label.get("finish_reason") == "bad_problem":
        return None, "bad_problem"
    texts, labels, note = [], [], None
    for i, step in enumerate(steps):
        text, rating, stops = _step_choice(step, f"label.steps[{i}]")
        if rating is None:
            note = "truncated_missing_rating"
            break
        texts.append(_NEWLINES.sub(" ", text).strip())
        labels.append(rating_label(rating, neutral))
        if stops or rating == -1:
            break
    if not texts:
        return None, "no_rated_steps"
    return Trajectory(problem, answer, generated, tuple(texts), tuple(labels)), note


def completion_text(trajectory: Trajectory) -> str:
    """The trajectory in rtc's reasoning format: `<think>step\\n...\\n</think><answer>...</answer>`."""
    thinking = "".join(step + STEP_DELIMITER for step in trajectory.steps)
    return THINK_START + thinking + THINK_END + ANSWER_START + trajectory.generated_answer + ANSWER_END


def to_solution(trajectory: Trajectory, tokenizer) -> Solution:
    """A `Solution` carrying the human labels; its record is a MATH record (difficulty unknown: 0)."""
    record = {
        "question": trajectory.problem,
        "answer": trajectory.answer,
        "steps": [],
        "step_values": [],
        "difficulty": 0,
    }
    return Solution(
        record=record,
        prompt_ids=tuple(prompt_tokens(tokenizer, record)),
        completion_ids=tuple(tokenizer.encode(completion_text(trajectory))),
        human_labels=trajectory.labels,
    )


def resolve(path: str | Path) -> Path:
    """`path` when it exists or is not a registered `dataset/file` name; else the data root's checked copy
    of that file (`download.ensure_file`, which fetches it when missing)."""
    given = Path(path).expanduser()
    if given.exists() or given.is_absolute() or len(given.parts) != 2:
        return given
    try:
        download.source_of(*given.parts)
    except KeyError:
        return given
    return download.ensure_file(*given.parts)


def load(path: str | Path, tokenizer, neutral: str = "positive") -> tuple[list[Solution], dict[str, int]]:
    """The labelled solutions of a PRM800K `.jsonl` file (`resolve`d) and counts (`records`, `used`, skip
    reasons)."""
    path = resolve(path)
    if path.name.endswith("_test.jsonl"):
        logging.warning(
            "%s labels PRM800K's test problems, which are MATH-500's: do not evaluate on MATH-500 "
            "a reward model trained on it",
            path,
        )
    counts = collections.Counter()
    solutions = []
    for line, raw in read_jsonl(path, {"question": dict, "label": dict}):
        counts["records"] += 1
        try:
            trajectory, reason = parse_record(raw, neutral)
        except ValueError as error:
            raise DataFormatError(f"{path}:{line}: {error}") from error
        if reason:
            counts[reason] += 1
        if trajectory is not None:
            counts["used"] += 1
            solutions.append(to_solution(trajectory, tokenizer))
    return solutions, dict(counts)
