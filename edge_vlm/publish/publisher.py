"""Publishing with the right delivery for each kind of message, in bounded memory.

Retained states (descriptions, images, diagnostics) are kept here, newest per topic, and sent
again after every reconnect; while they cannot be sent only the newest of each waits, so a long
outage costs no memory. Events (results, errors) wait here while the broker is unreachable or has
``mqtt.max_unacked_messages`` of ours unacknowledged: at most ``mqtt.max_queued_messages`` of them
(beyond that the oldest are dropped and counted in ``dropped``, those of snapshots before those of
triggers and requests, which someone waits for), and go out in order, after the states, once there
is room (``flush``, called by the dispatcher each turn).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Protocol

from edge_vlm.core.topics import Outbound

logger = logging.getLogger(__name__)


class Connection(Protocol):
    """What the publisher needs of edge_vlm.mqtt.connection.MqttConnection."""

    @property
    def connected(self) -> bool: ...

    @property
    def has_room(self) -> bool: ...

    def publish(self, message: Outbound) -> None: ...


class Publisher:
    def __init__(self, connection: Connection, max_waiting_events: int) -> None:
        self._connection = connection
        self._states: dict[str, Outbound] = {}
        self._unsent: dict[str, Outbound] = {}  # states not sent since they changed, oldest change first
        self._waiting: deque[Outbound] = deque()
        self._max_waiting = max_waiting_events
        self._lock = threading.Lock()
        self.dropped = 0
        self._drop_reported = False

    def send(self, message: Outbound) -> None:
        with self._lock:
            if message.retain:
                self._states[message.topic] = message
                self._unsent.pop(message.topic, None)
            # Sent under the lock so that a republish cannot overtake it. An event made while events
            # or states wait goes behind them: sent now, a job's outcome would overtake its "pending".
            if self._can_send() and (message.retain or not (self._waiting or self._unsent)):
                self._connection.publish(message)
            elif message.retain:
                self._unsent[message.topic] = message
            else:
                self._wait(message)

    def send_all(self, messages: list[Outbound]) -> None:
        for message in messages:
            self.send(message)

    def _can_send(self) -> bool:
        return self._connection.connected and self._connection.has_room

    def _wait(self, message: Outbound) -> None:
        self._waiting.append(message)
        if len(self._waiting) > self._max_waiting:
            # The oldest that nobody asked for (a snapshot's pending or superseded), else the oldest.
            dropped = next((m for m in self._waiting if not m.asked), self._waiting[0])
            self._waiting.remove(dropped)
            self.dropped += 1
            if not self._drop_reported:  # once until the backlog clears; the count is in the diagnostics
                self._drop_reported = True
                logger.warning("%d events wait for the broker (mqtt.max_queued_messages): dropping the oldest, "
                               "first to %s; counted as outbox_dropped", self._max_waiting, dropped.topic)

    def flush(self) -> None:
        """Send what waited, states first, while the broker has room for it."""
        with self._lock:
            while self._unsent and self._can_send():
                topic = next(iter(self._unsent))
                self._connection.publish(self._unsent.pop(topic))
            while self._waiting and not self._unsent and self._can_send():
                self._connection.publish(self._waiting.popleft())
            if not self._waiting:
                self._drop_reported = False

    @property
    def backlog(self) -> int:
        with self._lock:
            return len(self._unsent) + len(self._waiting)

    def republish(self) -> None:
        """After a (re)connect: every retained state, then the events that waited."""
        with self._lock:
            self._unsent = dict(self._states)
        self.flush()
