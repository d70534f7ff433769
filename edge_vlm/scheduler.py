"""Which job runs next: one slot per camera, latest wins, cameras served in arrival order.

A camera that sends ten snapshots while the backend is busy gets one job, for the newest frame,
that records the nine it replaced. It keeps the place in line its first waiting job had, so a
busy camera cannot push the others back, and there are never more jobs waiting than cameras.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from edge_vlm.jobs import Job


class SchedulerClosed(Exception):
    """The scheduler takes no more jobs: the daemon is stopping."""


class Scheduler:
    def __init__(self) -> None:
        self._waiting: OrderedDict[str, Job] = OrderedDict()
        self._changed = threading.Condition()
        self._closed = False

    def submit(self, job: Job) -> Job | None:
        """Queue ``job``; return the waiting job of the same camera that it replaced, if any."""
        with self._changed:
            if self._closed:
                raise SchedulerClosed
            replaced = self._waiting.get(job.camera)
            if replaced is not None:
                job.superseded_ids = [*replaced.superseded_ids, replaced.request_id, *job.superseded_ids]
            self._waiting[job.camera] = job  # an existing key keeps its position
            self._changed.notify()
            return replaced

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
