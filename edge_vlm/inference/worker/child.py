"""The worker process: loads the backend's engine once, keeps it resident, and runs one job at a time.

It is a separate process so that a crash or a hang in native code (a vendor runtime, OpenCV's
detectors on a hostile frame) takes down only this process; the daemon's supervisor reports the
job, restarts the worker and goes on. A reader thread takes messages while a job runs, so that an
Abort reaches the engine (``rkllm_abort``) mid-generation.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import queue
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import Connection
from typing import Protocol

from pydantic import TypeAdapter

from edge_vlm.config.models import BackendConfig, OpencvBackendConfig
from edge_vlm.config.vlm import VlmBackendConfig
from edge_vlm.core.errors import BackendError, ErrorCode
from edge_vlm.inference.worker.messages import (
    Abort,
    EndConversation,
    JobDone,
    JobFailed,
    JobText,
    LoadFailed,
    Ready,
    RunJob,
    Shutdown,
    ToWorker,
)

logger = logging.getLogger(__name__)

_IOLBF = 1  # setvbuf's line-buffered mode (stdio.h)


class Engine(Protocol):
    """What a backend runs inside the worker."""

    input_size: int

    def load(self) -> str:
        """Load the models; return what was loaded, for the log. Raise BackendError if it cannot."""
        ...

    def run(self, job: RunJob, aborted: Callable[[], bool], told: Callable[[str], None] | None) -> JobDone:
        """Answer ``job``; ``told``, for a job that streams: called with the answer's text as it is
        written, where the engine can (from any thread, during ``run``)."""
        ...

    def end_conversation(self, conversation: int) -> None:
        """Forget what was kept of the conversation's frame."""
        ...

    def abort(self) -> None:
        """Stop the job in flight as soon as possible; called from the inbox thread."""
        ...

    def close(self) -> None: ...


def create_engine(config: OpencvBackendConfig | VlmBackendConfig) -> Engine:
    # Imported here: each engine's native libraries load only in the worker that uses them.
    if isinstance(config, OpencvBackendConfig):
        from edge_vlm.inference.backends.opencv import OpencvAnalyzer  # noqa: PLC0415

        return OpencvAnalyzer(config)
    from edge_vlm.inference.backends.vlm import VlmEngine  # noqa: PLC0415

    return VlmEngine(config)


class _Inbox:
    """Reads the pipe on its own thread: jobs queue up, aborts act at once."""

    def __init__(self, conn: Connection, engine: Engine) -> None:
        self.jobs: queue.Queue[RunJob | EndConversation | None] = queue.Queue()
        self.current: int | None = None
        self.aborted: dict[int, Abort] = {}
        self._conn = conn
        self._engine = engine
        threading.Thread(target=self._read, name="edge_vlm-worker-inbox", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                message: ToWorker = self._conn.recv()
            except (EOFError, OSError):  # the daemon is gone
                self.jobs.put(None)
                return
            if isinstance(message, RunJob | EndConversation):  # in order: a conversation ends after its turns
                self.jobs.put(message)
            elif isinstance(message, Abort):
                self.aborted[message.job_id] = message
                if self.current == message.job_id:
                    logger.warning("Aborting job %d: %s", message.job_id, message.message)
                    self._engine.abort()
            elif isinstance(message, Shutdown):
                self.jobs.put(None)
                return


def _serve(conn: Connection, inbox: _Inbox, engine: Engine) -> None:
    # A run's text is sent from the runtime's thread; a callback that comes late (after an abort)
    # must not interleave its bytes with the job's end, which may take more than one write.
    sending = threading.Lock()
    while (job := inbox.jobs.get()) is not None:
        if isinstance(job, EndConversation):
            try:
                engine.end_conversation(job.conversation)
            except BackendError as exc:  # the next conversation begins afresh anyway
                logger.warning("Ending conversation %d: %s", job.conversation, exc)
            continue
        inbox.current = job.job_id
        try:
            told = partial(_tell, conn, sending, job.job_id) if job.stream else None
            reply: JobDone | JobFailed = engine.run(job, partial(inbox.aborted.__contains__, job.job_id), told)
        except BackendError as exc:
            reply = JobFailed(job.job_id, exc.code, str(exc))
        except Exception as exc:
            logger.exception("Job %d failed", job.job_id)
            reply = JobFailed(job.job_id, ErrorCode.BACKEND_FAILED, f"{type(exc).__name__}: {exc}")
        inbox.current = None
        if (abort := inbox.aborted.pop(job.job_id, None)) is not None:
            reply = JobFailed(job.job_id, abort.code, abort.message)
        with sending:
            conn.send(reply)


def _tell(conn: Connection, sending: threading.Lock, job_id: int, text: str) -> None:
    with sending:
        conn.send(JobText(job_id, text))


def _line_buffer_c_stdout() -> None:
    """The vendor runtimes print with C stdio, fully buffered into a pipe or the journal: what they
    said just before a crash would be lost with the buffer. Line-buffer it."""
    libc = ctypes.CDLL(None)
    with contextlib.suppress(ValueError, AttributeError):  # not glibc: leave it
        stdout = ctypes.c_void_p.in_dll(libc, "stdout")
        libc.setvbuf(stdout, None, _IOLBF, 0)


def worker_main(conn: Connection, config_json: str, log_level: str, workdir: str) -> None:
    """Entry point of the worker process (started with the 'spawn' method)."""
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s[worker]: %(message)s")
    _line_buffer_c_stdout()
    tempfile.tempdir = workdir  # imgenc's per-frame directories go in the supervisor's private one
    # Ctrl-C and systemd's SIGTERM (sent to the whole cgroup) are the daemon's: it finishes or aborts
    # the job in flight and then stops us in order. If the daemon dies, our pipe closes and we end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    config = TypeAdapter(BackendConfig).validate_json(config_json)
    started = time.monotonic()
    engine = create_engine(config)
    try:
        loaded = engine.load()
    except BackendError as exc:
        conn.send(LoadFailed(str(exc)))
        engine.close()
        return
    try:
        conn.send(Ready(engine.input_size, loaded, (time.monotonic() - started) * 1000))
        _serve(conn, _Inbox(conn, engine), engine)
    finally:
        engine.close()
