"""Getting frames off the dispatcher thread: a small pool, one capture at a time per camera.

Grabbing may block (an RTSP connection, an HTTP request, a Frigate snapshot not published yet).
Per camera, requests ("ask anything") wait their turn in order (at most ``MAX_REQUESTS``: more are
refused ``busy``, since each may hold a whole image); any other trigger waits in one
slot where the newest replaces the one before (it will see a newer frame anyway), except that one
that came by itself (motion, an interval) never replaces one that was asked for.

The threads are daemon threads, and ``close()`` waits ``CLOSE_WAIT_S`` at most for them: a source's
grab is bounded (its timeouts), and a stopping source ends its grab at once where it can, but one
OpenCV call cannot be interrupted, and it must not hold up the daemon's stop past systemd's
TimeoutStopSec (a pool of non-daemon threads would also keep the process alive at exit).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_vlm.errors import InputError
from edge_vlm.ingest.triggers import Trigger
from edge_vlm.schedule.scheduler import AUTOMATIC, MAX_REQUESTS, REQUEST
from edge_vlm.stats import Stats

logger = logging.getLogger(__name__)

MAX_THREADS = 16
# close() waits this long at most for captures in flight (the sources were stopped just before,
# which ends theirs where it can). systemd/edge-vlm.service's stop budget counts it.
CLOSE_WAIT_S = 3.0


@dataclass
class _Slot:
    requests: deque[Trigger] = field(default_factory=deque)
    latest: Trigger | None = None
    busy: bool = False

    def take(self) -> Trigger | None:
        if self.requests:
            return self.requests.popleft()
        latest, self.latest = self.latest, None
        return latest


class CapturePool:
    def __init__(self, threads: int, run: Callable[[Trigger], None],
                 refuse: Callable[[Trigger, InputError], None], stats: Stats) -> None:
        """``refuse``: answers a trigger that will not be captured for (the pool is closed, or full)."""
        self._limit = min(MAX_THREADS, max(1, threads))
        self._run = run
        self._refuse = refuse
        self._stats = stats
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Condition()  # guards all below; threads wait on it for keys to serve
        self._closed = False
        self._due: deque[str] = deque()  # keys to serve, for the next free thread
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a key
        self._serving: set[str] = set()

    def submit(self, key: str, trigger: Trigger) -> None:
        """Grab for ``trigger`` on a capture thread, after what is already waiting for ``key``."""
        with self._lock:
            slot = self._slots.setdefault(key, _Slot())
            closed = self._closed
            full = trigger.origin == REQUEST and len(slot.requests) >= MAX_REQUESTS
            if not (closed or full) and self._enqueue(slot, trigger):
                self._dispatch(key)
        if closed:
            self._refuse(trigger, InputError("the daemon is stopping", code="cancelled"))
        elif full:
            self._refuse(trigger, InputError(f"{MAX_REQUESTS} requests already wait here", code="busy"))

    def _dispatch(self, key: str) -> None:
        """Hand ``key`` to an idle thread, or a new one while under the limit (the lock is held)."""
        self._due.append(key)
        if len(self._due) > self._idle and len(self._threads) < self._limit:
            thread = threading.Thread(target=self._work, name=f"edge_vlm-capture-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()
        self._lock.notify()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
                self._lock.wait_for(lambda: self._due or self._closed)
                self._idle -= 1
                if not self._due:  # closed
                    return
                key = self._due.popleft()
                self._serving.add(key)
            try:
                self._serve(key)
            finally:
                with self._lock:
                    self._serving.discard(key)

    def _enqueue(self, slot: _Slot, trigger: Trigger) -> bool:
        """Put ``trigger`` in the slot; True when no capture runs for it yet."""
        if trigger.origin == REQUEST:
            slot.requests.append(trigger)
        elif slot.latest is not None and trigger.origin in AUTOMATIC and slot.latest.origin not in AUTOMATIC:
            self._stats.count("jobs_coalesced")  # the trigger someone asked for will describe it
        else:
            if slot.latest is not None:
                self._stats.count("jobs_coalesced")
                trigger = dataclasses.replace(
                    trigger, superseded=(*slot.latest.superseded, str(slot.latest.request_id)))
            slot.latest = trigger
        if slot.busy:
            return False
        slot.busy = True
        return True

    def _serve(self, key: str) -> None:
        while True:
            with self._lock:
                slot = self._slots.get(key)  # gone once closed
                trigger = None if slot is None else slot.take()
                if slot is None or trigger is None:
                    if slot is not None:
                        slot.busy = False
                    return
            try:
                self._run(trigger)
            except Exception:  # a capture thread must go on serving its camera
                logger.exception("Unexpected error while capturing for %s", key)

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """No more captures: what still waits for one is cancelled; the captures in flight get
        ``wait_s`` to end (their sources were stopped), after which they are not waited for."""
        with self._lock:
            self._closed = True
            waiting = [t for slot in self._slots.values() for t in (*slot.requests, slot.latest) if t is not None]
            self._slots.clear()
            self._due.clear()
            self._lock.notify_all()
            threads = list(self._threads)
        for trigger in waiting:
            self._refuse(trigger, InputError("the daemon is stopping", code="cancelled"))
        until = time.monotonic() + wait_s
        for thread in threads:
            thread.join(max(0.0, until - time.monotonic()))
        with self._lock:
            stuck = sorted(self._serving)
        if stuck:
            logger.warning("Still capturing for %s after %g s (a source's grab that cannot be interrupted, "
                           "bounded by its own timeouts): not waiting for it", ", ".join(stuck), wait_s)
