"""From a checked request to what the engine runs: prompt ids, the static sampler settings, the route.

Requests are batched by their `BatchKey`, the settings the compiled sampler takes as static
(`rtc.sampling.sampler.SamplerConfig`): `max_new_tokens`, the thinking limit, `temperature`, `top_p`.
A request with a `seed` and `temperature > 0` gets a key of its own (`solo`), so that the seed
reproduces it: its batch then holds its rows only, padded to a power of two with copies.
"""

import dataclasses
import itertools

from rtc.data.format import prompt_tokens
from rtc.sampling import sampler as sampler_lib
from rtc.sampling.budget import thinking_limit
from rtc.serve.protocol import ChatRequest, RequestError
from rtc.serve.router import Route, Router

DEFAULT_MAX_NEW_TOKENS = 256
_solo_ids = itertools.count(1)


@dataclasses.dataclass(frozen=True)
class BatchKey:
    """The static sampler settings a batch shares; requests with equal keys run together."""

    max_new_tokens: int
    thinking_limit: int | None
    temperature: float
    top_p: float
    solo: int = 0  # nonzero: a seeded sampled request that runs alone


@dataclasses.dataclass(frozen=True)
class Plan:
    """One request as the engine runs it: `n` rows of `prompt`, and how its text is shown."""

    prompt: tuple[int, ...]
    key: BatchKey
    n: int
    seed: int | None
    thinking_open: bool  # the prompt leaves a <think> block open (a chat template's opener)
    stops: tuple[str, ...]
    visibility: str
    summary_steps: int
    route: Route


def default_room(prompt_len: int, context: int) -> int:
    """`max_new_tokens` by default: what fits after the prompt's length bucket, at most 256 (as
    `rtc.Reasoner.generate`)."""
    padded = min(sampler_lib.bucket_length(min(prompt_len, context)), context - 1)
    return max(1, min(DEFAULT_MAX_NEW_TOKENS, context - max(padded, prompt_len)))


def opens_thinking(ids: list[int], think_start: int, think_end: int) -> bool:
    """The prompt's last `<think>` follows its last `</think>` (as `sampler.prompt_opens_thinking`)."""
    starts = [i for i, t in enumerate(ids) if t == think_start]
    ends = [i for i, t in enumerate(ids) if t == think_end]
    return bool(starts) and (not ends or starts[-1] > ends[-1])


def plan(request: ChatRequest, reasoner, settings, router: Router | None) -> Plan:
    """The `Plan` of `request` on `reasoner` under the server's `settings`; `RequestError` when it
    does not fit (prompt longer than the context, more rows than a batch, an unknown model)."""
    if request.model not in (settings.model_name, "default"):
        raise RequestError(
            f"model {request.model!r} is not served here; this server serves {settings.model_name!r}",
            "model",
            status=404,
            code="model_not_found",
        )
    if request.n > settings.max_batch:
        raise RequestError(f"n must be <= {settings.max_batch} (the server's max_batch)", "n")
    tokenizer, context = reasoner.tokenizer, reasoner.model.config.max_seq_len
    ids = prompt_tokens(tokenizer, {"question": request.question, "system": request.system})
    if len(ids) >= context or len(ids) > sampler_lib.PROMPT_BUCKETS[-1]:
        raise RequestError(
            f"the prompt is {len(ids)} tokens, which leaves no room in the model's context of {context}",
            "messages",
            code="context_length_exceeded",
        )
    new_tokens = request.new_tokens or default_room(len(ids), context)
    if len(ids) + new_tokens > context:
        field = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        raise RequestError(
            f"the prompt ({len(ids)} tokens) plus {field}={new_tokens} exceeds the model's context of "
            f"{context} tokens",
            field if request.new_tokens else "messages",
            code="context_length_exceeded",
        )
    budget = None
    if request.thinking is not None:
        budget = 0 if request.thinking.type == "disabled" else request.thinking.budget_tokens
    limit = thinking_limit(new_tokens, reasoning_effort=request.reasoning_effort, budget_tokens=budget)
    use_router = settings.router_enabled if request.router is None else request.router
    route = Route("full")
    if use_router:
        if router is None:
            raise RequestError("this server has no router configured", "router")
        route = router.route(request.question, ids)
        if route.path == "fast":
            limit = router.fast_limit(limit, new_tokens, thinking_limit(new_tokens, reasoning_effort="low"))
    temperature = float(request.temperature)
    top_p = float(request.top_p) if temperature else 1.0
    solo = next(_solo_ids) if request.seed is not None and temperature > 0 else 0
    visibility = request.reasoning_visibility or settings.thinking_visibility
    return Plan(
        prompt=tuple(ids),
        key=BatchKey(new_tokens, limit, temperature, top_p, solo),
        n=request.n,
        seed=request.seed,
        thinking_open=opens_thinking(ids, tokenizer.think_start_id, tokenizer.think_end_id),
        stops=request.stops,
        visibility=visibility,
        summary_steps=request.summary_steps or settings.summary_steps,
        route=route,
    )
