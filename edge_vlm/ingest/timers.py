"""Triggers from inside: each camera's ``interval_s``, on one timer thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from edge_vlm.config.models import AppConfig
from edge_vlm.core.contracts import Origin
from edge_vlm.ingest.trigger import Trigger


class IntervalTimer:
    def __init__(self, config: AppConfig, submit: Callable[[Trigger], None]) -> None:
        self._submit = submit
        self._intervals = {c.id: c.interval_s for c in config.cameras if c.interval_s and c.enabled}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="edge_vlm-interval", daemon=True)

    def start(self) -> None:
        if self._intervals:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _tick(self) -> None:
        intervals = self._intervals
        due = {camera: time.monotonic() + every for camera, every in intervals.items()}
        while not self._stop.wait(max(0.0, min(due.values()) - time.monotonic())):
            now = time.monotonic()
            for camera, when in due.items():
                if when <= now:
                    due[camera] = now + intervals[camera]
                    self._submit(Trigger(camera, Origin.INTERVAL))
