"""A small in-process job runner: jobs run on worker threads in lanes, report progress, can be cancelled and
waited for.

Lanes keep kinds of work apart: `cpu` jobs (the ghost compositor) run a few at a time, while the `gpu` lane has
one worker, so two diffusion jobs never fight for one GPU. The runner knows nothing of the database; the job
function it is given does the state changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass

LANES = {"cpu": 2, "gpu": 1}


@dataclass(frozen=True)
class Progress:
    fraction: float
    message: str


class JobContext:
    """What a running job gets: a way to report progress and to see whether it was cancelled."""

    def __init__(self, runner: "JobRunner", job_id: str, cancel_event: threading.Event):
        self._runner = runner
        self.job_id = job_id
        self._cancel_event = cancel_event

    def report(self, fraction: float, message: str) -> None:
        self._runner._set_progress(self.job_id, Progress(min(max(fraction, 0.0), 1.0), message))

    def cancelled(self) -> bool:
        return self._cancel_event.is_set()


JobFunction = Callable[[JobContext], None]


class JobRunner:
    def __init__(self, lanes: dict[str, int] | None = None):
        self._executors = {lane: ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"studio-{lane}")
                           for lane, workers in (lanes or LANES).items()}
        self._lock = threading.Lock()
        self._futures: dict[str, Future] = {}
        self._cancel_events: dict[str, threading.Event] = {}
        self._progress: dict[str, Progress] = {}

    def submit(self, job_id: str, job: JobFunction, lane: str = "cpu") -> Future:
        """Queues `job` in `lane`; a job id already queued or running is not queued twice."""
        with self._lock:
            running = self._futures.get(job_id)
            if running is not None and not running.done():
                return running
            event = threading.Event()
            self._cancel_events[job_id] = event
            self._progress[job_id] = Progress(0.0, "Waiting for a free worker")
            future = self._executors[lane].submit(self._run, job_id, job, JobContext(self, job_id, event))
            self._futures[job_id] = future
            return future

    def _run(self, job_id: str, job: JobFunction, context: JobContext) -> None:
        try:
            job(context)
        finally:
            with self._lock:
                self._progress.pop(job_id, None)
                self._futures.pop(job_id, None)
                self._cancel_events.pop(job_id, None)

    def _set_progress(self, job_id: str, progress: Progress) -> None:
        with self._lock:
            if job_id in self._progress:
                self._progress[job_id] = progress

    def cancel(self, job_id: str) -> bool:
        """Asks a queued or running job to stop; True when it was queued or running here."""
        with self._lock:
            event = self._cancel_events.get(job_id)
            future = self._futures.get(job_id)
        if event is None:
            return False
        event.set()
        if future is not None and future.cancel():  # it had not started, and now never will
            with self._lock:
                self._progress.pop(job_id, None)
                self._futures.pop(job_id, None)
                self._cancel_events.pop(job_id, None)
        return True

    def progress(self, job_id: str) -> Progress | None:
        """Where a queued or running job is; None once it has ended (the database then has its status)."""
        with self._lock:
            return self._progress.get(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> None:
        with self._lock:
            future = self._futures.get(job_id)
        if future is not None and not future.cancelled():
            future.result(timeout=timeout)

    def wait_any(self, job_ids: Iterable[str], timeout: float) -> bool:
        """Waits until one of the jobs among `job_ids` that are queued or running here ends, for at most `timeout`
        seconds; returns False at once when none of them is."""
        with self._lock:
            futures = [self._futures[job_id] for job_id in job_ids if job_id in self._futures]
        if not futures:
            return False
        wait_for_futures(futures, timeout, return_when=FIRST_COMPLETED)
        return True

    def shutdown(self, wait: bool = True) -> None:
        for executor in self._executors.values():
            executor.shutdown(wait=wait, cancel_futures=True)
