"""The inference worker process: loads the language model, then the encoder, keeps both resident,
and runs one job at a time: encoder, then LLM, never both at once (rockchip.md §4.4).

It is a separate process so that a crash or a hang inside a vendor runtime takes down only this
process; the daemon's supervisor reports the job, restarts the worker and goes on. A reader thread
takes messages while a job runs, so that an Abort reaches ``rkllm_abort`` mid-generation.
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
from multiprocessing.connection import Connection

import numpy as np

from edge_vlm.config.vlm import OnnxEncoderConfig, VlmBackendConfig
from edge_vlm.errors import BackendError
from edge_vlm.llm.rkllm import RkllmModel
from edge_vlm.vision import Encoder, create_encoder
from edge_vlm.worker.messages import (
    Abort,
    JobDone,
    JobFailed,
    LoadFailed,
    Ready,
    RunJob,
    Shutdown,
    ToWorker,
)

logger = logging.getLogger(__name__)

_IOLBF = 1  # setvbuf's line-buffered mode (stdio.h)


class _Inbox:
    """Reads the pipe on its own thread: jobs queue up, aborts act at once."""

    def __init__(self, conn: Connection, llm: RkllmModel) -> None:
        self.jobs: queue.Queue[RunJob | None] = queue.Queue()
        self.current: int | None = None
        self.aborted: dict[int, Abort] = {}
        self._conn = conn
        self._llm = llm
        threading.Thread(target=self._read, name="edge_vlm-worker-inbox", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                message: ToWorker = self._conn.recv()
            except (EOFError, OSError):  # the daemon is gone
                self.jobs.put(None)
                return
            if isinstance(message, RunJob):
                self.jobs.put(message)
            elif isinstance(message, Abort):
                self.aborted[message.job_id] = message
                if self.current == message.job_id:
                    logger.warning("Aborting job %d: %s", message.job_id, message.message)
                    self._llm.abort()
            elif isinstance(message, Shutdown):
                self.jobs.put(None)
                return


def _run(job: RunJob, inbox: _Inbox, encoder: Encoder, llm: RkllmModel) -> JobDone:
    started = time.monotonic()
    embeddings = encoder.encode(job.pixels)
    encoded = time.monotonic()
    if not np.isfinite(embeddings).all():
        raise BackendError("the encoder produced values that are not finite numbers (NaN or infinity)")
    if job.job_id in inbox.aborted:  # aborted while encoding: no rkllm_run was there to stop
        raise BackendError("aborted before the language model started")
    generation = llm.generate(job.prompt, embeddings, encoder.input_size)
    finished = time.monotonic()
    return JobDone(
        job.job_id,
        generation.text,
        timings_ms={
            "encoder": round((encoded - started) * 1000, 1),
            "prefill": round(generation.prefill_ms, 1),
            "decode": round(generation.decode_ms, 1),
        },
        details={
            "image_tokens": int(embeddings.shape[0]),
            "prefill_tokens": generation.prefill_tokens,
            "generated_tokens": generation.generated_tokens,
            "llm_memory_mb": round(generation.memory_mb, 1),
        },
        started=started,
        finished=finished,
    )


def _serve(conn: Connection, inbox: _Inbox, encoder: Encoder, llm: RkllmModel) -> None:
    while (job := inbox.jobs.get()) is not None:
        inbox.current = job.job_id
        try:
            reply: JobDone | JobFailed = _run(job, inbox, encoder, llm)
        except BackendError as exc:
            reply = JobFailed(job.job_id, exc.code, str(exc))
        except Exception as exc:
            logger.exception("Job %d failed", job.job_id)
            reply = JobFailed(job.job_id, "backend_failed", f"{type(exc).__name__}: {exc}")
        inbox.current = None
        if (abort := inbox.aborted.pop(job.job_id, None)) is not None:
            reply = JobFailed(job.job_id, abort.code, abort.message)
        conn.send(reply)


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
    config = VlmBackendConfig.model_validate_json(config_json)
    spec = config.spec
    started = time.monotonic()
    # The language model first, then the encoder, as every Rockchip demo does.
    llm = RkllmModel(config.llm, spec, encoder_on_npu=not isinstance(config.encoder, OnnxEncoderConfig))
    encoder = create_encoder(config.encoder, spec)
    try:
        llm.load()
        encoder.load()
    except BackendError as exc:
        conn.send(LoadFailed(str(exc)))
        llm.close()
        return
    try:
        conn.send(Ready(encoder.input_size, spec.image_tokens, llm.abi_name, (time.monotonic() - started) * 1000))
        _serve(conn, _Inbox(conn, llm), encoder, llm)
    finally:
        encoder.close()
        llm.close()
