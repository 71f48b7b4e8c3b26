"""The HTTP server: OpenAI's `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`, and
`GET /v1/jobs/{id}` for background requests, on FastAPI + uvicorn.

    python -m rtc.main --config=experiments/configs/serve.py --workdir=RUN   # http://127.0.0.1:8000/v1

Every error is a JSON body `{"error": {"message", "type", "param", "code"}}`: 400 for a bad body (the
field named in `param`), 404 for an unknown model, route or job, 429 when the queue is full, 504 when
a request waited past `request_timeout_s`. A stream (`"stream": true`) sends `reasoning_content`
deltas for the thinking and then `content` deltas for the answer, as server-sent events.
"""

import asyncio
import dataclasses
import json
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from rtc.errors import ConfigError
from rtc.serve import responses
from rtc.serve.engine import Engine, QueueFull, QueueTimeout, Work
from rtc.serve.plan import plan
from rtc.serve.protocol import VISIBILITIES, ChatRequest, RequestError
from rtc.serve.responses import Prices
from rtc.serve.router import Router
from rtc.serve.jobs import JobTable

_END = object()


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the server does with requests (the fields of `experiments/configs/serve.py`)."""

    model_name: str
    max_batch: int = 32
    max_queue: int = 256
    batch_wait_ms: float = 50.0
    request_timeout_s: float = 600.0
    prices: Prices = Prices(1.0, 4.0)
    job_ttl_s: float = 3600.0
    thinking_visibility: str = "visible"
    summary_steps: int = 2
    router_enabled: bool = False

    def __post_init__(self):
        if self.thinking_visibility not in VISIBILITIES:
            raise ConfigError(
                f"thinking_visibility must be one of {list(VISIBILITIES)}, got {self.thinking_visibility!r}"
            )
        for name in ("max_queue", "request_timeout_s", "job_ttl_s", "summary_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_batch < 1 or self.max_batch & (self.max_batch - 1):
            raise ConfigError(f"max_batch must be a power of two, got {self.max_batch}")


def _error(error: RequestError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


def _failure(error: BaseException) -> RequestError:
    """The error body of a request the engine could not finish."""
    if isinstance(error, QueueTimeout):
        return RequestError(str(error), None, status=504, code="timeout")
    return RequestError(
        f"generation failed: {type(error).__name__}: {error}", None, status=500, code="server_error"
    )


def create_app(reasoner, settings: Settings, router: Router | None = None) -> FastAPI:
    """The server app of `reasoner`; its engine thread starts now and stops with the app."""
    engine = Engine(reasoner, settings.max_batch, settings.max_queue, settings.batch_wait_ms)
    jobs = JobTable(settings.job_ttl_s)
    app = FastAPI(title="rtc serve", lifespan=_lifespan(engine))
    app.state.engine, app.state.jobs, app.state.settings = engine, jobs, settings

    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError):
        return _error(error)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        return _error(RequestError(str(error.detail), None, status=error.status_code, code="not_found"))

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception):
        return _error(_failure(error))

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "model": settings.model_name,
            "queued": len(engine.queue),
            "running_rows": engine.running_rows,
            "batches": engine.batches,
            "rows_served": engine.rows_served,
            "jobs": jobs.counts(),
        }

    @app.get("/v1/models")
    async def models():
        card = {
            "id": settings.model_name,
            "object": "model",
            "created": 0,
            "owned_by": "rtc",
            "context_length": reasoner.model.config.max_seq_len,
        }
        return {"object": "list", "data": [card]}

    @app.get("/v1/jobs/{job_id}")
    async def job(job_id: str):
        found = jobs.get(job_id)
        if found is None:
            raise RequestError(
                f"no job {job_id} (unknown, or expired)", "job_id", status=404, code="not_found"
            )
        return found

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = ChatRequest.read(await request.body())
        try:
            p = plan(body, reasoner, settings, router)
        except ConfigError as error:
            raise RequestError(" ".join(str(error).split()), "thinking") from None
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        finish = lambda rows: responses.completion(  # noqa: E731
            rid, created, settings.model_name, p, rows, settings.prices, body.voting == "majority"
        )
        deadline = time.monotonic() + settings.request_timeout_s
        if body.background:
            return _background(engine, jobs, Work(p, deadline=deadline), finish)
        if body.stream:
            return _stream(engine, Work(p, deadline=deadline), body, rid, created, settings, p)
        work = _submit(engine, Work(p, deadline=deadline))
        try:
            rows = await asyncio.shield(asyncio.wrap_future(work.future))
        except Exception as error:  # a queue timeout (504) or a failed batch (500)
            return _error(_failure(error))
        return finish(rows)

    return app


def _lifespan(engine: Engine):
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        yield
        engine.close()

    return lifespan


def _submit(engine: Engine, work: Work) -> Work:
    try:
        return engine.submit(work)
    except QueueFull as error:
        raise RequestError(str(error), None, status=429, code="queue_full") from None


def _background(engine: Engine, jobs: JobTable, work: Work, finish) -> JSONResponse:
    job = jobs.create()
    work.on_start = lambda: jobs.started(job["id"])

    def done(future):
        if future.cancelled() or future.exception() is not None:
            error = future.exception() if not future.cancelled() else RuntimeError("cancelled")
            jobs.finish(job["id"], error=_failure(error).body()["error"])
        else:
            try:
                jobs.finish(job["id"], result=finish(future.result()))
            except Exception as error:  # formatting failed: the job still ends
                jobs.finish(job["id"], error=_failure(error).body()["error"])

    try:
        _submit(engine, work)
    except RequestError:
        jobs.finish(job["id"], error={"message": "queue full", "type": "rate_limit_error"})
        raise
    work.future.add_done_callback(done)
    return JSONResponse(job, status_code=202)


async def _ready(inbox: asyncio.Queue) -> list:
    """The next item of `inbox`, and every other item already waiting."""
    items = [await inbox.get()]
    while not inbox.empty() and items[-1] is not _END:
        items.append(inbox.get_nowait())
    return items


def _merged(deltas: list[tuple[int, str, str]]) -> list[dict]:
    """Consecutive pieces of one choice's text of one kind, as one delta each (fewer events under load)."""
    out: list[tuple[int, str, str]] = []
    for i, kind, text in deltas:
        if out and out[-1][:2] == (i, kind):
            out[-1] = (i, kind, out[-1][2] + text)
        else:
            out.append((i, kind, text))
    return [responses.delta(*d) for d in out]


