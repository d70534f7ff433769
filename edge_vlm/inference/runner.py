"""The worker thread: takes the scheduler's next job, runs it on the backend, hands on the outcome."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Protocol

from edge_vlm.camera_state import CameraStates
from edge_vlm.core.contracts import Failure
from edge_vlm.core.errors import BackendError, ErrorCode
from edge_vlm.inference.answers import answer
from edge_vlm.inference.backends import Backend
from edge_vlm.inference.results import Result
from edge_vlm.schedule.job import Job
from edge_vlm.schedule.scheduler import Scheduler

logger = logging.getLogger(__name__)

POLL_S = 0.2
REMEMBERED_GONE = 64  # requests cancelled before they were queued, remembered until their job comes


class JobOutcomes(Protocol):
    """Where a job's outcome goes (edge_vlm.publish.outcomes)."""

    def described(self, job: Job, result: Result) -> None: ...

    def failed(self, job: Job, code: ErrorCode, message: str, *, queued_ms: float | None = None) -> None: ...

    def publish_failure(self, failure: Failure) -> None: ...


class Runner:
    def __init__(self, scheduler: Scheduler, backend: Backend, states: CameraStates, outcomes: JobOutcomes) -> None:
        self._scheduler = scheduler
        self._backend = backend
        self._states = states
        self._outcomes = outcomes
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="edge_vlm-worker", daemon=True)
        # The job on the backend, and requests cancelled before they began (under _lock): taken from
        # the queue but not begun, or not queued yet (their frame still being decoded or fetched)
        self._lock = threading.Lock()
        self._current: Job | None = None
        self._gone: OrderedDict[tuple[str, str], str] = OrderedDict()  # (camera, request id) -> why

    def start(self) -> None:
        self._thread.start()

    def stop(self, grace: float) -> None:
        """Run no more jobs once the scheduler is empty; the job in flight gets ``grace`` to finish,
        then is aborted."""
        self._stopping.set()
        if not self._thread.is_alive():  # never started, or done
            return
        self._thread.join(grace)
        if self._thread.is_alive():
            logger.warning("The job in flight is still running after %.0f s: aborting it", grace)
            self._backend.abort()
            self._thread.join(grace)
        if self._thread.is_alive():
            logger.error("Thread %s did not stop", self._thread.name)

    def cancel_waiting(self) -> None:
        """The scheduler takes no more jobs; those still waiting fail ``cancelled``, and the
        refusals held behind them are answered."""
        for job in self._scheduler.close():
            self._outcomes.failed(job, ErrorCode.CANCELLED, "the daemon stopped before this job ran")
            for failure in job.held:
                self._outcomes.publish_failure(failure)

    def cancel(self, camera: str, request_id: str, why: str) -> None:
        """A request whose asker went away (any thread): taken from the queue if it waits, aborted
        if it runs (the NPU freed for the next job), nothing if it was answered. It fails
        ``cancelled`` with ``why``."""
        with self._lock:
            waiting = self._scheduler.take_request(camera, request_id)
            if waiting is not None:
                self._outcomes.failed(waiting, ErrorCode.CANCELLED, f"cancelled before it ran: {why}")
                for failure in waiting.held:  # behind the camera's earlier requests still, if any
                    if not self._scheduler.hold(failure):
                        self._outcomes.publish_failure(failure)
                return
            if self._current is not None and (self._current.camera, self._current.request_id) == (camera, request_id):
                logger.info("%s: aborting job %s: %s", camera or "request", request_id, why)
                self._backend.abort(why)
                return
            # taken from the queue and not begun, or not queued yet (or answered: then never seen)
            self._gone[(camera, request_id)] = why
            while len(self._gone) > REMEMBERED_GONE:
                self._gone.popitem(last=False)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            job = self._scheduler.next(POLL_S)
            if job is None:
                if self._stopping.is_set():
                    return
                continue
            self.serve(job)

    def serve(self, job: Job) -> None:
        """Run a job taken from the scheduler (the worker thread's), or fail it if its request was
        cancelled before it began; then answer the refusals held behind it."""
        with self._lock:
            gone = self._gone.pop((job.camera, job.request_id), None)
            self._current = None if gone else job
            if not gone:  # under the lock cancel() aborts under: no abort falls between the two
                self._backend.begin_job()
        try:
            if gone is not None:
                self._outcomes.failed(job, ErrorCode.CANCELLED, f"cancelled before it ran: {gone}")
            else:
                self._run(job)
        except Exception:  # the worker must outlive any one job
            logger.exception("Unexpected error while running job %s", job.request_id)
        finally:
            with self._lock:
                if self._current is not None:
                    self._backend.end_job()
                self._current = None
        for failure in self._scheduler.finished(job):  # later requests' errors, in their turn
            self._outcomes.publish_failure(failure)

    def _run(self, job: Job) -> None:
        queued_ms = round((time.monotonic() - job.queued_at) * 1000, 2)
        try:
            result = answer(self._backend, job, queued_ms)
        except BackendError as exc:
            self._outcomes.failed(job, exc.code, str(exc), queued_ms=queued_ms)
            return
        except Exception as exc:
            logger.exception("Backend %s failed on job %s", self._backend.name, job.request_id)
            self._outcomes.failed(job, ErrorCode.BACKEND_FAILED, f"{type(exc).__name__}: {exc}", queued_ms=queued_ms)
            return
        if job.reply is None:
            # The camera's last description ({previous}, its cooldown) is this one before anyone hears of it.
            self._states.described(job.camera, job.scene, result.text)
        self._outcomes.described(job, result)
