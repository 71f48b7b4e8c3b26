"""The request queue in front of the compiled sampler: batching, streaming, timeouts.

One worker thread runs one batch at a time. A batch is formed from the oldest waiting request: every
waiting request with the same `BatchKey` (the sampler's static settings, `rtc.serve.plan`) joins it,
oldest first, up to `max_batch` rows (a request of `n` samples is `n` rows), once no request has
arrived for `batch_wait_ms` (counted from the later of the oldest arrival and the previous batch's end;
at most `MAX_WAITS` times that; at once when the rows fill a batch): the clients a batch just answered,
coming back together, join the ones that waited, instead of the two groups taking turns in half batches. The rows are padded to a power of two with copies of the first,
so a few programs serve every batch size. Scheduling is per batch: a batch runs until each of its
rows has stopped or reached `max_new_tokens`, and new requests wait for the next batch (slots are
not refilled mid-batch). A request still queued after `request_timeout_s` fails with a timeout; the
queue holds at most `max_queue` requests (`QueueFull` beyond, a 429).

Streaming: the sampler is compiled with one callback object (`BatchStream`) for the life of the
engine, since a new callback would be a new static argument and recompile; it routes each row's
tokens of the running batch to that request's `RowText` (`rtc.serve.split`), reordering steps that
arrive out of order.
"""

import collections
import concurrent.futures
import dataclasses
import itertools
import logging
import queue
import threading
import time
from typing import Callable

import jax
import numpy as np

from rtc.sampling import sampler as sampler_lib
from rtc.sampling.budget import ThinkingBudget
from rtc.sampling.rules import SamplingRule
from rtc.serve.plan import BatchKey, Plan
from rtc.serve.split import Markers, RowText

log = logging.getLogger(__name__)
MAX_WAITS = 4  # a batch waits for stragglers at most this many batch_wait_ms after its clock opened


class QueueFull(Exception):
    """The queue holds `max_queue` requests already."""


class QueueTimeout(Exception):
    """The request waited in the queue past its deadline."""


@dataclasses.dataclass(frozen=True)
class RowResult:
    """One sample of a request: its split text and counts, and why it ended."""

    split: RowText
    tokens: int  # tokens generated (the stop token included; after a stop string, up to it)
    reasoning_tokens: int
    finish_reason: str  # "stop" or "length"


@dataclasses.dataclass(eq=False)
class Work:
    """A request in the engine: its plan, where its text goes, and the future of its `RowResult`s."""

    plan: Plan
    emit: Callable[[int, str, str], object] | None = None  # (sample index, kind, text), streamed
    on_start: Callable[[], object] | None = None
    deadline: float = float("inf")
    future: concurrent.futures.Future = dataclasses.field(default_factory=concurrent.futures.Future)
    cancelled: bool = False  # the client left: its rows still run, their text is not decoded
    arrived: float = dataclasses.field(default_factory=time.monotonic)


class BatchStream:
    """The sampler's `stream(step, tokens: i32[B], live: bool[B])`: the running batch's rows, each to
    its `RowText` (None for padding rows and requests that do not stream), steps in order.

    The callback only queues the step; a thread of its own decodes, so the decode loop never waits
    on text. `drain()` returns once every queued step is handled.
    """

    def __init__(self):
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.start([])
        threading.Thread(target=self._consume, name="rtc-serve-stream", daemon=True).start()

    def start(self, rows: list[RowText | None]) -> None:
        self.rows, self.pending, self.next_step = rows, {}, 0

    def __call__(self, step, tokens, live):
        self.inbox.put((int(step), np.asarray(tokens), np.asarray(live)))

    def drain(self) -> None:
        done = threading.Event()
        self.inbox.put(done)
        done.wait()

    def _consume(self):
        while True:
            item = self.inbox.get()
            if isinstance(item, threading.Event):
                item.set()
                continue
            step, tokens, live = item
            self.pending[step] = (tokens, live)
            while self.next_step in self.pending:
                tokens_b, live_b = self.pending.pop(self.next_step)
                self.next_step += 1
                for row, token, alive in zip(self.rows, tokens_b, live_b):
                    if row is not None and alive:
                        try:
                            row.push(int(token))
                        except Exception:  # a client's bad callback must not stop the others
                            log.exception("streaming a row failed")


def sampler_config(key: BatchKey, tokenizer) -> sampler_lib.SamplerConfig:
    return sampler_lib.SamplerConfig(
        max_new_tokens=key.max_new_tokens,
        stop_ids=tuple(tokenizer.stop_ids),
        pad_id=tokenizer.pad_id,
        rule=SamplingRule(temperature=key.temperature, top_p=key.top_p),
        budget=ThinkingBudget(
            tokenizer.think_start_id, tokenizer.think_end_id, max_thinking_tokens=key.thinking_limit
        ),
    )


def padded_rows(rows: int) -> int:
    """The power of two a batch of `rows` is padded to."""
    return 1 << max(0, (rows - 1).bit_length())