def _sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def _stream(engine: Engine, work: Work, body: ChatRequest, rid: str, created: int, settings: Settings, p):
    """Submits `work` with its text streamed, and the server-sent events that carry it."""
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue = asyncio.Queue()
    work.emit = lambda i, kind, text: loop.call_soon_threadsafe(inbox.put_nowait, (i, kind, text))
    _submit(engine, work)
    work.future.add_done_callback(lambda _: loop.call_soon_threadsafe(inbox.put_nowait, _END))
    model = settings.model_name
    include_usage = body.stream_options is not None and body.stream_options.include_usage

    async def events():
        try:
            start = [
                {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                for i in range(p.n)
            ]
            yield _sse(responses.chunk(rid, created, model, start))
            while True:
                items = await _ready(inbox)
                deltas = [item for item in items if item is not _END]
                if deltas:
                    yield "".join(_sse(responses.chunk(rid, created, model, [d])) for d in _merged(deltas))
                if items[-1] is _END:
                    break
            error = work.future.exception()
            if error is not None:
                yield _sse(_failure(error).body())
                return
            rows = work.future.result()
            ends = [{"index": i, "delta": {}, "finish_reason": r.finish_reason} for i, r in enumerate(rows)]
            yield _sse(responses.chunk(rid, created, model, ends, route=p.route.body()))
            if include_usage:
                usage = responses.usage(p, rows)
                cost = settings.prices.cost(usage["prompt_tokens"], usage["completion_tokens"])
                yield _sse(responses.chunk(rid, created, model, [], usage=usage, cost=cost))
            yield _sse("[DONE]")
        finally:
            work.cancelled = True  # a client that left: its rows finish, unread

    return StreamingResponse(events(), media_type="text/event-stream")


def serve_run(config, workdir) -> None:
    """CLI mode `serve`: load `config.model` (default: the workdir) and serve it until interrupted."""
    import uvicorn
    from pathlib import Path

    import rtc

    source = config.model or workdir
    reasoner = rtc.load(source, step=config.step)
    settings = settings_from_config(config, config.model_name or Path(str(source).rstrip("/")).name)
    router = Router.from_config(config.router, reasoner)
    app = create_app(reasoner, settings, router)
    print(
        f"serving {reasoner} as {settings.model_name!r} on http://{config.host}:{config.port}/v1", flush=True
    )
    uvicorn.run(app, host=config.host, port=config.port, log_level=config.log_level)


def settings_from_config(config, model_name: str) -> Settings:
    return Settings(
        model_name=model_name,
        max_batch=config.max_batch,
        max_queue=config.max_queue,
        batch_wait_ms=config.batch_wait_ms,
        request_timeout_s=config.request_timeout_s,
        prices=Prices(config.price_input_per_million, config.price_output_per_million),
        job_ttl_s=config.job_ttl_s,
        thinking_visibility=config.thinking_visibility,
        summary_steps=config.summary_steps,
        router_enabled=config.router.enabled,
    )
