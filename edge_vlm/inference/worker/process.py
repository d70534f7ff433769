"""One worker process as the supervisor holds it: its pipe, its private directory, how it ended.

Only its watcher thread reaps it (``reap``); ``end`` kills it, and what it started (an imgenc run),
when it is still there, and removes its directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from pathlib import Path

from edge_vlm.core.errors import BackendError, ErrorCode
from edge_vlm.inference.worker.child import worker_main
from edge_vlm.inference.worker.messages import FromWorker, JobDone, JobFailed, JobText, ToWorker

logger = logging.getLogger(__name__)

POLL_S = 0.2
STOP_TIMEOUT_S = 10.0


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
class WorkerProcess:
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

    def send(self, message: ToWorker) -> None:
        with self.send_lock:
            self.conn.send(message)

    def reply(self, job_id: int, timeout: float, told: Callable[[str], None] | None) -> JobDone | JobFailed | None:
        """The job's end, or None when it does not come within ``timeout``; its text as it comes to
        ``told``; BackendError if the worker died."""
        deadline = time.monotonic() + timeout
        while (message := self.receive(deadline - time.monotonic())) is not None:
            if isinstance(message, JobDone | JobFailed) and message.job_id == job_id:
                return message
            if isinstance(message, JobText) and message.job_id == job_id:
                if told is not None:
                    told(message.text)
                continue
            logger.debug("Ignoring a late reply from the worker: %s", type(message).__name__)
        return None

    def receive(self, timeout: float) -> FromWorker | None:
        """The worker's next message, or None on timeout; BackendError if the worker died."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                if self.conn.poll(min(POLL_S, remaining)):
                    message: FromWorker = self.conn.recv()
                    return message
            except (EOFError, OSError):
                pass
            else:
                if self.alive():
                    continue
            self.exited.wait(STOP_TIMEOUT_S)
            raise BackendError(f"the inference worker {self.reason}", code=ErrorCode.WORKER_CRASHED)
        return None

    def reap(self) -> None:
        """Wait for the process to end, then say how it ended: for its watcher thread only."""
        wait([self.process.sentinel])
        self.process.join()
        self.reason = _exit_reason(self.process)
        self.exited.set()

    def end(self) -> None:
        if self.alive():
            _kill_children(self.process.pid or 0)
            self.process.kill()
        self.exited.wait(STOP_TIMEOUT_S)
        self.conn.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def spawn(context: SpawnContext, config_json: str, log_level: str) -> WorkerProcess:
    """Start a worker process on ``config_json`` (the backend's settings), with a private working directory."""
    parent, child = context.Pipe()
    workdir = Path(tempfile.mkdtemp(prefix="edge_vlm-worker-"))
    process = context.Process(
        target=worker_main, args=(child, config_json, log_level, str(workdir)), name="edge_vlm-worker", daemon=True,
    )
    process.start()
    child.close()
    return WorkerProcess(process, parent, workdir)
