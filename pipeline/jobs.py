"""A small in-process job runner: jobs run on worker threads, report progress, and can be waited for.

The runner knows nothing of the database; the job function it is given does the state changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    fraction: float
    message: str


ProgressReporter = Callable[[float, str], None]
JobFunction = Callable[[ProgressReporter], None]


class JobRunner:
    def __init__(self, max_workers: int = 2):
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="studio-job")
        self._lock = threading.Lock()
        self._futures: dict[str, Future] = {}
        self._progress: dict[str, Progress] = {}

    def submit(self, job_id: str, job: JobFunction) -> Future:
        """Queues `job`; a job id already queued or running is not queued twice."""
        with self._lock:
            running = self._futures.get(job_id)
            if running is not None and not running.done():
                return running
            self._progress[job_id] = Progress(0.0, "Waiting for a free worker")
            future = self._executor.submit(self._run, job_id, job)
            self._futures[job_id] = future
            return future

    def _run(self, job_id: str, job: JobFunction) -> None:
        def report(fraction: float, message: str) -> None:
            with self._lock:
                self._progress[job_id] = Progress(min(max(fraction, 0.0), 1.0), message)

        try:
            job(report)
        finally:
            with self._lock:
                self._progress.pop(job_id, None)
                self._futures.pop(job_id, None)

    def progress(self, job_id: str) -> Progress | None:
        """Where a queued or running job is; None once it has ended (the database then has its status)."""
        with self._lock:
            return self._progress.get(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> None:
        with self._lock:
            future = self._futures.get(job_id)
        if future is not None:
            future.result(timeout=timeout)

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=True)
