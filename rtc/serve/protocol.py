"""The OpenAI chat-completions wire format of `rtc serve`: request bodies, their checks, error bodies.

A body is read strictly (`ChatRequest.read`): an unknown field, a wrong type (a string for a number, a
float for an integer) or a value out of range is a `RequestError`, answered as a 400 whose JSON names
the field, as OpenAI's API does: `{"error": {"message", "type", "param", "code"}}`.

Beyond OpenAI's fields a body may carry Anthropic's `thinking: {type, budget_tokens}` (the thinking
budget), `voting` (`"majority"`: the `n` samples answer by self-consistency), `reasoning_visibility`
(`visible` / `hidden` / `summary`, with `summary_steps`), `router` (route easy queries to the fast
path) and `background` (return a job id at once; poll `GET /v1/jobs/{id}`).
"""

from typing import Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

EFFORTS = ("low", "medium", "high")
VISIBILITIES = ("visible", "hidden", "summary")


class RequestError(Exception):
    """A request the server refuses: its HTTP status, the field at fault (`param`) and why."""

    def __init__(
        self, message: str, param: str | None = None, status: int = 400, code: str = "invalid_value"
    ):
        super().__init__(message)
        self.message, self.param, self.status, self.code = message, param, status, code

    def body(self) -> dict:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        if self.status == 429:
            kind = "rate_limit_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class Thinking(_Strict):
    """Anthropic's extended-thinking setting: `enabled` with a `budget_tokens` cap, or `disabled`."""

    type: Literal["enabled", "disabled"]
    budget_tokens: int | None = Field(default=None, ge=0)


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatRequest(_Strict):
    """`POST /v1/chat/completions`: OpenAI's fields that a reasoning model honours, plus rtc's knobs."""

    model: str
    messages: list[Message] = Field(min_length=1)
    reasoning_effort: Literal["low", "medium", "high"] | None = None
    thinking: Thinking | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)  # OpenAI's older name for the same cap
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    voting: Literal["none", "majority"] = "none"
    reasoning_visibility: Literal["visible", "hidden", "summary"] | None = None
    summary_steps: int | None = Field(default=None, ge=1)
    router: bool | None = None
    background: bool = False
    user: str | None = None

    @classmethod
    def read(cls, body: bytes) -> "ChatRequest":
        """The request in a raw JSON body; a `RequestError` naming the first bad field otherwise."""
        try:
            request = cls.model_validate_json(body or b"")
        except pydantic.ValidationError as error:
            raise validation_error(error) from None
        request.check()
        return request

    def check(self) -> None:
        """Field combinations no single field's type can catch."""
        if self.stop is not None:
            stops = [self.stop] if isinstance(self.stop, str) else self.stop
            if len(stops) > 4 or not all(stops):
                raise RequestError("stop takes up to 4 non-empty strings", "stop")
        if self.thinking is not None:
            if self.thinking.type == "enabled" and self.thinking.budget_tokens is None:
                raise RequestError("thinking of type enabled needs budget_tokens", "thinking.budget_tokens")
            if self.thinking.type == "disabled" and self.thinking.budget_tokens is not None:
                raise RequestError(
                    "thinking of type disabled takes no budget_tokens", "thinking.budget_tokens"
                )
            if self.reasoning_effort is not None:
                raise RequestError("give reasoning_effort or thinking, not both", "reasoning_effort")
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise RequestError("give max_completion_tokens or max_tokens, not both", "max_tokens")
        if self.stream_options is not None and not self.stream:
            raise RequestError("stream_options needs stream: true", "stream_options")
        if self.background and self.stream:
            raise RequestError("a background request is polled, not streamed: drop stream", "background")
        if self.voting == "majority" and self.stream:
            raise RequestError("voting reads whole samples: use stream: false (or background)", "voting")
        if self.summary_steps is not None and self.reasoning_visibility != "summary":
            raise RequestError("summary_steps needs reasoning_visibility: summary", "summary_steps")
        if self.messages[-1].role != "user":
            raise RequestError("the last message must be the user's question", "messages")
        if any(m.role in ("user", "assistant") for m in self.messages[:-1]):
            raise RequestError(
                "rtc serve answers one question: send one user message (after optional system messages)",
                "messages",
            )

    @property
    def question(self) -> str:
        return self.messages[-1].text

    @property
    def system(self) -> str:
        return "\n".join(m.text for m in self.messages if m.role in ("system", "developer"))

    @property
    def stops(self) -> tuple[str, ...]:
        return () if self.stop is None else ((self.stop,) if isinstance(self.stop, str) else tuple(self.stop))

    @property
    def new_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


def field_path(loc: tuple) -> str | None:
    """`("messages", 0, "role")` -> `"messages[0].role"`; pydantic's union branch names are dropped."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("str", "list[TextPart]", "list[str]", "int", "float", "bool") or "[" in str(part):
            continue  # the union member pydantic tried, not a field
        else:
            path += ("." if path else "") + str(part)
    return path or None


def validation_error(error: pydantic.ValidationError) -> RequestError:
    """The first of pydantic's errors as one line naming its field."""
    first = error.errors(include_url=False)[0]
    kind, param = first["type"], field_path(tuple(first["loc"]))
    if kind == "json_invalid":
        return RequestError(f"the body is not valid JSON: {first['msg']}", None, code="invalid_json")
    if kind == "model_type" and not first["loc"]:
        return RequestError("the body must be a JSON object", None, code="invalid_type")
    if kind == "extra_forbidden":
        return RequestError(f"unknown field {param}", param, code="unknown_field")
    if kind == "missing":
        return RequestError(f"missing required field {param}", param, code="missing_field")
    return RequestError(f"{param}: {first['msg']}", param)
