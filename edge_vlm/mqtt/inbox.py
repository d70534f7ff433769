"""What paho's network thread hands the dispatcher: received messages and connects, in a
bounded queue (the paho callbacks in edge_vlm.mqtt.connection only put events here).

Under a flood this is where load is shed, so that paho's thread keeps reading the socket as fast
as the broker sends: a broker whose queue for a slow client fills up drops that client's QoS 1
messages (triggers, requests) and even its acknowledgements. Shedding here is cheap and counted;
putting never logs (a line per dropped message was 42,000 lines a minute and slowed the reader
down): the dispatcher logs a summary at most once a minute (``summary``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

SUMMARY_EVERY_S = 60.0


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
TopicTest = Callable[[str], bool]


def _never(topic: str) -> bool:
    return False


class Inbox:
    """Events from paho's thread to the dispatcher, bounded in messages and in bytes.

    - Latest wins on ``latest_wins`` topics (snapshots) once a quarter of ``max_messages`` wait: a
      new one replaces the one still waiting on the same topic; only the newest frame of a camera
      is worth describing.
    - Past either bound the oldest received message is dropped: under a flood the newest matter
      most. Messages on ``precious`` topics (requests, triggers: someone waits for each answer) go
      only when nothing else is left to drop. Connection events are never dropped.
    """

    def __init__(self, max_messages: int, max_bytes: int, precious: TopicTest = _never,
                 latest_wins: TopicTest = _never) -> None:
        self._precious = precious
        self._latest_wins = latest_wins
        self._events: deque[Event] = deque()
        self._messages = 0
        self._bytes = 0
        self._max_messages = max_messages
        # Snapshots are coalesced only once this many messages wait (the dispatcher fell behind):
        # until then each one is accepted and answered, as a burst of a few is.
        self._pressure = max(1, max_messages // 4)
        self._max_bytes = max_bytes
        self._ready = threading.Condition()
        self.dropped = 0  # full: the oldest dropped
        self.replaced = 0  # latest wins: a waiting snapshot replaced by a newer one of its topic
        self._summarised = (0, 0)  # dropped, replaced at the last summary
        self._summary_at = 0.0

    def put(self, event: Event) -> None:
        with self._ready:
            if isinstance(event, Received):
                if self._messages >= self._pressure and not event.retain and self._latest_wins(event.topic):
                    self._replace_waiting(event.topic)
                self._messages += 1
                self._bytes += len(event.payload)
            self._events.append(event)
            while self._messages > self._max_messages or self._bytes > self._max_bytes:
                self._drop_oldest_message()
            self._ready.notify()

    def _replace_waiting(self, topic: str) -> None:
        replaced = [e for e in self._events if isinstance(e, Received) and e.topic == topic and not e.retain]
        for waiting in replaced:
            self._events.remove(waiting)
            self._count_out(waiting)
        self.replaced += len(replaced)

    def _drop_oldest_message(self) -> None:
        oldest: tuple[int, Received] | None = None
        for index, event in enumerate(self._events):
            if isinstance(event, Received):
                if not self._precious(event.topic):
                    oldest = (index, event)
                    break
                oldest = oldest or (index, event)
        assert oldest is not None  # only called while messages are over the bound
        del self._events[oldest[0]]
        self._count_out(oldest[1])
        self.dropped += 1

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

    def summary(self, now: float | None = None) -> None:
        """Log what was shed since the last summary, at most once every SUMMARY_EVERY_S (the
        first time at once). Called by the dispatcher, never by paho's thread."""
        now = time.monotonic() if now is None else now
        if (self.dropped, self.replaced) == self._summarised or now - self._summary_at < SUMMARY_EVERY_S:
            return
        dropped, replaced = self.dropped - self._summarised[0], self.replaced - self._summarised[1]
        self._summarised, self._summary_at = (self.dropped, self.replaced), now
        logger.warning("Incoming messages faster than they are handled: %d snapshot(s) replaced by a newer one "
                       "of the same topic, %d message(s) dropped from a full inbox (limits.inbound_queue = %d, "
                       "inbound_queue_mb = %d); counted in the diagnostics", replaced, dropped,
                       self._max_messages, self._max_bytes // 1_000_000)
