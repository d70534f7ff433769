"""Which job runs next: one slot per camera, latest wins, cameras served in turn.

A camera that sends ten snapshots while the backend is busy gets one job, for the newest frame,
that records the nine it replaced. Cameras with work take turns in the order their work arrived,
so a busy camera cannot push the others back, and there are never more such jobs waiting than
cameras. A job something asked for (a trigger, a Frigate event) is never replaced by one that came
by itself (a snapshot, motion, an interval): the automatic one joins the waiting one instead.
Requests ("ask anything") are different: each is answered, in the order they came, per camera;
a request refused on the way (unknown profile, no frame, busy) is answered after the camera's
earlier requests too (``hold``), not ahead of them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque

from edge_vlm.jobs import Failure, Job

AUTOMATIC = frozenset({"snapshot", "motion", "interval"})
REQUEST = "request"
MAX_REQUESTS = 32  # waiting per camera


class SchedulerClosed(Exception):
    """The scheduler takes no more jobs: the daemon is stopping."""


class SchedulerFull(Exception):
    """Too many requests wait for this camera already."""


class Scheduler:
    def __init__(self) -> None:
        self._slots: dict[str, Job] = {}  # camera -> its latest-wins job
        self._requests: dict[str, deque[Job]] = {}  # camera -> its requests, first come first served
        self._turns: OrderedDict[str, None] = OrderedDict()  # cameras with work, in turn order
        self._running: Job | None = None  # taken by next(), until finished()
        self._changed = threading.Condition()
        self._closed = False

    def submit(self, job: Job) -> Job | None:
        """Queue ``job``; return the job that will not run because of it (the waiting one it
        replaced, or itself when it joined a waiting job that was asked for), if any."""
        with self._changed:
            if self._closed:
                raise SchedulerClosed
            dropped = self._enqueue(job)
            if job.camera not in self._turns:
                self._turns[job.camera] = None
            self._changed.notify()
            return dropped

    def _enqueue(self, job: Job) -> Job | None:
        if job.origin == REQUEST:
            requests = self._requests.setdefault(job.camera, deque())
            if len(requests) >= MAX_REQUESTS:
                raise SchedulerFull
            requests.append(job)
            return None
        waiting = self._slots.get(job.camera)
        if waiting is not None and job.origin in AUTOMATIC and waiting.origin not in AUTOMATIC:
            waiting.superseded_ids.append(job.request_id)
            job.superseded_by = waiting.request_id
            return job
        if waiting is not None:
            job.superseded_ids = [*waiting.superseded_ids, waiting.request_id, *job.superseded_ids]
            waiting.superseded_by = job.request_id
        self._slots[job.camera] = job
        return waiting

    def next(self, timeout: float | None = None) -> Job | None:
        """The next job, waiting up to ``timeout``; None on timeout or once closed and empty."""
        with self._changed:
            self._changed.wait_for(lambda: self._turns or self._closed, timeout)
            if not self._turns:
                return None
            camera, _ = self._turns.popitem(last=False)
            requests = self._requests.get(camera)
            job = requests.popleft() if requests else self._slots.pop(camera)
            if requests or camera in self._slots:
                self._turns[camera] = None  # more for this camera: after the others
            self._running = job
            return job

    def finished(self, job: Job) -> list[Failure]:
        """``job`` (from next()) is answered: the refusals held behind it, to answer now."""
        with self._changed:
            if self._running is job:
                self._running = None
            held, job.held = job.held, []
            return held

    def hold(self, failure: Failure) -> bool:
        """Keep a request's refusal until the camera's earlier requests are answered (it goes with
        the last of them); False when none waits or runs: answer it now."""
        with self._changed:
            requests = self._requests.get(failure.camera)
            running = self._running
            last = requests[-1] if requests else running
            if last is None or last.origin != REQUEST or last.camera != failure.camera:
                return False
            last.held.append(failure)
            return True

    def close(self) -> list[Job]:
        """Take no more jobs; return those still waiting, which will not run."""
        with self._changed:
            self._closed = True
            left = [*self._slots.values(), *(job for jobs in self._requests.values() for job in jobs)]
            self._slots.clear()
            self._requests.clear()
            self._turns.clear()
            self._changed.notify_all()
            return left

    @property
    def depth(self) -> int:
        with self._changed:
            return len(self._slots) + sum(len(jobs) for jobs in self._requests.values())
