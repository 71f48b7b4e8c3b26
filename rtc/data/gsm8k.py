"""GSM8K grade-school math word problems (Cobbe et al. 2021, "Training Verifiers to Solve Math
Word Problems"), read from `<data_root>/gsm8k/{train,test}.jsonl` (downloaded there on first use,
`rtc.data.download`).

Calculator annotations `<<expr=result>>` are deleted; the steps are the non-empty solution lines
before the `#### ` line; the answer is the text after `#### ` without thousands commas.
Difficulty is the number of steps clipped to 1..8 (solutions have 2 to 11 lines; 99.8% have at most 8).
"""

import re
from collections.abc import Iterator
from pathlib import Path

from rtc.data import download, jsonl, step_values
from rtc.errors import ConfigError

SPLITS = ("train", "test")
MAX_DIFFICULTY = 8
_ANNOTATION = re.compile(r"<<.*?>>")
_FINAL_MARK = "#### "


def strip_annotations(text: str) -> str:
    """`"= <<9*2=18>>18"` -> `"= 18"`."""
    return _ANNOTATION.sub("", text)


def parse_record(raw: dict) -> dict:
    """The common task record for one `{"question", "answer"}` object; `ValueError` if malformed."""
    lines = strip_annotations(raw["answer"]).split("\n")
    final = [i for i, line in enumerate(lines) if line.startswith(_FINAL_MARK)]
    if not final:
        raise ValueError(f"no '{_FINAL_MARK.strip()}' final-answer line in the solution")
    steps = [line.strip() for line in lines[: final[-1]] if line.strip()]
    answer = lines[final[-1]][len(_FINAL_MARK) :].strip().replace(",", "")
    if not answer:
        raise ValueError("empty final answer after '####'")
    return {
        "question": raw["question"],
        "steps": steps,
        "step_values": [step_values.value_after_last_equals(step) for step in steps],
        "answer": answer,
        "difficulty": min(max(len(steps), 1), MAX_DIFFICULTY),
        "meta": "{}",
    }


def read_file(path: Path) -> Iterator[dict]:
    """Records of one GSM8K jsonl file; a malformed line raises `DataFormatError` naming `path:line`."""
    return jsonl.parse_jsonl(Path(path), {"question": str, "answer": str}, parse_record)


def generate(split: str, data_dir: str | Path | None = None) -> Iterator[dict]:
    """Records of `split` ('train' or 'test') from `data_dir/gsm8k` as it is, or by default the data root's
    checked copy (`download.ensure`, which fetches a missing file)."""
    if split not in SPLITS:
        raise ConfigError(f"GSM8K has splits {SPLITS}, not {split!r}")
    name = f"{split}.jsonl"
    folder = Path(data_dir) / "gsm8k" if data_dir is not None else download.ensure("gsm8k", (name,))
    return read_file(folder / name)
