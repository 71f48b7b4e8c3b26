"""One completion's tokens, as they arrive, split into the thinking trace and the answer text.

The split mirrors the sampler's own count (`rtc.sampling.sampler.decode_step`): a token emitted while a
`<think>` block is open, other than its `</think>`, is a reasoning token; everything else is the
answer. So `reasoning_tokens` equals the sampler's `thinking_tokens` for the row. The answer text
(`content`) leaves out the `<answer>` markers and the stop token. A stop string ends the answer: the
text before it is kept, nothing after it is sent.

Text is decoded from the whole segment on each token and only new characters are sent, so a
character spanning tokens comes out whole; a tail that might begin a stop string is held back until
the next token settles it.
"""

import dataclasses
from typing import Callable

REASONING, CONTENT = "reasoning", "content"


@dataclasses.dataclass(frozen=True)
class Markers:
    """The token ids the split reads: the thinking block's ends, and ids the answer text leaves out."""

    think_start: int
    think_end: int
    hidden: frozenset[int]  # <answer>, </answer>, stop ids, pad, bos

    @classmethod
    def of(cls, tokenizer) -> "Markers":
        hidden = {tokenizer.answer_start_id, tokenizer.answer_end_id, tokenizer.pad_id, tokenizer.bos_id}
        hidden.update(tokenizer.stop_ids)
        return cls(tokenizer.think_start_id, tokenizer.think_end_id, frozenset(hidden))


def summary(thinking: str, steps: int) -> str:
    """The last `steps` non-empty lines (steps) of a thinking trace."""
    lines = [line for line in thinking.split("\n") if line.strip()]
    return "\n".join(lines[-steps:])


def held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters of `text` could be the start of a stop string."""
    longest = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:k]):
                longest = k
                break
    return longest


class RowText:
    """The split of one row. `push(token)` per emitted token; `emit(kind, text)` receives new text
    (`kind` is `REASONING` or `CONTENT`) when given; `close()` sends what was held back."""

    def __init__(
        self,
        decode: Callable[[list[int]], str],
        markers: Markers,
        thinking_open: bool = False,
        stops: tuple[str, ...] = (),
        visibility: str = "visible",
        summary_steps: int = 2,
        emit: Callable[[str, str], object] | None = None,
    ):
        self.decode, self.markers, self.stops = decode, markers, stops
        self.visibility, self.summary_steps, self.emit = visibility, summary_steps, emit
        self.thinking = thinking_open  # a <think> block is open (the sampler's `thinking` flag)
        self.tokens: list[int] = []  # every token pushed (up to the stop string, if one was met)
        self.thinking_ids: list[int] = []
        self.answer_ids: list[int] = []
        self.reasoning_tokens = 0
        self.sent = {REASONING: "", CONTENT: ""}
        self.content = ""
        self.stopped = False  # a stop string ended the answer
        self.closed = False

    @property
    def reasoning(self) -> str:
        """The thinking text as the client sees it: whole, summarised, or empty when hidden."""
        text = self.decode(self.thinking_ids)
        if self.visibility == "hidden":
            return ""
        return summary(text, self.summary_steps) if self.visibility == "summary" else text

    def push(self, token: int) -> None:
        if self.stopped or self.closed:
            return
        self.tokens.append(token)
        m = self.markers
        if self.thinking and token != m.think_end:
            self.reasoning_tokens += 1
            self.thinking_ids.append(token)
            if self.visibility == "visible" and not self.answer_ids:  # never reasoning after content
                self._send(REASONING, self.decode(self.thinking_ids).rstrip("\ufffd"))
            return
        if token == m.think_start:
            self.thinking = True
            return
        if token == m.think_end:
            self.thinking = False
            self._summary()
            return
        if token in m.hidden:
            return
        self._summary()
        self.answer_ids.append(token)
        text = self.decode(self.answer_ids).rstrip("\ufffd")
        for stop in self.stops:
            if stop in text:
                text, self.stopped = text[: text.index(stop)], True
        self.content = text
        self._send(CONTENT, text if self.stopped else text[: len(text) - held_back(text, self.stops)])

    def close(self) -> None:
        """The row is finished: send the held-back tail and a summary not sent yet."""
        if self.closed:
            return
        self._summary()
        if not self.stopped and self.answer_ids:
            self.content = self.decode(self.answer_ids)
            self._send(CONTENT, self.content)
        self.closed = True

    def _summary(self) -> None:
        if self.visibility == "summary" and not self.sent[REASONING] and self.thinking_ids:
            self._send(REASONING, self.reasoning)

    def _send(self, kind: str, text: str) -> None:
        sent = self.sent[kind]
        if len(text) > len(sent) and text.startswith(sent):
            self.sent[kind] = text
            if self.emit is not None:
                self.emit(kind, text[len(sent) :])
