"""Publishing with the right delivery for each kind of message.

Retained states (descriptions, images, diagnostics) are kept here, newest per topic, and sent
again after every reconnect; while the broker is down only the newest of each is kept, so a
long outage costs no memory. Events (results, errors) produced while the broker is down wait
here, at most ``mqtt.max_queued_messages`` of them (beyond that the oldest are dropped and
counted), and go out after the reconnect, after the states.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from edge_vlm.mqtt.connection import MqttConnection
from edge_vlm.mqtt.topics import Outbound

logger = logging.getLogger(__name__)


class Publisher:
    def __init__(self, connection: MqttConnection, max_waiting_events: int) -> None:
        self._connection = connection
        self._states: dict[str, Outbound] = {}
        self._waiting: deque[Outbound] = deque()
        self._max_waiting = max_waiting_events
        self._lock = threading.Lock()
        self.dropped = 0

    def send(self, message: Outbound) -> None:
        with self._lock:
            if message.retain:
                self._states[message.topic] = message
            # Sent under the lock so that a reconnect's republish cannot overtake it. An event made
            # between the reconnect and that republish waits behind the events of the outage: sent
            # now, a job's outcome would overtake its "pending".
            if self._connection.connected and (message.retain or not self._waiting):
                self._connection.publish(message)
            elif not message.retain:
                self._wait(message)

    def send_all(self, messages: list[Outbound]) -> None:
        for message in messages:
            self.send(message)

    def _wait(self, message: Outbound) -> None:
        self._waiting.append(message)
        if len(self._waiting) > self._max_waiting:
            dropped = self._waiting.popleft()
            self.dropped += 1
            logger.warning("%d events wait for the broker (mqtt.max_queued_messages): dropped the oldest, to %s",
                           self._max_waiting, dropped.topic)

    def republish(self) -> None:
        """After a (re)connect: every retained state, then the events that waited."""
        with self._lock:
            for message in self._states.values():
                self._connection.publish(message)
            while self._waiting:
                self._connection.publish(self._waiting.popleft())
