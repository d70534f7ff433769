"""Getting frames off the dispatcher thread: a small pool, one capture at a time per camera.

Grabbing may block (an RTSP connection, an HTTP request, a Frigate snapshot not published yet).
Per camera, requests ("ask anything") wait their turn in order (at most ``MAX_REQUESTS``: more are
refused ``busy``, since each may hold a whole image); any other trigger waits in one
slot where the newest replaces the one before (it will see a newer frame anyway), except that one
that came by itself (motion, an interval) never replaces one that was asked for.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from edge_vlm.diagnostics import Stats
from edge_vlm.errors import InputError
from edge_vlm.scheduler import AUTOMATIC, MAX_REQUESTS, REQUEST
from edge_vlm.triggers import Trigger

logger = logging.getLogger(__name__)

MAX_THREADS = 16


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
        self._executor = ThreadPoolExecutor(min(MAX_THREADS, max(1, threads)), thread_name_prefix="edge_vlm-capture")
        self._run = run
        self._refuse = refuse
        self._stats = stats
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, key: str, trigger: Trigger) -> None:
        """Grab for ``trigger`` on a capture thread, after what is already waiting for ``key``."""
        with self._lock:
            slot = self._slots.setdefault(key, _Slot())
            closed = self._closed
            full = trigger.origin == REQUEST and len(slot.requests) >= MAX_REQUESTS
            start = not (closed or full) and self._enqueue(slot, trigger)
        if closed:
            self._refuse(trigger, InputError("the daemon is stopping", code="cancelled"))
        elif full:
            self._refuse(trigger, InputError(f"{MAX_REQUESTS} requests already wait here", code="busy"))
        elif start:
            self._executor.submit(self._serve, key)

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

    def close(self) -> None:
        """No more captures: what still waits for one is cancelled."""
        with self._lock:
            self._closed = True
            waiting = [t for slot in self._slots.values() for t in (*slot.requests, slot.latest) if t is not None]
            self._slots.clear()
        for trigger in waiting:
            self._refuse(trigger, InputError("the daemon is stopping", code="cancelled"))
        self._executor.shutdown(wait=True)
