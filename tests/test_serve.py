"""`rtc serve` driven by the official `openai` client against the real server on 127.0.0.1."""

import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rtc
from experiments.configs import serve as serve_config
from rtc import main as rtc_main
from rtc.serve.app import Settings, create_app, settings_from_config
from rtc.serve.jobs import JobTable
from rtc.serve.router import Router, prompt_length
from rtc.serve.split import Markers, RowText, held_back, summary

QUESTION = "Compute 7+2."
MAX_QUEUE = 4


@pytest.fixture(scope="module")
def thinker(tmp_path_factory, data_dir):
    """A tiny model trained long enough (160 SFT steps on level-1 problems) to open and close its
    thinking block, as in test_api."""
    from helpers import quickstart_config

    from rtc import recipes

    config = quickstart_config("tiny")
    config.data_dir = str(data_dir)
    config.task.levels = (1,)
    config.sft.update(num_steps=160, checkpoint_every=160, log_every=160)
    workdir = tmp_path_factory.mktemp("thinker")
    recipes.sft_recipe(config, workdir)
    return rtc.load(workdir)


@pytest.fixture(scope="module")
def server(thinker):
    """(base url, app): the server on a free port, with a tiny queue and a router whose fast path
    skips thinking."""
    from helpers import free_port

    settings = Settings(model_name="tiny", max_batch=8, max_queue=MAX_QUEUE, batch_wait_ms=20)
    app = create_app(thinker, settings, Router(prompt_length(32), threshold=0.5, fast_path="no_thinking"))
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    while not uv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app
    uv.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0)


def ask(client, **kwargs):
    return client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": kwargs.pop("question", QUESTION)}], **kwargs
    )


