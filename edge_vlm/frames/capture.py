"""Getting frames off the dispatcher thread: a small pool, one capture at a time per camera.

Grabbing may block (an RTSP connection, an HTTP request, a Frigate snapshot not published yet).
Per camera, triggers wait by the slot policy (edge_vlm.core.slots): requests ("ask anything") in
order, at most ``MAX_REQUESTS`` (more are refused ``busy``, since each may hold a whole image),
Frigate's events and review items in order too (at most ``MAX_EVENTS``); any other
trigger in one slot where the newest replaces the one before (it will see a newer frame anyway),
except that one that came by itself (motion, an interval) never replaces one that was asked for.
A trigger replaced while it waited is named in the one that replaced it (``superseded``).

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

from edge_vlm.core.errors import ErrorCode, InputError, Refused
from edge_vlm.core.slots import Slots
from edge_vlm.core.stats import Stats
from edge_vlm.ingest.trigger import Trigger

logger = logging.getLogger(__name__)

MAX_THREADS = 16
# close() waits this long at most for captures in flight (the sources were stopped just before,
# which ends theirs where it can). systemd/edge-vlm.service's stop budget counts it.
CLOSE_WAIT_S = 3.0


def _superseding(new: Trigger, waiting: Trigger) -> Trigger:
    """``new`` in ``waiting``'s place, naming it; a clip the waiting one asked for is kept, since its
    asker gets this one's answer (``new``'s own choice of clip stands)."""
    clip = new.clip if new.clip is not None else waiting.clip
    return dataclasses.replace(new, superseded=(*waiting.superseded, str(waiting.request_id)), clip=clip)


class CapturePool:
    def __init__(self, threads: int, run: Callable[[Trigger], None],
                 refuse: Callable[[Trigger, InputError], None], stats: Stats) -> None:
        """``refuse``: answers a trigger that will not be captured for (the pool is closed, or full)."""
        self._limit = min(MAX_THREADS, max(1, threads))
        self._run = run
        self._refuse = refuse
        self._slots: Slots[Trigger] = Slots(lambda trigger: trigger.origin, stats, supersede=_superseding)
        self._lock = threading.Condition()  # guards all below; threads wait on it for keys to serve
        self._closed = False
        self._busy: set[str] = set()  # keys a thread serves or is due to
        self._due: deque[str] = deque()  # keys to serve, for the next free thread
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a key
        self._serving: set[str] = set()

    def submit(self, key: str, trigger: Trigger) -> None:
        """Grab for ``trigger`` on a capture thread, after what is already waiting for ``key``."""
        refusal: InputError | None = None
        with self._lock:
            if self._closed:
                refusal = Refused("the daemon is stopping", code=ErrorCode.CANCELLED)
            else:
                try:
                    self._slots.put(key, trigger)
                except Refused as full:
                    refusal = full
                if refusal is None and key not in self._busy:
                    self._busy.add(key)
                    self._dispatch(key)
        if refusal is not None:
            self._refuse(trigger, refusal)

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

    def _serve(self, key: str) -> None:
        while True:
            with self._lock:
                trigger = None if self._closed else self._slots.take(key)
                if trigger is None:
                    self._busy.discard(key)
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
            waiting = self._slots.drain()
            self._due.clear()
            self._lock.notify_all()
            threads = list(self._threads)
        for trigger in waiting:
            self._refuse(trigger, Refused("the daemon is stopping", code=ErrorCode.CANCELLED))
        until = time.monotonic() + wait_s
        for thread in threads:
            thread.join(max(0.0, until - time.monotonic()))
        with self._lock:
            stuck = sorted(self._serving)
        if stuck:
            logger.warning("Still capturing for %s after %g s (a source's grab that cannot be interrupted, "
                           "bounded by its own timeouts): not waiting for it", ", ".join(stuck), wait_s)
