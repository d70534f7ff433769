"""A backend as the daemon sees it: a supervised worker process that runs the backend's engine.

Both backends run this way (``backends/vlm.py`` on the NPU, ``backends/opencv.py`` on the CPU):
native code that reads a frame's pixels, a vendor runtime or OpenCV's detectors, never runs in the
daemon, whose MQTT session must outlive any frame.

- ``load()`` starts the worker and returns once its engine is loaded (the daemon goes online
  only then), or raises with the worker's reason.
- ``describe()`` sends one job and waits up to ``job_timeout_s``; past that it asks the worker to abort
  (``rkllm_abort``), and kills it if it does not answer within ``abort_grace_s``.
- A worker that dies (a segfault in a vendor library), busy or idle, or that is killed, fails the
  job in flight with a clear code, is restarted in the background with a doubling delay (1 s up to
  ``restart_max_delay_s``), and the model shows as unavailable until it is back.
- Each worker gets a private working directory (imgenc's files), removed when it ends (``worker/process.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import threading
from collections import deque
from collections.abc import Callable, Iterator
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
from edge_vlm.inference.worker.messages import (
    Abort,
    EndConversation,
    JobDone,
    JobFailed,
    LoadFailed,
    Ready,
    RunJob,
    Shutdown,
)
from edge_vlm.inference.worker.process import STOP_TIMEOUT_S, WorkerProcess, spawn

logger = logging.getLogger(__name__)

AvailabilityListener = Callable[[bool, str], None]


class WorkerBackend:
    """The daemon's side of a backend whose engine runs in a worker; subclasses say how a frame is
    prepared (in the daemon, overlapping the worker's current job) and what the job's prompt is."""

    name: str
    min_long_side: int | None
    answers_text = False  # a question without an image: the vlm's language model alone

    def __init__(self, config: OpencvBackendConfig | VlmBackendConfig, log_level: str, input_size: int) -> None:
        self.config = config
        #: (start, end) in time.monotonic() of the worker's recent jobs: how busy the NPU is
        self.busy: deque[tuple[float, float]] = deque(maxlen=1024)
        self._log_level = log_level
        self._input_size = input_size
        self._context = multiprocessing.get_context("spawn")
        self._worker: WorkerProcess | None = None
        self._changed = threading.Condition()
        self._closing = False
        self._restarter: threading.Thread | None = None
        self._failed_restarts = 0  # jobs waiting for a restart fail when one fails
        self._delay = 1.0
        self._job_ids = itertools.count(1)
        self._conversations = itertools.count(1)
        self._current_job: int | None = None
        self._listeners: list[AvailabilityListener] = []

    def on_availability(self, listener: AvailabilityListener) -> None:
        self._listeners.append(listener)

    @property
    def worker_pid(self) -> int | None:
        """The inference worker's process id while there is one (the daemon's diagnostics show its memory)."""
        worker = self._worker
        return worker.process.pid if worker is not None and worker.alive() else None

    # Lifecycle

    def load(self) -> None:
        self._install(self._start_worker())

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

    def _start_worker(self) -> WorkerProcess:
        """Start a worker and wait until it has loaded both models; raise BackendError if it cannot."""
        worker = spawn(self._context, self.config.model_dump_json(), self._log_level)
        threading.Thread(target=self._watch, args=(worker,), name="edge_vlm-worker-watch", daemon=True).start()
        try:
            message = worker.receive(self.config.load_timeout_s)
        except BackendError:
            worker.end()
            raise BackendError(f"the inference worker {worker.reason} while loading the models; "
                               f"its log above says why{self.load_crash_hint()}") from None
        if not isinstance(message, Ready):
            worker.exited.wait(STOP_TIMEOUT_S)  # after LoadFailed it exits by itself
            worker.end()
            if isinstance(message, LoadFailed):
                raise BackendError(f"the models did not load: {message.message}")
            raise BackendError("the inference worker did not load the models within "
                               f"{self.config.load_timeout_s:.0f} s (backend.load_timeout_s)")
        logger.info("Inference worker ready in %.1f s: %s, %s", message.load_ms / 1000, self.name, message.loaded)
        self._input_size = message.input_size
        return worker

    def _install(self, worker: WorkerProcess) -> None:
        """Make ``worker`` the one jobs go to, and watch it die."""
        with self._changed:
            if self._closing:
                worker.end()
                return
            self._worker = worker
            self._changed.notify_all()
        self._announce(True, "ready")

    # Jobs

    def prepare(self, frame: Frame) -> np.ndarray:
        raise NotImplementedError

    def load_crash_hint(self) -> str:
        """What else to say when the worker dies while loading ("; …"), or ""."""
        return ""

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

    def abort(self, why: str = "the daemon is stopping") -> None:
        if (worker := self._worker) is not None:
            self._abort(worker, ErrorCode.CANCELLED, f"aborted: {why}")

    def _abort(self, worker: WorkerProcess, code: ErrorCode, message: str) -> None:
        if (job_id := self._current_job) is not None:
            with contextlib.suppress(OSError, ValueError):
                worker.send(Abort(job_id, code, message))

    def _exchange(self, worker: WorkerProcess, job: RunJob, told: Told | None) -> JobDone | JobFailed:
        """Send ``job`` and wait for its answer; abort it, then kill the worker, when it takes too long."""
        self._current_job = job.job_id
        try:
            worker.send(job)
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
        because loading took longer on a busy board."""
        with self._changed:
            if self._worker is None and self._restarter is None and not self._closing:
                raise BackendError(f"the {self.name} backend is not loaded")
            failures = self._failed_restarts
            self._changed.wait_for(
                lambda: self._worker is not None or self._closing or self._failed_restarts != failures,
                self._delay + self.config.load_timeout_s)
            if self._closing:
                raise BackendError("the daemon is stopping", code=ErrorCode.CANCELLED)
            if self._worker is None:
                raise BackendError("the model is unavailable: the inference worker is restarting",
                                   code=ErrorCode.MODEL_UNAVAILABLE)
            return self._worker

    # Supervision

    def _watch(self, worker: WorkerProcess) -> None:
        worker.reap()
        self._worker_lost(worker, worker.reason)

    def _worker_lost(self, worker: WorkerProcess, reason: str) -> None:
        """``worker`` died or was given up on: end it, and restart one unless that is under way."""
        with self._changed:
            if self._worker is not worker:  # already handled, or stopping
                return
            self._worker = None
            if self._closing:
                restarter = None
            else:  # started under the lock: close() either prevents it or sees it, and joins it
                restarter = threading.Thread(target=self._restart_loop, name="edge_vlm-worker-restart", daemon=True)
                restarter.start()  # its loop waits for the lock, then self._delay
                self._restarter = restarter
        worker.end()
        if restarter is None:
            return
        logger.error("The inference worker %s; restarting it", reason)
        self._announce(False, f"worker {reason}")

    def _restart_loop(self) -> None:
        while True:
            with self._changed:
                if self._changed.wait_for(lambda: self._closing, self._delay):
                    return
            # Doubles until a job succeeds again: a worker that crashes on every job backs off.
            self._delay = min(self._delay * 2, self.config.restart_max_delay_s)
            try:
                worker = self._start_worker()
            except BackendError as exc:
                logger.error(  # noqa: TRY400 - the reason is in the message; no traceback to show
                    "Restarting the inference worker failed: %s; next try in %.0f s", exc, self._delay)
                with self._changed:
                    self._failed_restarts += 1
                    self._changed.notify_all()
                self._announce(False, str(exc))
                continue
            self._install(worker)
            return

    def _announce(self, available: bool, reason: str) -> None:
        for listener in self._listeners:
            listener(available, reason)

