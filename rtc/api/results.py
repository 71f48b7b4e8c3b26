"""What `Reasoner.generate` and `Reasoner.search` return, and the verifier a search scores with."""

import dataclasses
from pathlib import Path
from typing import Sequence

from etils import epath

from rtc import recipes
from rtc.data.answers import extract_answer
from rtc.errors import ConfigError
from rtc.rewards import training as rm_training


@dataclasses.dataclass(frozen=True)
class Sample:
    """One completion: its text, the thinking trace and answer read out of it, and its token counts.

    `thinking_tokens` are the tokens between `<think>` and `</think>` (what a budget caps);
    `answer_tokens` those after `</think>` (all of them when there is no thinking block).
    """

    text: str
    thinking: str
    answer: str | None
    thinking_tokens: int
    answer_tokens: int
    tokens: tuple[int, ...]
    finished: bool  # ended with a stop token (else it ran out of max_new_tokens)

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)


@dataclasses.dataclass(frozen=True)
class Generation:
    """The `n` samples of one text; `.text`, `.thinking`, `.answer` and the counts are the first's."""

    prompt: str
    samples: tuple[Sample, ...]

    text = property(lambda self: self.samples[0].text)
    thinking = property(lambda self: self.samples[0].thinking)
    answer = property(lambda self: self.samples[0].answer)
    thinking_tokens = property(lambda self: self.samples[0].thinking_tokens)
    answer_tokens = property(lambda self: self.samples[0].answer_tokens)
    num_tokens = property(lambda self: self.samples[0].num_tokens)
    finished = property(lambda self: self.samples[0].finished)


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """One text's search: every candidate with its score, and the chosen one (`best`).

    `scores`: the verifier's path scores (majority: each candidate's share of the votes; confidence
    strategies: each trace's confidence, its lowest sliding-window group confidence); a duplicate
    candidate (a copy another branch also holds) is marked in `duplicate`.
    """

    prompt: str
    candidates: tuple[Sample, ...]
    scores: tuple[float, ...]
    duplicate: tuple[bool, ...]
    best: int

    @property
    def chosen(self) -> Sample:
        return self.candidates[self.best]

    answer = property(lambda self: self.chosen.answer)
    thinking = property(lambda self: self.chosen.thinking)
    text = property(lambda self: self.chosen.text)


@dataclasses.dataclass(frozen=True)
class Verifier:
    """A trained ORM or PRM (`rtc.rewards`): its model with the scalar head, params, and how it scores; or a
    checker, a language model that reads each step's probability (`verifier_kind="checker"`)."""

    model: object
    params: dict
    kind: str  # "orm", "prm" or "checker"
    aggregation: str  # how step scores make a path score (last / min / product / mean)


def load_verifier(workdir: str | Path, step: int | None = None) -> Verifier:
    """The reward model of a finished ORM/PRM run in `workdir` (default: its latest checkpoint), or the
    checker of an SFT run (experiments/configs/checker.py; a path scores its probability, `product`)."""
    if not (epath.Path(workdir) / rm_training.DESCRIPTION_FILE).is_file():
        config, _, model, params = recipes.load_run(workdir, step)
        if config.mode != "sft":
            raise ConfigError(
                f"{workdir} is a {config.mode!r} run: a verifier is an ORM, a PRM or an SFT run"
            )
        return Verifier(model, params, "checker", "product")
    model, params = rm_training.load_reward_model(workdir, step)
    description = rm_training.load_description(workdir)
    return Verifier(model, params, description["kind"], description["aggregation"])


def _parse(tokenizer, ids: list[int], thinking_tokens: int, stop_ids: Sequence[int]) -> Sample:
    """The sample of one row's emitted tokens `ids` (up to and including its stop token)."""
    start, end = tokenizer.think_start_id, tokenizer.think_end_id
    opened = ids.index(start) + 1 if start in ids else (0 if thinking_tokens else None)
    closed = ids.index(end) if end in ids else len(ids)
    thinking = "" if opened is None else tokenizer.decode(ids[opened:closed])
    after = ids[closed + 1 :] if end in ids else ([] if opened is not None else ids)
    text = tokenizer.decode(ids)
    return Sample(
        text=text,
        thinking=thinking,
        answer=extract_answer(text),
        thinking_tokens=int(thinking_tokens),
        answer_tokens=len(after),
        tokens=tuple(ids),
        finished=bool(ids) and ids[-1] in stop_ids,
    )
