"""Chat and thinking templates: how a prompt is framed and where reasoning goes.

A base model continues text, so its prompt is rtc's plain format, the question and the step
delimiter (`plain`). An instruction-tuned checkpoint expects its own turn format: when its
`tokenizer_config.json` (or `chat_template.jinja`) has a `chat_template`, `JinjaTemplate` renders it
as transformers' `apply_chat_template(messages, add_generation_prompt=True)` does; without one, the
hand-written family template stands in (Llama 3's header tokens, Qwen2's ChatML, Gemma's
`<start_of_turn>`). The reasoning markers default to rtc's (`rtc.data.special`), which are also
DeepSeek-R1's and Qwen3's `<think>` strings; a tokenizer whose vocabulary lacks one gets it as an
added token (`rtc.tokenizer.hf`).

A prompt's text never holds the bos token: `ChatTemplate.bos` says whether the prompt's ids start with
the tokenizer's bos id, and `rtc.data.format.prompt_tokens` adds it. A rendered chat template that
starts with the bos string has it stripped (and `bos` set), so the bos is never doubled.
"""

import dataclasses
import datetime
import functools
import json
from collections.abc import Container

import jinja2
import jinja2.ext
import jinja2.sandbox

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
    bos: bool = True  # the prompt's ids start with the tokenizer's bos id (the text leaves it out)
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
    # rtc's own format: `question\n` (`rtc.data.format.prompt_text`), what rtc's models train on.
    "plain": ChatTemplate("plain", user_turn="{content}" + STEP_DELIMITER),
    # Llama 3.x instruct (Meta's prompt format; the bos <|begin_of_text|> is the tokenizer's bos).
    "llama3": ChatTemplate(
        "llama3",
        user_turn=_header("user") + "{content}<|eot_id|>",
        model_turn=_header("assistant"),
        system_turn=_header("system") + "{content}<|eot_id|>",
        turn_end="<|eot_id|>",
    ),
    # Qwen2 / Qwen2.5 (ChatML; no bos token).
    "chatml": ChatTemplate(
        "chatml",
        user_turn="<|im_start|>user\n{content}<|im_end|>\n",
        model_turn="<|im_start|>assistant\n",
        system_turn="<|im_start|>system\n{content}<|im_end|>\n",
        turn_end="<|im_end|>",
        bos=False,
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


# --- a checkpoint's own chat template ----------------------------------------------------------------

_REPLY_PROBE = "rtc-reply-probe"  # an assistant message whose rendering shows what closes a turn


@dataclasses.dataclass(frozen=True)
class JinjaTemplate(ChatTemplate):
    """A checkpoint's `chat_template` (Jinja source), rendered with `messages`, `add_generation_prompt`
    and the tokenizer's special-token strings (`bos_token`, `eos_token`, ...) as transformers'
    `apply_chat_template` renders it. Build with `jinja_template`, which fills `bos` and `turn_end`."""

    source: str = ""
    special_tokens: tuple[tuple[str, str], ...] = ()  # (("bos_token", "<s>"), ...)

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The template's text for `messages` (bos string included when the template writes it)."""
        try:
            return _compile(self.source).render(
                messages=messages,
                tools=None,
                documents=None,
                add_generation_prompt=add_generation_prompt,
                **dict(self.special_tokens),
            )
        except jinja2.TemplateError as error:
            raise PretrainedError(f"chat template {self.name!r} cannot render {messages}: {error}") from error

    def prompt(self, question: str, system: str = "") -> str:
        """The rendered user turn and generation prompt, without a leading bos string."""
        text = self.render(chat_messages(question, system))
        bos = dict(self.special_tokens).get("bos_token", "")
        return text[len(bos) :] if self.bos and text.startswith(bos) else text


def chat_messages(question: str, system: str = "") -> list[dict]:
    """`[{"role": "system", ...}, {"role": "user", "content": question}]` (no system entry when empty)."""
    head = [{"role": "system", "content": system}] if system else []
    return head + [{"role": "user", "content": question}]


def jinja_template(source: str, special_tokens: dict[str, str], name: str = "checkpoint") -> JinjaTemplate:
    """The template `source` with `bos` (its render starts with the bos string) and `turn_end` (the
    text after an assistant message, stripped; "" when the template renders no assistant turn)."""
    _compile(source)  # a template that does not compile is an error now, not at the first prompt
    tokens = tuple((k, v) for k, v in special_tokens.items() if v)
    template = JinjaTemplate(name, source=source, special_tokens=tokens)
    bos = special_tokens.get("bos_token") or ""
    starts_with_bos = bool(bos) and template.render(chat_messages("q")).startswith(bos)
    try:
        reply = chat_messages("q") + [{"role": "assistant", "content": _REPLY_PROBE}]
        rendered = template.render(reply, add_generation_prompt=False)
        turn_end = rendered[rendered.rindex(_REPLY_PROBE) + len(_REPLY_PROBE) :].strip()
    except (PretrainedError, ValueError):
        turn_end = ""
    return dataclasses.replace(template, bos=starts_with_bos, turn_end=turn_end)


class _Generation(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` marks an assistant reply (transformers' assistant
    masks); rtc renders its body as is."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.Scope(body).set_lineno(lineno)


def _raise_exception(message):
    raise jinja2.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    """Jinja's own `tojson` escapes HTML characters; chat templates expect plain `json.dumps`."""
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


# The date a template's `strftime_now` renders. transformers renders today's; Llama 3.x's template writes it
# into every prompt ("Today Date: ..."), so with the clock a run's prompts would change from one day to the
# next and a resumed run would train on other text than an uninterrupted one. Fixed here (the date Llama
# 3.1's template falls back to); set it to render another.
TEMPLATE_DATE = datetime.datetime(2024, 7, 26)


def _strftime_now(format):
    return TEMPLATE_DATE.strftime(format)


@functools.lru_cache(maxsize=16)
def _compile(source: str) -> jinja2.Template:
    """`source` compiled in transformers' chat-template environment (`_compile_jinja_template` in
    `transformers.utils.chat_template_utils`): a sandbox that only reads plain data, `trim_blocks`
    and `lstrip_blocks`, `raise_exception`, `strftime_now`, `tojson`, loop controls, `{% generation %}`."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateError as error:
        raise PretrainedError(f"cannot compile the chat template: {error}") from error
