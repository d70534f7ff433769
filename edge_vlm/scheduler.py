"""Which job runs next: one slot per camera, latest wins, cameras served in arrival order.

A camera that sends ten snapshots while the backend is busy gets one job, for the newest frame,
that records the nine it replaced. It keeps the place in line its first waiting job had, so a
busy camera cannot push the others back, and there are never more jobs waiting than cameras.
A job something asked for (a trigger, a Frigate event) is never replaced by one that came by
itself (a snapshot, motion, an interval): the automatic one joins the waiting one instead.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from edge_vlm.jobs import Job

AUTOMATIC = frozenset({"snapshot", "motion", "interval"})


class SchedulerClosed(Exception):
    """The scheduler takes no more jobs: the daemon is stopping."""


class Scheduler:
    def __init__(self) -> None:
        self._waiting: OrderedDict[str, Job] = OrderedDict()
        self._changed = threading.Condition()
        self._closed = False

    def submit(self, job: Job) -> Job | None:
        """Queue ``job``; return the job that will not run because of it (the waiting one it
        replaced, or itself when it joined a waiting job that was asked for), if any."""
        with self._changed:
            if self._closed:
                raise SchedulerClosed
            waiting = self._waiting.get(job.camera)
            if waiting is not None and job.origin in AUTOMATIC and waiting.origin not in AUTOMATIC:
                waiting.superseded_ids.append(job.request_id)
                return job
            if waiting is not None:
                job.superseded_ids = [*waiting.superseded_ids, waiting.request_id, *job.superseded_ids]
            self._waiting[job.camera] = job  # an existing key keeps its position
            self._changed.notify()
            return waiting

    def next(self, timeout: float | None = None) -> Job | None:
        """The next job, waiting up to ``timeout``; None on timeout or once closed and empty."""
        with self._changed:
            self._changed.wait_for(lambda: self._waiting or self._closed, timeout)
            if not self._waiting:
                return None
            return self._waiting.popitem(last=False)[1]

    def close(self) -> list[Job]:
        """Take no more jobs; return those still waiting, which will not run."""
        with self._changed:
            self._closed = True
            left = list(self._waiting.values())
            self._waiting.clear()
            self._changed.notify_all()
            return left

    @property
    def depth(self) -> int:
        with self._changed:
            return len(self._waiting)
