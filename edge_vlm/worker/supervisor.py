"""The ``vlm`` backend as the daemon sees it: a supervised inference worker process.

- ``load()`` starts the worker and returns once both models are loaded (the daemon goes online
  only then), or raises with the worker's reason.
- ``describe()`` sends one job and waits up to ``job_timeout_s``; past that it asks the worker to
  abort (``rkllm_abort``), and if the worker does not answer within ``abort_grace_s`` it is killed.
- A worker that dies (a segfault in a vendor library) or is killed fails the job in flight with a
  clear code, is restarted in the background with a doubling delay (1 s up to
  ``restart_max_delay_s``), and the model shows as unavailable until it is back.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import numpy as np

from edge_vlm.config.vlm import VlmBackendConfig
from edge_vlm.errors import BackendError
from edge_vlm.frames import Frame
from edge_vlm.jobs import Description
from edge_vlm.prompts import multimodal_prompt
from edge_vlm.vision.preprocess import encoder_input
from edge_vlm.worker.child import worker_main
from edge_vlm.worker.messages import Abort, FromWorker, JobDone, JobFailed, LoadFailed, Ready, RunJob, Shutdown

logger = logging.getLogger(__name__)

POLL_S = 0.2
STOP_TIMEOUT_S = 10.0

AvailabilityListener = Callable[[bool, str], None]


def _exit_reason(process: BaseProcess) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


class VlmBackend:
    def __init__(self, config: VlmBackendConfig, log_level: str = "INFO") -> None:
        self.config = config
        self.name = config.family
        self.min_long_side: int | None = None  # full-size decode: preprocess exactly as the demo
        #: (start, end) in time.monotonic() of the worker's recent jobs: how busy the NPU is
        self.busy: deque[tuple[float, float]] = deque(maxlen=1024)
        self._log_level = log_level
        self._input_size = config.spec.input_size
        self._context = multiprocessing.get_context("spawn")
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._ready = threading.Condition()
        self._available = False
        self._closing = False
        self._restarting = False
        self._delay = 1.0
        self._job_ids = iter(range(1, 2**62))
        self._current_job: int | None = None
        self._send_lock = threading.Lock()  # describe() and abort() may send at the same time
        self._listeners: list[AvailabilityListener] = []

    def on_availability(self, listener: AvailabilityListener) -> None:
        self._listeners.append(listener)

    # Lifecycle

    def load(self) -> None:
        self._start_worker()

    def close(self) -> None:
        with self._ready:
            self._closing = True
            self._ready.notify_all()
            process, conn = self._process, self._conn
        if process is None or conn is None:
            return
        with contextlib.suppress(OSError, ValueError):  # a worker already gone needs no goodbye
            conn.send(Shutdown())
        process.join(STOP_TIMEOUT_S)
        if process.is_alive():
            logger.warning("The inference worker did not stop within %.0f s: killing it", STOP_TIMEOUT_S)
            process.kill()
            process.join()
        conn.close()

    def _start_worker(self) -> None:
        """Start a worker and wait until it has loaded both models; raise BackendError if it cannot."""
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=worker_main, args=(child, self.config.model_dump_json(), self._log_level),
            name="edge_vlm-worker", daemon=True,
        )
        process.start()
        child.close()
        message = self._receive(parent, process, self.config.load_timeout_s)
        if not isinstance(message, Ready):
            process.kill()
            process.join()
            parent.close()
            if isinstance(message, LoadFailed):
                raise BackendError(f"the models did not load: {message.message}")
            raise BackendError("the inference worker did not load the models within "
                               f"{self.config.load_timeout_s:.0f} s (backend.load_timeout_s)")
        logger.info("Inference worker ready in %.1f s: %s, RKLLM ABI %s, encoder input %d px",
                    message.load_ms / 1000, self.config.family, message.runtime_abi, message.input_size)
        with self._ready:
            self._process, self._conn = process, parent
            self._input_size = message.input_size
            self._available = True
            self._ready.notify_all()
        self._announce(True, "ready")

    def _receive(self, conn: Connection, process: BaseProcess, timeout: float) -> FromWorker | None:
        """The worker's next message, or None on timeout; BackendError if the worker died."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                if conn.poll(min(POLL_S, remaining)):
                    message: FromWorker = conn.recv()
                    return message
            except (EOFError, OSError):
                pass
            else:
                if process.is_alive():
                    continue
            process.join(1.0)
            raise BackendError(f"the inference worker {_exit_reason(process)}", code="worker_crashed")

    # Jobs

    def prepare(self, frame: Frame) -> np.ndarray:
        return encoder_input(frame.pixels, self._input_size)

    def describe(self, prepared: np.ndarray, frame: Frame, prompt: str) -> Description:
        process, conn = self._wait_available()
        try:
            reply = self._exchange(process, conn, RunJob(next(self._job_ids), prepared, multimodal_prompt(prompt)))
        except BackendError as exc:
            if exc.code == "worker_crashed":
                self._worker_lost(str(exc).removeprefix("the inference worker "))
                raise BackendError(f"{exc}; restarting it", code="worker_crashed") from None
            raise
        if isinstance(reply, JobFailed):
            raise BackendError(reply.message, code=reply.code)
        self._delay = 1.0
        self.busy.append((reply.started, reply.finished))
        details = {**reply.details, "worker_ms": round((reply.finished - reply.started) * 1000, 1)}
        return Description(reply.text, reply.timings_ms, details)

    def abort(self) -> None:
        job_id, conn = self._current_job, self._conn
        if job_id is not None and conn is not None:
            with self._send_lock, contextlib.suppress(OSError, ValueError):
                conn.send(Abort(job_id))

    def _exchange(self, process: BaseProcess, conn: Connection, job: RunJob) -> JobDone | JobFailed:
        """Send ``job`` and wait for its answer; abort it, then kill the worker, when it takes too long."""
        try:
            with self._send_lock:
                conn.send(job)
                self._current_job = job.job_id
            reply = self._reply(conn, process, job.job_id, self.config.job_timeout_s)
            if reply is None:
                self.abort()
                reply = self._reply(conn, process, job.job_id, self.config.abort_grace_s)
        except (OSError, ValueError):  # the pipe broke: the worker is gone
            process.join(1.0)
            raise BackendError(f"the inference worker {_exit_reason(process)}", code="worker_crashed") from None
        finally:
            self._current_job = None
        if reply is None:
            logger.error("The inference worker ignored the abort for %.0f s: killing it", self.config.abort_grace_s)
            process.kill()
            self._worker_lost("hung and was killed")
            return JobFailed(job.job_id, "timed_out", f"no answer within backend.job_timeout_s = "
                             f"{self.config.job_timeout_s:g} s, and the worker ignored the abort")
        return reply

    def _reply(self, conn: Connection, process: BaseProcess, job_id: int, timeout: float) -> JobDone | JobFailed | None:
        deadline = time.monotonic() + timeout
        while (message := self._receive(conn, process, deadline - time.monotonic())) is not None:
            if isinstance(message, JobDone | JobFailed) and message.job_id == job_id:
                return message
            logger.debug("Ignoring a late reply from the worker: %s", type(message).__name__)
        return None

    def _wait_available(self) -> tuple[BaseProcess, Connection]:
        """The running worker; while it restarts, wait for it up to the job timeout."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._available or self._closing, self.config.job_timeout_s) \
                    or self._closing:
                raise BackendError("the model is unavailable: the inference worker is restarting",
                                   code="model_unavailable")
            if self._process is None or self._conn is None:  # pragma: no cover - available implies both
                raise BackendError("the inference worker is not running", code="model_unavailable")
            return self._process, self._conn

    # Supervision

    def _worker_lost(self, reason: str) -> None:
        with self._ready:
            self._available = False
            if self._conn is not None:
                self._conn.close()
            self._process = self._conn = None
            if self._restarting or self._closing:
                return
            self._restarting = True
        logger.error("The inference worker %s; restarting it", reason)
        self._announce(False, f"worker {reason}")
        threading.Thread(target=self._restart_loop, name="edge_vlm-worker-restart", daemon=True).start()

    def _restart_loop(self) -> None:
        while True:
            with self._ready:
                if self._ready.wait_for(lambda: self._closing, self._delay):
                    self._restarting = False
                    return
            # Doubles until a job succeeds again: a worker that crashes on every job backs off.
            self._delay = min(self._delay * 2, self.config.restart_max_delay_s)
            try:
                self._start_worker()
            except BackendError as exc:
                logger.error(  # noqa: TRY400 - the reason is in the message; no traceback to show
                    "Restarting the inference worker failed: %s; next try in %.0f s", exc, self._delay)
                self._announce(False, str(exc))
                continue
            with self._ready:
                self._restarting = False
            return

    def _announce(self, available: bool, reason: str) -> None:
        for listener in self._listeners:
            listener(available, reason)
