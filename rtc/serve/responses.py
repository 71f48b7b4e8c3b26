"""Response bodies in OpenAI's chat-completions format, with rtc's additions.

`usage` counts every generated token as a completion token and the thinking ones again in
`completion_tokens_details.reasoning_tokens` (reasoning is billed as output, as OpenAI bills it);
`cost` estimates the price from the server's price per million input and output tokens; `route` says
which path served the request; with `voting: "majority"` the one choice is the sample whose answer
won the vote (self-consistency, Wang et al. 2023), and `voting` lists every sample's answer.
"""

import dataclasses

from rtc.data.answers import extract_answer
from rtc.eval import voting
from rtc.serve.engine import RowResult
from rtc.serve.plan import Plan


@dataclasses.dataclass(frozen=True)
class Prices:
    """US dollars per million input (prompt) and output (completion, reasoning included) tokens."""

    input_per_million: float
    output_per_million: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> dict:
        inp = prompt_tokens * self.input_per_million / 1e6
        out = completion_tokens * self.output_per_million / 1e6
        return {"input_usd": inp, "output_usd": out, "total_usd": inp + out}


def usage(plan: Plan, rows: list[RowResult]) -> dict:
    completion = sum(r.tokens for r in rows)
    return {
        "prompt_tokens": len(plan.prompt),
        "completion_tokens": completion,
        "total_tokens": len(plan.prompt) + completion,
        "completion_tokens_details": {"reasoning_tokens": sum(r.reasoning_tokens for r in rows)},
    }


def message(row: RowResult) -> dict:
    body = {"role": "assistant", "content": row.split.content}
    if row.split.visibility != "hidden":
        body["reasoning_content"] = row.split.reasoning
    return body


def vote(rows: list[RowResult]) -> tuple[int, dict]:
    """The sample chosen by majority vote over the answers read from each sample's text, and the tally."""
    answers = [extract_answer(r.split.decode(r.split.tokens)) for r in rows]
    best = int(voting.majority_vote([answers])[0])
    counts: dict[str, int] = {}
    for answer in answers:
        key = voting.normalize(answer)
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    return best, {"method": "majority", "answers": answers, "votes": counts, "chosen": best}


def completion(
    rid: str, created: int, model: str, plan: Plan, rows: list[RowResult], prices: Prices, vote_on: bool
) -> dict:
    """The `chat.completion` body of a finished request."""
    body = {"id": rid, "object": "chat.completion", "created": created, "model": model}
    if vote_on:
        best, tally = vote(rows)
        chosen = [(0, rows[best])]
        body["voting"] = tally
    else:
        chosen = list(enumerate(rows))
    body["choices"] = [
        {"index": i, "message": message(r), "finish_reason": r.finish_reason, "logprobs": None}
        for i, r in chosen
    ]
    body["usage"] = usage(plan, rows)
    body["cost"] = prices.cost(body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"])
    body["route"] = plan.route.body()
    return body


def chunk(rid: str, created: int, model: str, choices: list[dict], **extra) -> dict:
    """One `chat.completion.chunk` of a stream."""
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
        **extra,
    }


def delta(index: int, kind: str, text: str) -> dict:
    """A choice's delta: `reasoning_content` for thinking text, `content` for the answer."""
    field = "reasoning_content" if kind == "reasoning" else "content"
    return {"index": index, "delta": {field: text}, "finish_reason": None}