class Engine:
    """`submit(work)` queues a request; a worker thread batches and runs them (see the module doc)."""

    def __init__(self, reasoner, max_batch: int, max_queue: int, batch_wait_ms: float, seed: int = 0):
        if max_batch < 1 or max_batch & (max_batch - 1):
            raise ValueError(f"max_batch must be a power of two, got {max_batch}")
        self.reasoner, self.max_batch, self.max_queue = reasoner, max_batch, max_queue
        self.batch_wait_s = batch_wait_ms / 1000
        self.markers = Markers.of(reasoner.tokenizer)
        self.stream = BatchStream()
        self.queue: collections.deque[Work] = collections.deque()
        self.cond = threading.Condition()
        self.running_rows = 0
        self.batches = 0
        self.rows_served = 0  # request rows (not padding) of every batch run
        self.last_batch_end = 0.0
        self._seeds = itertools.count(seed * 1_000_003 + 1)
        self._closing = False
        self._paused = False
        self._thread = threading.Thread(target=self._loop, name="rtc-serve-engine", daemon=True)
        self._thread.start()

    def submit(self, work: Work) -> Work:
        with self.cond:
            if len(self.queue) >= self.max_queue:
                raise QueueFull(f"the queue holds {self.max_queue} requests; retry later")
            self.queue.append(work)
            self.cond.notify()
        return work

    def pause(self) -> None:
        """Start no new batch until `resume()` (requests keep queueing, up to `max_queue`)."""
        with self.cond:
            self._paused = True

    def resume(self) -> None:
        with self.cond:
            self._paused = False
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self._closing = True
            self.cond.notify()
        self._thread.join(timeout=60)

    def _loop(self):
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._run(batch)

    def _next_batch(self) -> list[Work] | None:
        """The next batch (see the module doc); [] when every waiting request timed out; None at close."""
        with self.cond:
            while (not self.queue or self._paused) and not self._closing:
                self.cond.wait()
            if self._closing:
                return None
            first = self.queue[0]
            # The clock starts at the later of the oldest arrival and the last batch's end: clients
            # that batch just answered come back within milliseconds, and join the waiting ones.
            opened = max(first.arrived, self.last_batch_end)
            cap = opened + MAX_WAITS * self.batch_wait_s
            while not self._closing:
                wait_until = min(cap, max(opened, self.queue[-1].arrived) + self.batch_wait_s)
                rows = sum(w.plan.n for w in self.queue if w.plan.key == first.plan.key)
                if time.monotonic() >= wait_until or rows >= self.max_batch:
                    break
                self.cond.wait(timeout=max(0.0, wait_until - time.monotonic()))
            now, batch, rows, kept = time.monotonic(), [], 0, collections.deque()
            for work in self.queue:
                if now > work.deadline:
                    work.future.set_exception(
                        QueueTimeout("the request waited in the queue past its timeout")
                    )
                elif (
                    work.plan.key == first.plan.key
                    and rows + work.plan.n <= self.max_batch
                    and not (work.plan.key.solo and batch)
                ):
                    batch.append(work)
                    rows += work.plan.n
                else:
                    kept.append(work)
            self.queue = kept
            self.running_rows = rows
            return batch

    def _run(self, batch: list[Work]) -> None:
        tokenizer = self.reasoner.tokenizer
        splits: list[RowText] = []
        for work in batch:
            if work.on_start is not None:
                work.on_start()
            for i in range(work.plan.n):
                emit = None if work.emit is None else (lambda kind, text, w=work, i=i: w.emit(i, kind, text))
                p = work.plan
                splits.append(
                    RowText(
                        tokenizer.decode,
                        self.markers,
                        p.thinking_open,
                        p.stops,
                        p.visibility,
                        p.summary_steps,
                        emit,
                    )
                )
        streamed = [s if s.emit is not None else None for s in splits]
        prompts = [list(w.plan.prompt) for w in batch for _ in range(w.plan.n)]
        prompts += [prompts[0]] * (padded_rows(len(prompts)) - len(prompts))
        key = batch[0].plan.key
        seed = batch[0].plan.seed if key.solo else next(self._seeds)
        try:
            self.stream.start(streamed + [None] * (len(prompts) - len(streamed)))
            out = sampler_lib.generate(
                self.reasoner.model,
                self.reasoner.params,
                prompts,
                jax.random.key(seed),
                sampler_config(key, tokenizer),
                stream=self.stream,
            )
            completions = sampler_lib.completions(out)
            jax.effects_barrier()  # every step's callback has run ...
            self.stream.drain()  # ... and been handled, before the rows close
            self.stream.start([])
            stop_ids = set(tokenizer.stop_ids)
            results, row = [], 0
            for work in batch:
                mine = []
                for _ in range(work.plan.n):
                    split, ids = splits[row], completions[row]
                    for token in ids[len(split.tokens) :] if not split.stopped else ():
                        split.push(token)  # rows that did not stream (or a missed callback)
                    split.close()
                    finished = split.stopped or (bool(ids) and ids[-1] in stop_ids)
                    mine.append(
                        RowResult(
                            split, len(split.tokens), split.reasoning_tokens, "stop" if finished else "length"
                        )
                    )
                    row += 1
                results.append(mine)
        except Exception as error:  # a failed batch fails its requests, not the server
            log.exception("batch failed")
            for work in batch:
                if not work.future.done():
                    work.future.set_exception(error)
            return
        finally:
            self.stream.drain()
            self.stream.start([])
            self.last_batch_end = time.monotonic()
            self.rows_served += self.running_rows
            self.running_rows = 0
            self.batches += 1
        for work, mine in zip(batch, results):
            work.future.set_result(mine)
