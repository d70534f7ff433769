"""Which job runs next on the NPU: the slot policy (edge_vlm.core.slots) over the cameras' jobs.

A camera that sends ten snapshots while the backend is busy gets one job, for the newest frame,
that records the nine it replaced; there are never more such jobs waiting than cameras. Requests
are each answered, in the order they came, per camera; a request refused on the way (unknown
profile, no frame, busy) is answered after the camera's earlier requests too (``hold``), not
ahead of them.

A job's acceptance (its ``pending`` event) is published from ``submit``, under the scheduler's
lock, before the worker can take the job: so no outcome of the job can overtake it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from edge_vlm.core.contracts import Failure, Origin
from edge_vlm.core.errors import ErrorCode, Refused
from edge_vlm.core.slots import Slots
from edge_vlm.core.stats import Stats
from edge_vlm.schedule.job import Job

logger = logging.getLogger(__name__)

# A job accepted, and the one that will not run because of it (the waiting one it replaced, or
# itself when it joined a waiting job that was asked for), if any.
Accepted = Callable[[Job, Job | None], None]


class Scheduler:
    def __init__(self, stats: Stats, accepted: Accepted) -> None:
        """``accepted`` publishes a job's acceptance; it is called under the lock, so it must not block
        (an exception from it is logged: the job stays queued)."""
        self._slots: Slots[Job] = Slots(lambda job: job.origin, stats)
        self._accepted = accepted
        self._running: Job | None = None  # taken by next(), until finished()
        self._changed = threading.Condition()
        self._closed = False

    def submit(self, job: Job) -> None:
        """Queue ``job`` and announce it; Refused when closed (``cancelled``) or too many requests wait."""
        with self._changed:
            if self._closed:
                raise Refused("the daemon is stopping", code=ErrorCode.CANCELLED)
            try:
                placed = self._slots.put(job.camera, job)
            except Refused as full:
                where = f"for camera {job.camera}" if job.camera else "with an image of their own (HTTP and MQTT)"
                raise Refused(f"{full} {where}: ask again later", code=ErrorCode.BUSY) from None
            dropped = placed.replaced
            if placed.joined is not None:
                placed.joined.superseded_ids.append(job.request_id)
                job.superseded_by = placed.joined.request_id
                dropped = job
            elif placed.replaced is not None:
                job.superseded_ids = [*placed.replaced.superseded_ids, placed.replaced.request_id,
                                      *job.superseded_ids]
                placed.replaced.superseded_by = job.request_id
            try:
                self._accepted(job, dropped)
            except Exception:  # the job is queued: it runs, and its outcome is said then
                logger.exception("Announcing job %s failed", job.request_id)
            self._changed.notify()

    def next(self, timeout: float | None = None) -> Job | None:
        """The next job, waiting up to ``timeout``; None on timeout or once closed and empty."""
        with self._changed:
            self._changed.wait_for(lambda: self._slots or self._closed, timeout)
            job = self._slots.take_next()
            self._running = job
            return job

    def finished(self, job: Job) -> list[Failure]:
        """``job`` (from next()) is answered: the refusals held behind it, to answer now."""
        with self._changed:
            if self._running is job:
                self._running = None
            held, job.held = job.held, []
            return held

    def take_request(self, camera: str, request_id: str) -> Job | None:
        """The waiting request ``request_id`` of ``camera``, taken away: it will not run (its asker
        went away). None when it does not wait (it runs, or was answered)."""
        with self._changed:
            return self._slots.take_request(camera, lambda job: job.request_id == request_id)

    def hold(self, failure: Failure) -> bool:
        """Keep a request's refusal until the camera's earlier requests are answered (it goes with
        the last of them); False when none waits or runs: answer it now."""
        with self._changed:
            last = self._slots.last_request(failure.camera) or self._running
            if last is None or last.origin != Origin.REQUEST or last.camera != failure.camera:
                return False
            last.held.append(failure)
            return True

    def close(self) -> list[Job]:
        """Take no more jobs; return those still waiting, which will not run."""
        with self._changed:
            self._closed = True
            left = self._slots.drain()
            self._changed.notify_all()
            return left

    @property
    def depth(self) -> int:
        with self._changed:
            return len(self._slots)
