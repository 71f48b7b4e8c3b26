"""Background jobs: a request answered with a job id at once, its result polled at `GET /v1/jobs/{id}`.

A job runs in the engine like any request, whether or not anyone is still connected; its record
(status `queued` -> `in_progress` -> `completed` or `failed`, then the result or the error) is kept in
memory for `ttl_s` seconds after it ends, then forgotten (a poll after that is a 404). Jobs do not
survive a server restart.
"""

import threading
import time
import uuid


class JobTable:
    """The jobs of one server; thread-safe (the engine's threads finish them)."""

    def __init__(self, ttl_s: float, clock=time.monotonic):
        self.ttl_s, self.clock = ttl_s, clock
        self.lock = threading.Lock()
        self.jobs: dict[str, dict] = {}
        self.ended: dict[str, float] = {}  # job id -> when it ended

    def create(self) -> dict:
        """A new job record, status `queued`."""
        job = {
            "id": f"job-{uuid.uuid4().hex}",
            "object": "job",
            "created": int(time.time()),
            "status": "queued",
        }
        with self.lock:
            self._expire()
            self.jobs[job["id"]] = job
        return dict(job)

    def started(self, job_id: str) -> None:
        with self.lock:
            if job_id in self.jobs and self.jobs[job_id]["status"] == "queued":
                self.jobs[job_id]["status"] = "in_progress"

    def finish(self, job_id: str, result: dict | None = None, error: dict | None = None) -> None:
        """The job ended with `result` (a chat.completion body) or `error` (an error body)."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return
            job.update(status="failed" if error else "completed", result=result, error=error)
            self.ended[job_id] = self.clock()

    def get(self, job_id: str) -> dict | None:
        with self.lock:
            self._expire()
            job = self.jobs.get(job_id)
            return None if job is None else dict(job)

    def counts(self) -> dict[str, int]:
        with self.lock:
            out: dict[str, int] = {}
            for job in self.jobs.values():
                out[job["status"]] = out.get(job["status"], 0) + 1
            return out

    def _expire(self) -> None:
        now = self.clock()
        for job_id in [j for j, t in self.ended.items() if now - t > self.ttl_s]:
            del self.ended[job_id], self.jobs[job_id]
