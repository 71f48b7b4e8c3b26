"""Reading JSON-lines data files strictly: any bad line raises with its `path:line`."""

import json
from collections.abc import Callable, Iterator
from pathlib import Path


class DataFormatError(ValueError):
    """A data file line is malformed; the message starts with `path:line:` (1-based line)."""


def read_jsonl(path: Path, required: dict[str, type]) -> Iterator[tuple[int, dict]]:
    """Yields `(line_number, object)` for each line, checking the `required` keys and their types."""
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path} (set $RTC_DATA_DIR or pass data_dir)")
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            where = f"{path}:{line_number}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataFormatError(f"{where}: invalid JSON ({error.msg})") from error
            if not isinstance(raw, dict):
                raise DataFormatError(f"{where}: expected a JSON object, got {type(raw).__name__}")
            for key, kind in required.items():
                if key not in raw:
                    raise DataFormatError(f"{where}: missing key {key!r}")
                if not isinstance(raw[key], kind) or isinstance(raw[key], bool):
                    raise DataFormatError(f"{where}: key {key!r} should be {kind.__name__}")
            yield line_number, raw


def parse_jsonl(path: Path, required: dict[str, type], parse: Callable[[dict], dict]) -> Iterator[dict]:
    """Applies `parse` to each object of `path`; a `ValueError` from it is re-raised with `path:line`."""
    for line_number, raw in read_jsonl(path, required):
        try:
            yield parse(raw)
        except DataFormatError:
            raise
        except ValueError as error:
            raise DataFormatError(f"{path}:{line_number}: {error}") from error
