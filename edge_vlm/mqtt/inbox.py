"""What paho's network thread hands the dispatcher: received messages and connects, in a
bounded queue (the paho callbacks in edge_vlm.mqtt.connection only put events here)."""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes = field(repr=False)  # never in log lines: it may be megabytes, or private
    retain: bool
    received_at: float  # time.monotonic()
    wall_time: float  # time.time()
    size: int  # bytes received; the payload is dropped (empty) when over limits.max_payload_bytes
    response_topic: str | None = None  # MQTT 5: where the sender wants the answer
    correlation: bytes | None = field(default=None, repr=False)  # MQTT 5: to echo with the answer


@dataclass(frozen=True)
class Connected:
    pass


Event = Received | Connected


class Inbox:
    """Events from paho's thread to the dispatcher, bounded in messages and in bytes.

    Past either bound the oldest received message is dropped (and counted): under a flood the
    newest snapshots matter most. Messages on ``precious`` topics (requests: someone waits for
    each answer) go only when nothing else is left to drop. Connection events are never dropped.
    """

    def __init__(self, max_messages: int, max_bytes: int, precious: frozenset[str] = frozenset()) -> None:
        self._precious = precious
        self._events: deque[Event] = deque()
        self._messages = 0
        self._bytes = 0
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._ready = threading.Condition()
        self.dropped = 0

    def put(self, event: Event) -> None:
        with self._ready:
            self._events.append(event)
            if isinstance(event, Received):
                self._messages += 1
                self._bytes += len(event.payload)
                while self._messages > self._max_messages or self._bytes > self._max_bytes:
                    self._drop_oldest_message()
            self._ready.notify()

    def _drop_oldest_message(self) -> None:
        messages = [(i, e) for i, e in enumerate(self._events) if isinstance(e, Received)]
        index, oldest = next(((i, e) for i, e in messages if e.topic not in self._precious), messages[0])
        del self._events[index]
        self._count_out(oldest)
        self.dropped += 1
        logger.warning("Inbox full (%d messages, %d MB at most): dropped the oldest, from %s",
                       self._max_messages, self._max_bytes // 1_000_000, oldest.topic)

    def _count_out(self, message: Received) -> None:
        self._messages -= 1
        self._bytes -= len(message.payload)

    @property
    def waiting(self) -> int:
        """Received messages waiting to be handled."""
        return self._messages

    def get(self, timeout: float) -> Event | None:
        with self._ready:
            if not self._ready.wait_for(lambda: self._events, timeout):
                return None
            event = self._events.popleft()
            if isinstance(event, Received):
                self._count_out(event)
            return event
