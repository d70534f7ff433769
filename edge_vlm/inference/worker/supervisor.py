"""A backend as the daemon sees it: a supervised worker process that runs the backend's engine.

Both backends run this way (``backends/vlm.py`` on the NPU, ``backends/opencv.py`` on the CPU):
native code that reads a frame's pixels, a vendor runtime or OpenCV's detectors, never runs in the
daemon, whose MQTT session must outlive any frame.

- ``load()`` starts the worker and returns once its engine is loaded (the daemon goes online
  only then), or raises with the worker's reason (``worker/keeper.py``, with the restarts).
- ``describe()`` sends one job and waits up to ``job_timeout_s``; past that it asks the worker to abort
  (``rkllm_abort``), and kills it if it does not answer within ``abort_grace_s``.
- A worker that dies (a segfault in a vendor library), busy or idle, or that is killed, fails the
  job in flight with a clear code, is restarted in the background with a doubling delay (1 s up to
  ``restart_max_delay_s``), and the model shows as unavailable until it is back.
- ``abort()`` stops the question on the worker, and fails the job's next one at once (one waiting
  for a restarting worker among them), for the job the runner has in flight (``begin_job()``).
- Each worker gets a private working directory (imgenc's files), removed when it ends (``worker/process.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import numpy as np

from edge_vlm.config.models import OpencvBackendConfig
from edge_vlm.config.vlm import VlmBackendConfig
from edge_vlm.core.contracts import Sampling
from edge_vlm.core.errors import BackendError, ErrorCode
from edge_vlm.frames import Frame
from edge_vlm.inference.backends import Chat, Told
from edge_vlm.inference.results import Description
from edge_vlm.inference.worker.conversation import WorkerConversation
from edge_vlm.inference.worker.keeper import WorkerKeeper
from edge_vlm.inference.worker.messages import (
    Abort,
    EndConversation,
    JobDone,
    JobFailed,
    RunJob,
    Shutdown,
)
from edge_vlm.inference.worker.process import STOP_TIMEOUT_S, WorkerProcess

logger = logging.getLogger(__name__)


class WorkerBackend(WorkerKeeper):
    """The daemon's side of a backend whose engine runs in a worker; subclasses say how a frame is
    prepared (in the daemon, overlapping the worker's current job) and what the job's prompt is."""

    name: str
    min_long_side: int | None
    answers_text = False  # a question without an image: the vlm's language model alone

    def __init__(self, config: OpencvBackendConfig | VlmBackendConfig, log_level: str, input_size: int) -> None:
        super().__init__(config, log_level, input_size)
        #: (start, end) in time.monotonic() of the worker's recent jobs: how busy the NPU is
        self.busy: deque[tuple[float, float]] = deque(maxlen=1024)
        self._job_ids = itertools.count(1)
        self._conversations = itertools.count(1)
        self._current_job: int | None = None
        # Whether the runner has a job in flight (begin_job .. end_job), and why it was aborted if it
        # was (under _changed): an abort that finds no question on the worker (one waiting for a
        # restart, or between two) fails the job's next question at once.
        self._in_flight = False
        self._abandoned: str | None = None

    def close(self) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify_all()
            worker, self._worker = self._worker, None
            restarter = self._restarter
        if worker is not None:
            self._abort(worker, ErrorCode.CANCELLED, "the daemon is stopping")
            with contextlib.suppress(OSError, ValueError):  # a worker already gone needs no goodbye
                worker.send(Shutdown())
            if not worker.exited.wait(STOP_TIMEOUT_S):
                logger.warning("The inference worker did not stop within %.0f s: killing it", STOP_TIMEOUT_S)
            worker.end()
        if restarter is not None:
            restarter.join(STOP_TIMEOUT_S + self.config.load_timeout_s)

    # Jobs

    def prepare(self, frame: Frame) -> np.ndarray:
        raise NotImplementedError

    def job_prompt(self, prompt: str) -> str:
        """The prompt as the engine takes it; raise BackendError(code=ErrorCode.BAD_TRIGGER) if it cannot be used."""
        return prompt

    def describe(self, prepared: np.ndarray | None, frame: Frame | None, prompt: str) -> Description:
        return self.run(self.job(prepared, frame, prompt))

    def job(self, prepared: np.ndarray | None, frame: Frame | None, prompt: str, *, conversation: int | None = None,
            max_new_tokens: int | None = None, alone: str | None = None, sampling: Sampling | None = None,
            stream: bool = False) -> RunJob:
        clip = frame.clip if frame is not None else None
        return RunJob(next(self._job_ids), "" if frame is None else frame.camera, prepared, self.job_prompt(prompt),
                      conversation, max_new_tokens, None if alone is None else self.job_prompt(alone),
                      clip.grid if clip else None, sampling, stream, clip.sent if clip else False)

    def conversation(self, prepared: np.ndarray | None, frame: Frame | None) -> AbstractContextManager[Chat]:
        return self._conversation(prepared, frame)

    @contextmanager
    def _conversation(self, prepared: np.ndarray | None, frame: Frame | None) -> Iterator[Chat]:
        conversation = WorkerConversation(self, next(self._conversations), prepared, frame)
        try:
            yield conversation
        finally:
            conversation.end()

    def run(self, job: RunJob, told: Told | None = None) -> Description:
        """``told``: called with the answer's text as the worker sends it (a job that streams)."""
        worker = self._wait_available()
        try:
            reply = self._exchange(worker, job, told)
        except BackendError as exc:
            if exc.code == ErrorCode.WORKER_CRASHED:
                self._worker_lost(worker, str(exc).removeprefix("the inference worker "))
                raise BackendError(f"{exc}; restarting it", code=ErrorCode.WORKER_CRASHED) from None
            raise
        if isinstance(reply, JobFailed):
            raise BackendError(reply.message, code=reply.code)
        self._delay = 1.0
        self.busy.append((reply.started, reply.finished))
        return Description(reply.text, reply.timings_ms, reply.details)

    def end_conversation(self, conversation: int) -> None:
        """Tell the worker to forget the conversation's frame (a worker that is gone forgot it)."""
        if (worker := self._worker) is not None:
            with contextlib.suppress(OSError, ValueError):
                worker.send(EndConversation(conversation))

    def begin_job(self) -> None:
        with self._changed:
            self._in_flight, self._abandoned = True, None

    def end_job(self) -> None:
        with self._changed:
            self._in_flight, self._abandoned = False, None

    def abort(self, why: str = "the daemon is stopping") -> None:
        with self._changed:
            if self._in_flight:
                self._abandoned = f"aborted: {why}"
                self._changed.notify_all()
        if (worker := self._worker) is not None:
            self._abort(worker, ErrorCode.CANCELLED, f"aborted: {why}")

    def _abort(self, worker: WorkerProcess, code: ErrorCode, message: str) -> None:
        if (job_id := self._current_job) is not None:
            with contextlib.suppress(OSError, ValueError):
                worker.send(Abort(job_id, code, message))

    def _exchange(self, worker: WorkerProcess, job: RunJob, told: Told | None) -> JobDone | JobFailed:
        """Send ``job`` and wait for its answer; abort it, then kill the worker, when it takes too long."""
        with self._changed:
            if (abandoned := self._abandoned) is not None:  # aborted since it waited: not sent
                raise BackendError(abandoned, code=ErrorCode.CANCELLED)
            self._current_job = job.job_id
        try:
            worker.send(job)
            with self._changed:
                abandoned = self._abandoned
            if abandoned is not None:  # aborted as it was sent: the worker fails it before its model runs
                self._abort(worker, ErrorCode.CANCELLED, abandoned)
            reply = worker.reply(job.job_id, self.config.job_timeout_s, told)
            if reply is None:
                self._abort(worker, ErrorCode.TIMED_OUT,
                            f"no answer within backend.job_timeout_s = {self.config.job_timeout_s:g} s: aborted")
                reply = worker.reply(job.job_id, self.config.abort_grace_s, told)
        except (OSError, ValueError):  # the pipe broke: the worker is gone
            worker.exited.wait(STOP_TIMEOUT_S)
            raise BackendError(f"the inference worker {worker.reason}", code=ErrorCode.WORKER_CRASHED) from None
        finally:
            self._current_job = None
        if reply is None:
            logger.error("The inference worker ignored the abort for %.0f s: killing it", self.config.abort_grace_s)
            self._worker_lost(worker, "hung and was killed")
            return JobFailed(job.job_id, ErrorCode.TIMED_OUT, f"no answer within backend.job_timeout_s = "
                             f"{self.config.job_timeout_s:g} s, and the worker ignored the abort")
        return reply

    def _wait_available(self) -> WorkerProcess:
        """The running worker. While one restarts, wait for that restart's outcome (bounded by the
        restart delay and backend.load_timeout_s): a job fails only if the restart fails, not
        because loading took longer on a busy board; or until the job is aborted."""
        with self._changed:
            if self._worker is None and self._restarter is None and not self._closing:
                raise BackendError(f"the {self.name} backend is not loaded")
            failures = self._failed_restarts
            self._changed.wait_for(
                lambda: self._worker is not None or self._closing or self._failed_restarts != failures
                or self._abandoned is not None, self._delay + self.config.load_timeout_s)
            if (abandoned := self._abandoned) is not None:
                raise BackendError(abandoned, code=ErrorCode.CANCELLED)
            if self._closing:
                raise BackendError("the daemon is stopping", code=ErrorCode.CANCELLED)
            if self._worker is None:
                raise BackendError("the model is unavailable: the inference worker is restarting",
                                   code=ErrorCode.MODEL_UNAVAILABLE)
            return self._worker

