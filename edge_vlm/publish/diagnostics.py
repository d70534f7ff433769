"""The daemon's counters and readings, retained on ``<base>/<node>/diagnostics``, and whether the
model is ready, retained on ``<base>/<node>/model``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from edge_vlm.core.stats import Stats
from edge_vlm.core.topics import Outbound, Topics
from edge_vlm.ingest.motion import MotionDetector
from edge_vlm.mqtt.connection import MqttConnection
from edge_vlm.mqtt.inbox import Inbox
from edge_vlm.publish.board import BoardMonitor
from edge_vlm.publish.publisher import Publisher
from edge_vlm.schedule.scheduler import Scheduler

EVERY_S = 1.0  # at most this often: a flood of bad input must not flood the broker


class Diagnostics:
    def __init__(self, topics: Topics, publisher: Publisher, stats: Stats, *, interval_s: float,
                 due: threading.Event, connection: MqttConnection, inbox: Inbox, scheduler: Scheduler,
                 detectors: Mapping[str, MotionDetector], backend: object) -> None:
        """``interval_s``: published this often even when nothing happens (temperature, memory);
        ``due``: set by whoever changes a counter, so that they go out soon (at most once a second)."""
        self._topics = topics
        self._publisher = publisher
        self._stats = stats
        self._interval_s = interval_s
        self._due = due
        self._connection = connection
        self._inbox = inbox
        self._scheduler = scheduler
        self._detectors = detectors
        self._backend = backend
        self.board = BoardMonitor()  # replaceable: a test reads a fake board
        self._sent = 0.0

    def publish_if_due(self) -> None:
        """The dispatcher's, each turn: when a counter changed (at most once a second), or the interval is up."""
        since = time.monotonic() - self._sent
        if (self._due.is_set() and since >= EVERY_S) or since >= self._interval_s:
            self.publish()

    def model_availability(self, available: bool, reason: str) -> None:
        """The backend's model came or went."""
        self._publisher.send(model_state_message(self._topics, available=available, reason=reason))

    def publish(self) -> dict[str, Any]:
        """Publish the counters and readings now; return them."""
        self._due.clear()
        self._sent = time.monotonic()
        values = self._stats.values(**self._values())
        self._publisher.send(diagnostics_message(self._topics, values))
        return values

    def _values(self) -> dict[str, Any]:
        worker_pid = getattr(self._backend, "worker_pid", None)  # the inference worker's, if any
        return {
            "queue_depth": self._scheduler.depth, "inbox_waiting": self._inbox.waiting,
            "inbox_dropped": self._inbox.dropped, "inbox_replaced": self._inbox.replaced,
            "outbox_waiting": self._publisher.backlog, "outbox_dropped": self._publisher.dropped,
            "broker_ack_timeouts": self._connection.ack_timeouts,
            "motion_cpu_s": {camera: round(d.cpu_s, 3) for camera, d in self._detectors.items()},
            **self.board.values(worker_pid if isinstance(worker_pid, int) else None),
        }


def diagnostics_message(topics: Topics, values: dict[str, Any]) -> Outbound:
    return Outbound(topics.diagnostics, json.dumps(values, separators=(",", ":")).encode(), retain=True)


def model_state_message(topics: Topics, *, available: bool, reason: str) -> Outbound:
    """Whether the backend's model can describe frames now (retained)."""
    payload = {"state": "ready" if available else "unavailable", "reason": reason,
               "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return Outbound(topics.model, json.dumps(payload, separators=(",", ":")).encode(), retain=True)
