"""A backend as the daemon sees it: a supervised worker process that runs the backend's engine.

Both backends run this way (``backends/vlm.py`` on the NPU, ``backends/opencv.py`` on the CPU):
native code that reads a frame's pixels, a vendor runtime or OpenCV's detectors, never runs in the
daemon, whose MQTT session must outlive any frame.

- ``load()`` starts the worker and returns once its engine is loaded (the daemon goes online
  only then), or raises with the worker's reason.
- ``describe()`` sends one job and waits up to ``job_timeout_s``; past that it asks the worker to
  abort (``rkllm_abort`` for the vlm), and if the worker does not answer within ``abort_grace_s`` it is killed.
- A worker that dies (a segfault in a vendor library), busy or idle, or that is killed, fails the
  job in flight with a clear code, is restarted in the background with a doubling delay (1 s up to
  ``restart_max_delay_s``), and the model shows as unavailable until it is back.
- Each worker gets a private working directory (imgenc's files go there), removed when it ends.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

import numpy as np

from edge_vlm.config.models import OpencvBackendConfig
from edge_vlm.config.vlm import VlmBackendConfig
from edge_vlm.errors import BackendError
from edge_vlm.frames import Frame
from edge_vlm.inference.results import Description
from edge_vlm.inference.worker.child import worker_main
from edge_vlm.inference.worker.messages import (
    Abort,
    FromWorker,
    JobDone,
    JobFailed,
    LoadFailed,
    Ready,
    RunJob,
    Shutdown,
)

logger = logging.getLogger(__name__)

POLL_S = 0.2
STOP_TIMEOUT_S = 10.0

AvailabilityListener = Callable[[bool, str], None]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # real-time signals have no name
        return f"signal {number}"


def _exit_reason(process: BaseProcess) -> str:
    code = process.exitcode
    if code is None:
        return "stopped answering"
    return f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with status {code}"


def _kill_children(pid: int) -> None:
    """SIGKILL the processes ``pid`` started (an imgenc run), before ``pid`` itself is killed."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                os.kill(int(stat.parent.name), signal.SIGKILL)


@dataclass(eq=False)
class _Worker:
    """One worker process. Only its watcher thread reaps it (two threads waiting on one child
    race, and the loser sees no exit status), and says how it ended."""

    process: BaseProcess
    conn: Connection
    workdir: Path
    send_lock: threading.Lock = field(default_factory=threading.Lock)  # describe() and abort() both send
    exited: threading.Event = field(default_factory=threading.Event)
    reason: str = "stopped answering"

    def alive(self) -> bool:
        return not self.exited.is_set()

    def send(self, message: RunJob | Abort | Shutdown) -> None:
        with self.send_lock:
            self.conn.send(message)

    def end(self) -> None:
        if self.alive():
            _kill_children(self.process.pid or 0)
            self.process.kill()
        self.exited.wait(STOP_TIMEOUT_S)
        self.conn.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


