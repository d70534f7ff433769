"""Publishing with the right delivery for each kind of message.

Retained states (descriptions, images, diagnostics) are kept here, newest per topic, and sent
again after every reconnect; while the broker is down only the newest of each is kept, so a
long outage costs no memory. Events (results, errors) go to paho's queue, which holds them
while the broker is down (up to ``mqtt.max_queued_messages``) and delivers them on reconnect.
"""

from __future__ import annotations

import threading

from edge_vlm.mqtt.connection import MqttConnection
from edge_vlm.mqtt.topics import Outbound


class Publisher:
    def __init__(self, connection: MqttConnection) -> None:
        self._connection = connection
        self._states: dict[str, Outbound] = {}
        self._lock = threading.Lock()

    def send(self, message: Outbound) -> None:
        if not message.retain:
            self._connection.publish(message)
            return
        with self._lock:
            self._states[message.topic] = message
            # Sent under the lock so that a republish cannot overtake it with an older state.
            if self._connection.connected:
                self._connection.publish(message)

    def send_all(self, messages: list[Outbound]) -> None:
        for message in messages:
            self.send(message)

    def republish_states(self) -> None:
        with self._lock:
            for message in self._states.values():
                self._connection.publish(message)
