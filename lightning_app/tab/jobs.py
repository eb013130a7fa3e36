"""Live work off the request thread: one worker per checkpoint runs its jobs one at a time, a queued job
can be cancelled (a running one stops at its next ``check_cancelled``), and finished answers are cached
by (checkpoint, image, question, settings)."""

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from lightning_app.errors import UserInputError, one_line

CACHE_SIZE = 256  # answers kept in memory
KEPT_JOBS = 1024  # finished jobs kept for their status requests


class Cancelled(Exception):
    """Raised inside a job that was cancelled while it ran."""


@dataclass
class Job:
    id: str
    key: tuple
    status: str = "queued"  # queued, running, done, failed, cancelled
    progress: float = 0.0
    result: dict | None = None
    error: str | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    future: Future | None = None

    def check_cancelled(self, progress: float | None = None) -> None:
        """Record ``progress`` (0 to 1) and stop the job here if it was cancelled."""
        if progress is not None:
            self.progress = progress
        if self.cancel_requested.is_set():
            raise Cancelled

    def describe(self) -> dict:
        return {"id": self.id, "status": self.status, "progress": self.progress, "error": self.error}


class JobRunner:
    """Jobs keyed by what they compute; ``submit`` returns a cached or running job with the same key
    instead of starting another."""

    def __init__(self) -> None:
        self._workers: dict[str, ThreadPoolExecutor] = {}
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._cache: OrderedDict[tuple, dict] = OrderedDict()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def submit(self, worker: str, key: tuple, work: Callable[[Job], dict]) -> Job:
        """Run ``work(job)`` on ``worker``'s thread (one per checkpoint), or answer from the cache."""
        with self._lock:
            for job in self._jobs.values():
                if job.key == key and job.status in ("queued", "running"):
                    return job
            job = Job(str(next(self._ids)), key)
            self._jobs[job.id] = job
            while len(self._jobs) > KEPT_JOBS:
                self._jobs.popitem(last=False)
            if key in self._cache:
                self._cache.move_to_end(key)
                job.status, job.progress, job.result = "done", 1.0, self._cache[key]
                return job
            executor = self._workers.setdefault(worker, ThreadPoolExecutor(1, thread_name_prefix="explorer"))
            job.future = executor.submit(self._run, job, work)
            return job

    def get(self, job_id: str | None) -> Job:
        job = self._jobs.get(job_id or "")
        if job is None:
            raise UserInputError(f"job {job_id!r}: no such job (finished jobs are kept for a while only)")
        return job

    def wait(self, job: Job, seconds: float) -> Job:
        """``job`` once it has finished, or after ``seconds`` (a long poll: answers come when they are
        ready, not at the next poll)."""
        if job.future is not None and seconds > 0:
            futures.wait([job.future], timeout=seconds)
        return job

    def cancel(self, job_id: str | None) -> Job:
        job = self.get(job_id)
        job.cancel_requested.set()
        if job.future is not None and job.future.cancel():
            job.status = "cancelled"
        return job

    def shutdown(self) -> None:
        for executor in self._workers.values():
            executor.shutdown(wait=True, cancel_futures=True)

    def _run(self, job: Job, work: Callable[[Job], dict]) -> None:
        job.status = "running"
        try:
            job.check_cancelled()
            result = work(job)
        except Cancelled:
            job.status = "cancelled"
            return
        except (Exception, SystemExit) as error:  # one line for the page; a bug keeps its type in it
            job.status, job.error = "failed", one_line(error) or f"{type(error).__name__}: {error}"
            return
        with self._lock:
            self._cache[job.key] = result
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        job.status, job.progress, job.result = "done", 1.0, result
