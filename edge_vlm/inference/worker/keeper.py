"""The worker process a backend keeps: started and loaded, watched, restarted when it dies.

``WorkerKeeper`` is the lifecycle half of a backend whose engine runs in a worker
(``worker/supervisor.py`` adds the jobs): ``load()`` starts the worker and returns once its engine
is loaded, or raises with the worker's reason; a worker that dies, busy or idle, or that is given
up on, is restarted in the background with a doubling delay (1 s up to ``restart_max_delay_s``),
and each listener hears when the model comes and goes.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable

from edge_vlm.config.models import OpencvBackendConfig
from edge_vlm.config.vlm import VlmBackendConfig
from edge_vlm.core.errors import BackendError
from edge_vlm.inference.worker.messages import LoadFailed, Ready
from edge_vlm.inference.worker.process import STOP_TIMEOUT_S, WorkerProcess, spawn

logger = logging.getLogger(__name__)

AvailabilityListener = Callable[[bool, str], None]


class WorkerKeeper:
    name: str

    def __init__(self, config: OpencvBackendConfig | VlmBackendConfig, log_level: str, input_size: int) -> None:
        self.config = config
        self._log_level = log_level
        self._input_size = input_size
        self._context = multiprocessing.get_context("spawn")
        self._worker: WorkerProcess | None = None
        self._changed = threading.Condition()
        self._closing = False
        self._restarter: threading.Thread | None = None
        self._failed_restarts = 0  # jobs waiting for a restart fail when one fails
        self._delay = 1.0
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

    def load_crash_hint(self) -> str:
        """What else to say when the worker dies while loading ("; …"), or ""."""
        return ""

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
            closing = self._closing
            if not closing:
                self._worker = worker
                self._changed.notify_all()
        if closing:  # ended outside the lock: that may take STOP_TIMEOUT_S, and abort() takes the lock
            worker.end()
            return
        self._announce(True, "ready")

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

