"""Chat and thinking templates per model family: how a prompt is framed and where reasoning goes.

A base model continues text, so its prompt is the question as is (`plain`). An instruction-tuned
checkpoint expects its family's turn format, the one its `tokenizer_config.json` `chat_template`
renders: Llama 3's header tokens, Qwen2's ChatML, Gemma's `<start_of_turn>`. The reasoning markers
default to rtc's (`rtc.data.special`), which are also DeepSeek-R1's and Qwen3's `<think>` strings;
a tokenizer whose vocabulary lacks one gets it as an added token (`rtc.tokenizer.hf`).
"""

import dataclasses
from collections.abc import Container

from rtc.errors import PretrainedError
from rtc.data.special import ANSWER_END, ANSWER_START, STEP_DELIMITER, THINK_END, THINK_START


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
    """One family's turn strings (`{content}` is the message) and its reasoning markers."""

    name: str
    user_turn: str = "{content}"
    model_turn: str = ""  # opens the model's reply
    system_turn: str = ""  # "": no system role; a system message then leads the user turn
    turn_end: str = ""  # closes a turn; a stop string when sampling chat replies
    think_start: str = THINK_START
    think_end: str = THINK_END
    answer_start: str = ANSWER_START
    answer_end: str = ANSWER_END
    step_delimiter: str = STEP_DELIMITER

    def prompt(self, question: str, system: str = "") -> str:
        """The text that asks `question` and opens the model's turn (no bos: the caller adds it)."""
        if system and not self.system_turn:
            question = f"{system}\n\n{question}"
        head = self.system_turn.format(content=system) if system and self.system_turn else ""
        return head + self.user_turn.format(content=question) + self.model_turn

    @property
    def markers(self) -> tuple[str, ...]:
        """The strings that must each be one token: think and answer delimiters."""
        return (self.think_start, self.think_end, self.answer_start, self.answer_end)


def _header(role: str) -> str:
    return f"<|start_header_id|>{role}<|end_header_id|>\n\n"


TEMPLATES = {
    "plain": ChatTemplate("plain"),
    # Llama 3.x instruct (Meta's prompt format; the bos <|begin_of_text|> is the tokenizer's bos).
    "llama3": ChatTemplate(
        "llama3",
        user_turn=_header("user") + "{content}<|eot_id|>",
        model_turn=_header("assistant"),
        system_turn=_header("system") + "{content}<|eot_id|>",
        turn_end="<|eot_id|>",
    ),
    # Qwen2 / Qwen2.5 (ChatML).
    "chatml": ChatTemplate(
        "chatml",
        user_turn="<|im_start|>user\n{content}<|im_end|>\n",
        model_turn="<|im_start|>assistant\n",
        system_turn="<|im_start|>system\n{content}<|im_end|>\n",
        turn_end="<|im_end|>",
    ),
    # Gemma instruct: no system role.
    "gemma": ChatTemplate(
        "gemma",
        user_turn="<start_of_turn>user\n{content}<end_of_turn>\n",
        model_turn="<start_of_turn>model\n",
        turn_end="<end_of_turn>",
    ),
}

# family -> (chat template, a token its vocabulary has only if the checkpoint knows that template)
_FAMILY_CHAT = {
    "llama": ("llama3", "<|start_header_id|>"),
    "qwen2": ("chatml", "<|im_start|>"),
    "gemma": ("gemma", "<start_of_turn>"),
}


def get_template(name: str) -> ChatTemplate:
    """The template called `name`; an unknown name is an error listing the known ones."""
    if name not in TEMPLATES:
        raise PretrainedError(f"unknown chat template {name!r}; known: {sorted(TEMPLATES)}")
    return TEMPLATES[name]


def family_template(family: str, vocab: Container[str]) -> ChatTemplate:
    """The template for a checkpoint of `family` ("llama", "qwen2", "gemma", "llama2c"): its chat
    format when `vocab` (the token strings) has that format's turn token, else `plain`."""
    name, token = _FAMILY_CHAT.get(family, ("plain", None))
    return TEMPLATES[name] if token is None or token in vocab else TEMPLATES["plain"]