class WorkerBackend:
    """The daemon's side of a backend whose engine runs in a worker; subclasses say how a frame is
    prepared (in the daemon, overlapping the worker's current job) and what the job's prompt is."""

    name: str
    min_long_side: int | None

    def __init__(self, config: OpencvBackendConfig | VlmBackendConfig, log_level: str, input_size: int) -> None:
        self.config = config
        #: (start, end) in time.monotonic() of the worker's recent jobs: how busy the NPU is
        self.busy: deque[tuple[float, float]] = deque(maxlen=1024)
        self._log_level = log_level
        self._input_size = input_size
        self._context = multiprocessing.get_context("spawn")
        self._worker: _Worker | None = None
        self._changed = threading.Condition()
        self._closing = False
        self._restarter: threading.Thread | None = None
        self._failed_restarts = 0  # jobs waiting for a restart fail when one fails
        self._delay = 1.0
        self._job_ids = itertools.count(1)
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
            self._abort(worker, "cancelled", "the daemon is stopping")
            with contextlib.suppress(OSError, ValueError):  # a worker already gone needs no goodbye
                worker.send(Shutdown())
            if not worker.exited.wait(STOP_TIMEOUT_S):
                logger.warning("The inference worker did not stop within %.0f s: killing it", STOP_TIMEOUT_S)
            worker.end()
        if restarter is not None:
            restarter.join(STOP_TIMEOUT_S + self.config.load_timeout_s)

    def _start_worker(self) -> _Worker:
        """Start a worker and wait until it has loaded both models; raise BackendError if it cannot."""
        parent, child = self._context.Pipe()
        workdir = Path(tempfile.mkdtemp(prefix="edge_vlm-worker-"))
        process = self._context.Process(
            target=worker_main, args=(child, self.config.model_dump_json(), self._log_level, str(workdir)),
            name="edge_vlm-worker", daemon=True,
        )
        process.start()
        child.close()
        worker = _Worker(process, parent, workdir)
        threading.Thread(target=self._watch, args=(worker,), name="edge_vlm-worker-watch", daemon=True).start()
        try:
            message = self._receive(worker, self.config.load_timeout_s)
        except BackendError:
            worker.end()
            raise BackendError(f"the inference worker {worker.reason} while loading the models; "
                               "its log above says why") from None
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

    def _install(self, worker: _Worker) -> None:
        """Make ``worker`` the one jobs go to, and watch it die."""
        with self._changed:
            if self._closing:
                worker.end()
                return
            self._worker = worker
            self._changed.notify_all()
        self._announce(True, "ready")

    def _receive(self, worker: _Worker, timeout: float) -> FromWorker | None:
        """The worker's next message, or None on timeout; BackendError if the worker died."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                if worker.conn.poll(min(POLL_S, remaining)):
                    message: FromWorker = worker.conn.recv()
                    return message
            except (EOFError, OSError):
                pass
            else:
                if worker.alive():
                    continue
            worker.exited.wait(STOP_TIMEOUT_S)
            raise BackendError(f"the inference worker {worker.reason}", code="worker_crashed")
        return None

    # Jobs

    def prepare(self, frame: Frame) -> np.ndarray:
        raise NotImplementedError

    def job_prompt(self, prompt: str) -> str:
        """The prompt as the engine takes it; raise BackendError(code="bad_trigger") if it cannot be used."""
        return prompt

    def describe(self, prepared: np.ndarray, frame: Frame, prompt: str) -> Description:
        job = RunJob(next(self._job_ids), frame.camera, prepared, self.job_prompt(prompt))
        worker = self._wait_available()
        try:
            reply = self._exchange(worker, job)
        except BackendError as exc:
            if exc.code == "worker_crashed":
                self._worker_lost(worker, str(exc).removeprefix("the inference worker "))
                raise BackendError(f"{exc}; restarting it", code="worker_crashed") from None
            raise
        if isinstance(reply, JobFailed):
            raise BackendError(reply.message, code=reply.code)
        self._delay = 1.0
        self.busy.append((reply.started, reply.finished))
        return Description(reply.text, reply.timings_ms, reply.details)

    def abort(self) -> None:
        if (worker := self._worker) is not None:
            self._abort(worker, "cancelled", "aborted: the daemon is stopping")

    def _abort(self, worker: _Worker, code: str, message: str) -> None:
        if (job_id := self._current_job) is not None:
            with contextlib.suppress(OSError, ValueError):
                worker.send(Abort(job_id, code, message))

    def _exchange(self, worker: _Worker, job: RunJob) -> JobDone | JobFailed:
        """Send ``job`` and wait for its answer; abort it, then kill the worker, when it takes too long."""
        self._current_job = job.job_id
        try:
            worker.send(job)
            reply = self._reply(worker, job.job_id, self.config.job_timeout_s)
            if reply is None:
                self._abort(worker, "timed_out",
                            f"no answer within backend.job_timeout_s = {self.config.job_timeout_s:g} s: aborted")
                reply = self._reply(worker, job.job_id, self.config.abort_grace_s)
        except (OSError, ValueError):  # the pipe broke: the worker is gone
            worker.exited.wait(STOP_TIMEOUT_S)
            raise BackendError(f"the inference worker {worker.reason}", code="worker_crashed") from None
        finally:
            self._current_job = None
        if reply is None:
            logger.error("The inference worker ignored the abort for %.0f s: killing it", self.config.abort_grace_s)
            self._worker_lost(worker, "hung and was killed")
            return JobFailed(job.job_id, "timed_out", f"no answer within backend.job_timeout_s = "
                             f"{self.config.job_timeout_s:g} s, and the worker ignored the abort")
        return reply

    def _reply(self, worker: _Worker, job_id: int, timeout: float) -> JobDone | JobFailed | None:
        deadline = time.monotonic() + timeout
        while (message := self._receive(worker, deadline - time.monotonic())) is not None:
            if isinstance(message, JobDone | JobFailed) and message.job_id == job_id:
                return message
            logger.debug("Ignoring a late reply from the worker: %s", type(message).__name__)
        return None

    def _wait_available(self) -> _Worker:
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
                raise BackendError("the daemon is stopping", code="cancelled")
            if self._worker is None:
                raise BackendError("the model is unavailable: the inference worker is restarting",
                                   code="model_unavailable")
            return self._worker

    # Supervision

    def _watch(self, worker: _Worker) -> None:
        wait([worker.process.sentinel])
        worker.process.join()
        worker.reason = _exit_reason(worker.process)
        worker.exited.set()
        self._worker_lost(worker, worker.reason)

    def _worker_lost(self, worker: _Worker, reason: str) -> None:
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
