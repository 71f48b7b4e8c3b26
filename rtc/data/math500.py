"""MATH-500, the held-out MATH test problems of PRM800K (Lightman et al. 2023, "Let's Verify Step by
Step"; problems from Hendrycks et al. 2021), read from `<data_root>/math500/test.jsonl` (downloaded there on
first use, `rtc.data.download`).

Test split only. Steps are the solution's blank-line-separated paragraphs, each on one line; the
answer is the `answer` field; difficulty is the MATH `level` (1..5).
"""

import json
import re
from collections.abc import Iterator
from pathlib import Path

from rtc.data import download, jsonl, step_values
from rtc.errors import ConfigError

SPLITS = ("test",)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r]*\n")
_BOXED = "\\boxed{"


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}`, nested braces included; None if absent or unbalanced."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth = 1
    content_start = start + len(_BOXED)
    for position in range(content_start, len(text)):
        if text[position] == "{":
            depth += 1
        elif text[position] == "}":
            depth -= 1
            if depth == 0:
                return text[content_start:position]
    return None


def solution_steps(solution: str) -> list[str]:
    """Paragraphs of `solution`, each with its internal newlines replaced by spaces."""
    paragraphs = _PARAGRAPH_BREAK.split(solution.replace("\r", ""))
    return [paragraph.replace("\n", " ").strip() for paragraph in paragraphs if paragraph.strip()]


def parse_record(raw: dict) -> dict:
    """The common task record for one MATH-500 object; `ValueError` if malformed."""
    if not 1 <= raw["level"] <= 5:
        raise ValueError(f"level {raw['level']} is outside 1..5")
    steps = solution_steps(raw["solution"])
    return {
        "question": raw["problem"],
        "steps": steps,
        "step_values": [step_values.value_after_last_equals(step) for step in steps],
        "answer": raw["answer"],
        "difficulty": raw["level"],
        "meta": json.dumps({"subject": raw["subject"], "unique_id": raw["unique_id"]}),
    }


def read_file(path: Path) -> Iterator[dict]:
    """Records of one MATH-500 jsonl file; a malformed line raises `DataFormatError` naming `path:line`."""
    required = {
        "problem": str,
        "solution": str,
        "answer": str,
        "subject": str,
        "level": int,
        "unique_id": str,
    }
    return jsonl.parse_jsonl(Path(path), required, parse_record)


def generate(split: str = "test", data_dir: str | Path | None = None) -> Iterator[dict]:
    """Records of the test split from `data_dir/math500` as it is, or by default the data root's checked copy
    (`download.ensure`, which fetches a missing file)."""
    if split not in SPLITS:
        raise ConfigError(f"MATH-500 has only a 'test' split (it is the PRM800K held-out set), not {split!r}")
    folder = (
        Path(data_dir) / "math500" if data_dir is not None else download.ensure("math500", ("test.jsonl",))
    )
    return read_file(folder / "test.jsonl")
