"""The rtc tokenizer: a thin wrapper over a sentencepiece model built by `rtc.tokenizer.build`.

Its prompts are rtc's plain format, `[bos] + question + "\\n"` (the "plain" `rtc.tokenizer.templates`
template); a reply ends at `</answer>` or eos (`stop_ids`).
"""

import importlib.resources
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from rtc.data.special import (
    ANSWER_END,
    ANSWER_START,
    SPECIAL_SYMBOLS,
    STEP_DELIMITER,
    THINK_END,
    THINK_START,
)
from rtc.tokenizer.templates import TEMPLATES

ASSET = "assets/rtc_sp1024.model"
REBUILD_COMMAND = "python -m rtc.tokenizer.build"
# sentencepiece writes spaces as U+2581 and decodes every U+2581 back to a space, so a literal
# U+2581 in the text is encoded as its three UTF-8 byte pieces instead.
_SPACE_MARK = "\u2581"


class TokenizerModelError(RuntimeError):
    """The tokenizer model file is missing, corrupt, or lacks the rtc special symbols."""


class Tokenizer:
    """Text <-> token ids; `decode(encode(text)) == text` for any text."""

    template = TEMPLATES["plain"]

    def __init__(self, processor: spm.SentencePieceProcessor, path: str):
        self._processor = processor
        self.path = path
        self._special_ids = {symbol: processor.piece_to_id(symbol) for symbol in SPECIAL_SYMBOLS}
        missing = [symbol for symbol, id_ in self._special_ids.items() if id_ == processor.unk_id()]
        if missing:
            raise TokenizerModelError(
                f"{path} lacks the special symbols {missing}; rebuild with `{REBUILD_COMMAND}`"
            )
        self._space_mark_ids = [
            processor.piece_to_id(f"<0x{byte:02X}>") for byte in _SPACE_MARK.encode("utf-8")
        ]

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Tokenizer":
        """Loads `path`, by default the packaged asset `rtc/tokenizer/assets/rtc_sp1024.model`."""
        resource = importlib.resources.files("rtc.tokenizer").joinpath(ASSET) if path is None else Path(path)
        try:
            model = resource.read_bytes()
        except OSError as error:
            raise TokenizerModelError(
                f"cannot read tokenizer model {resource}: {error}; build it with `{REBUILD_COMMAND}`"
            ) from error
        processor = spm.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(model)
        except RuntimeError as error:
            raise TokenizerModelError(
                f"corrupt tokenizer model {resource}: {error}; rebuild it with `{REBUILD_COMMAND}`"
            ) from error
        return cls(processor, str(resource))

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no bos/eos added)."""
        ids = []
        for index, part in enumerate(text.split(_SPACE_MARK)):
            if index:
                ids.extend(self._space_mark_ids)
            if part:
                ids.extend(self._processor.encode(part))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`: int[T]; the exact inverse of `encode` (pad/bos/eos decode to nothing)."""
        return self._processor.decode([int(id_) for id_ in ids])

    def prompt(self, question: str, system: str = "") -> str:
        """`question` in rtc's plain format, `question + "\\n"` (the ids start with `bos_id`)."""
        return self.template.prompt(question, system)

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Ids that end a reply: `</answer>` and eos."""
        return (self.answer_end_id, self.eos_id)

    @property
    def vocab_size(self) -> int:
        return self._processor.vocab_size()

    @property
    def pad_id(self) -> int:
        return self._processor.pad_id()

    @property
    def bos_id(self) -> int:
        return self._processor.bos_id()

    @property
    def eos_id(self) -> int:
        return self._processor.eos_id()

    @property
    def think_start_id(self) -> int:
        return self._special_ids[THINK_START]

    @property
    def think_end_id(self) -> int:
        return self._special_ids[THINK_END]

    @property
    def answer_start_id(self) -> int:
        return self._special_ids[ANSWER_START]

    @property
    def answer_end_id(self) -> int:
        return self._special_ids[ANSWER_END]

    @property
    def step_id(self) -> int:
        """The step delimiter (newline) token."""
        return self._special_ids[STEP_DELIMITER]