def post(base: str, body: bytes, path: str = "/v1/chat/completions") -> tuple[int, dict]:
    request = urllib.request.Request(base + path, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(base: str, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(base + path) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_serve_mode_and_config_are_registered():
    config = serve_config.get_config()
    assert config.mode == "serve" and config.host == "127.0.0.1"
    assert rtc_main.mode_runner("serve").__name__ == "serve_run"
    assert settings_from_config(config, "m").max_batch == config.max_batch


def test_health_and_models(server, client):
    status, health = get(server[0], "/health")
    assert status == 200 and health["status"] == "ok" and health["model"] == "tiny"
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_completion_equals_the_offline_sampler_with_usage_and_cost(client, thinker):
    offline = thinker.generate(QUESTION)
    r = ask(client)
    choice = r.choices[0]
    assert choice.message.reasoning_content == offline.thinking
    assert choice.message.content.strip() == offline.answer and choice.finish_reason == "stop"
    assert r.usage.completion_tokens_details.reasoning_tokens == offline.thinking_tokens > 0
    assert r.usage.completion_tokens == offline.num_tokens
    assert r.usage.prompt_tokens == len(thinker.encode_prompts([QUESTION])[0])
    total = r.usage.prompt_tokens * 1.0 / 1e6 + r.usage.completion_tokens * 4.0 / 1e6  # default prices
    assert r.model_extra["cost"]["total_usd"] == pytest.approx(total)
    assert r.model_extra["route"]["path"] == "full"


def test_stream_sends_reasoning_before_content_and_counts_it(client, thinker):
    offline = thinker.generate(QUESTION)
    kinds, reasoning, content, usage = [], [], [], None
    for chunk in ask(client, stream=True, stream_options={"include_usage": True}):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            piece = (choice.delta.model_extra or {}).get("reasoning_content")
            if piece:
                kinds.append("reasoning")
                reasoning.append(piece)
            if choice.delta.content:
                kinds.append("content")
                content.append(choice.delta.content)
    assert kinds.index("content") == kinds.count("reasoning") > 1  # every reasoning delta comes first
    assert "".join(reasoning) == offline.thinking and "".join(content).strip() == offline.answer
    assert usage.completion_tokens_details.reasoning_tokens == offline.thinking_tokens
    assert usage.completion_tokens == offline.num_tokens


def test_budget_tokens_bounds_thinking(client, thinker):
    assert thinker.generate(QUESTION).thinking_tokens > 2
    r = ask(client, extra_body={"thinking": {"type": "enabled", "budget_tokens": 2}})
    assert r.usage.completion_tokens_details.reasoning_tokens == 2
    assert r.choices[0].message.reasoning_content == thinker.generate(QUESTION, budget_tokens=2).thinking
    off = ask(client, extra_body={"thinking": {"type": "disabled"}})
    assert off.usage.completion_tokens_details.reasoning_tokens == 0


def test_reasoning_effort_maps_to_the_presets(client, thinker):
    # max_completion_tokens=24: low caps thinking at int(0.25 * (24 - 16)) = 2 tokens, high at 8.
    free = thinker.generate(QUESTION, max_new_tokens=24).thinking_tokens
    low = ask(client, reasoning_effort="low", max_completion_tokens=24)
    high = ask(client, reasoning_effort="high", max_completion_tokens=24)
    assert low.usage.completion_tokens_details.reasoning_tokens == 2
    assert high.usage.completion_tokens_details.reasoning_tokens == min(free, 8)


def test_hidden_and_summarised_thinking(client, thinker):
    offline = thinker.generate(QUESTION)
    hidden = ask(client, extra_body={"reasoning_visibility": "hidden"})
    assert "reasoning_content" not in hidden.choices[0].message.model_extra
    assert hidden.usage.completion_tokens_details.reasoning_tokens == offline.thinking_tokens
    short = ask(client, extra_body={"reasoning_visibility": "summary", "summary_steps": 1})
    last_step = [line for line in offline.thinking.split("\n") if line.strip()][-1]
    assert short.choices[0].message.reasoning_content == last_step


def test_n_samples_answer_by_majority_vote(client):
    r = ask(client, n=4, temperature=1.0, seed=5, extra_body={"voting": "majority"})
    tally = r.model_extra["voting"]
    assert len(r.choices) == 1 and len(tally["answers"]) == 4
    chosen = tally["answers"][tally["chosen"]]
    assert tally["votes"][chosen.strip()] == max(tally["votes"].values())
    assert r.choices[0].message.content.strip() == chosen.strip()
    plain = ask(client, n=3, temperature=1.0)
    assert [c.index for c in plain.choices] == [0, 1, 2]


def test_router_sends_short_questions_to_the_fast_path(client):
    easy = ask(client, extra_body={"router": True})
    assert easy.model_extra["route"] == {"path": "fast", "difficulty": pytest.approx(8 / 32, abs=0.2)}
    assert easy.usage.completion_tokens_details.reasoning_tokens == 0  # fast path: no thinking
    hard = ask(client, question="Compute " + "+".join(["7"] * 20) + ".", extra_body={"router": True})
    assert hard.model_extra["route"]["path"] == "full"


def test_background_job_round_trip(server, client, thinker):
    base = server[0]
    status, job = post(
        base,
        json.dumps(
            {"model": "tiny", "messages": [{"role": "user", "content": QUESTION}], "background": True}
        ).encode(),
    )
    assert status == 202 and job["status"] in ("queued", "in_progress", "completed")
    for _ in range(600):
        status, polled = get(base, f"/v1/jobs/{job['id']}")
        if polled["status"] == "completed":
            break
        time.sleep(0.05)
    assert status == 200 and polled["status"] == "completed"
    assert (
        polled["result"]["choices"][0]["message"]["reasoning_content"] == thinker.generate(QUESTION).thinking
    )
    assert get(base, "/v1/jobs/job-unknown")[0] == 404


def test_job_table_forgets_ended_jobs_after_the_ttl():
    now = [0.0]
    table = JobTable(ttl_s=10, clock=lambda: now[0])
    job = table.create()
    now[0] = 100.0
    assert table.get(job["id"])["status"] == "queued"  # running jobs never expire
    table.finish(job["id"], result={"ok": 1})
    now[0] = 109.0
    assert table.get(job["id"])["result"] == {"ok": 1}
    now[0] = 111.0
    assert table.get(job["id"]) is None


def test_full_queue_answers_429_and_the_rest_complete(server, client):
    engine = server[1].state.engine
    engine.pause()
    try:
        with ThreadPoolExecutor(MAX_QUEUE + 3) as pool:
            futures = [pool.submit(ask, client, max_completion_tokens=8) for _ in range(MAX_QUEUE + 3)]
            while sum(f.done() for f in futures) < 3:
                time.sleep(0.02)
            engine.resume()
            errors = [f.exception() for f in futures]
    finally:
        engine.resume()
    refused = [e for e in errors if e is not None]
    assert len(refused) == 3 and all(isinstance(e, openai.RateLimitError) for e in refused)
    assert refused[0].body["code"] == "queue_full"
    assert get(server[0], "/health")[1]["status"] == "ok"


def test_oversized_prompt_and_negative_budget_are_400s(server):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Compute " + "1+" * 300 + "1."}]}
    status, error = post(server[0], json.dumps(body).encode())
    assert status == 400 and error["error"]["param"] == "messages"
    assert error["error"]["code"] == "context_length_exceeded"
    body = {"model": "tiny", "messages": [{"role": "user", "content": QUESTION}]}
    body["thinking"] = {"type": "enabled", "budget_tokens": -1}
    status, error = post(server[0], json.dumps(body).encode())
    assert status == 400 and error["error"]["param"] == "thinking.budget_tokens"


BAD_VALUES = {
    "temperature": st.sampled_from(["hot", True, -1, 3.5, [1]]),
    "top_p": st.sampled_from([0, 1.5, "x", None]),
    "n": st.sampled_from([0, -3, 1.5, "2", True]),
    "max_completion_tokens": st.sampled_from([0, -1, "10", 2.5]),
    "reasoning_effort": st.sampled_from(["extreme", 3, ""]),
    "seed": st.sampled_from(["x", 1.5]),
    "stream": st.sampled_from(["yes", 1]),
    "stop": st.sampled_from([5, [1, 2], ["a"] * 5]),
    "messages": st.sampled_from([[], "hi", [{"role": "user"}], [{"role": "robot", "content": "x"}]]),
    "thinking": st.sampled_from(
        [{"type": "enabled", "budget_tokens": -5}, {"type": "maybe"}, {"type": "enabled"}]
    ),
    "model": st.sampled_from([None, 7]),
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(sorted(BAD_VALUES)), data=st.data())
def test_fuzz_bad_fields_get_a_400_naming_the_field(server, field, data):
    body = {"model": "tiny", "messages": [{"role": "user", "content": QUESTION}], "max_completion_tokens": 4}
    body[field] = data.draw(BAD_VALUES[field])
    status, error = post(server[0], json.dumps(body).encode())
    assert status == 400, (field, body[field], error)
    assert error["error"]["param"].split(".")[0].split("[")[0] == field


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.one_of(st.binary(max_size=40), st.from_regex(r"\A[a-z_]{1,12}\Z")))
def test_fuzz_malformed_bodies_and_unknown_fields_are_400s(server, junk):
    if isinstance(junk, bytes):
        status, error = post(server[0], junk)
        assert status == 400 and error["error"]["type"] == "invalid_request_error"
        return
    known = {"model", "messages", "max_completion_tokens"} | set(serve_fields())
    body = {"model": "tiny", "messages": [{"role": "user", "content": QUESTION}], "max_completion_tokens": 4}
    body[junk] = 1
    status, error = post(server[0], json.dumps(body).encode())
    if junk in known:
        assert status in (200, 400)
    else:
        assert status == 400 and error["error"]["param"] == junk and junk in error["error"]["message"]


def serve_fields() -> list[str]:
    from rtc.serve.protocol import ChatRequest

    return list(ChatRequest.model_fields)


# The split of a row into reasoning and answer text, on a tokenizer of one character per token.
MARKERS = Markers(think_start=1, think_end=2, hidden=frozenset({3, 4}))


def chars(text: str) -> list[int]:
    return [{"<": 1, ">": 2, "[": 3, "]": 4}.get(c, ord(c)) for c in text]


def decode(ids):
    return "".join(chr(i) for i in ids)


def split(text: str, **kwargs) -> tuple[RowText, list]:
    sent = []
    row = RowText(decode, MARKERS, emit=lambda kind, piece: sent.append((kind, piece)), **kwargs)
    for token in chars(text):
        row.push(token)
    row.close()
    return row, sent


def test_split_counts_reasoning_like_the_sampler_and_strips_answer_markers():
    row, sent = split("<ab\ncd\n>[42]")
    assert row.reasoning_tokens == 6 and row.reasoning == "ab\ncd\n" and row.content == "42"
    assert "".join(p for k, p in sent if k == "reasoning") == "ab\ncd\n"
    assert [k for k, _ in sent].index("content") == 6


def test_split_stop_string_ends_the_answer_and_holds_back_a_partial_match():
    row, sent = split("<x>[4 STOP 5 ST]", stops=("STOP",))
    assert row.content == "4 " and row.stopped
    assert "".join(p for k, p in sent if k == "content") == "4 "
    assert held_back("ab ST", ("STOP",)) == 2 and held_back("abc", ("STOP",)) == 0


def test_split_summary_and_hidden():
    assert summary("a\nb\n\nc\n", 2) == "b\nc"
    row, sent = split("<a\nb\nc\n>[1]", visibility="summary", summary_steps=2)
    assert sent[0] == ("reasoning", "b\nc") and row.reasoning_tokens == 6
    row, sent = split("<a\nb\n>[1]", visibility="hidden")
    assert [k for k, _ in sent] == ["content"] and row.reasoning == "" and row.reasoning_tokens == 4
