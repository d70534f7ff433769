"""The retained image of a topic, read once for a request that names it (``image_topic``)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from edge_vlm.core.errors import ErrorCode, ImageError, TriggerError
from edge_vlm.mqtt.inbox import Received

IMAGE_TOPIC_WAIT_S = 5.0


class RetainedImages:
    """Reads the retained message of a topic once: subscribe, take it, unsubscribe."""

    def __init__(self, subscribe: Callable[[str], None], unsubscribe: Callable[[str], None]) -> None:
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self._waiting: dict[str, list[tuple[threading.Event, list[bytes]]]] = {}
        self._lock = threading.Lock()

    def fetch(self, topic: str) -> bytes:
        """The retained payload of ``topic``; blocks (a capture thread) up to a few seconds."""
        arrived, box = threading.Event(), list[bytes]()
        with self._lock:
            first = topic not in self._waiting
            self._waiting.setdefault(topic, []).append((arrived, box))
        if first:
            self._subscribe(topic)
        try:
            if not arrived.wait(IMAGE_TOPIC_WAIT_S):
                raise TriggerError(f"no retained image on {topic!r} within {IMAGE_TOPIC_WAIT_S:g} s",
                                   code=ErrorCode.NO_FRAME)
            if not box[0]:
                raise ImageError(f"the image on {topic!r} is over limits.max_payload_bytes",
                                 code=ErrorCode.PAYLOAD_TOO_LARGE)
            return box[0]
        finally:
            with self._lock:
                waiters = self._waiting.get(topic, [])
                waiters[:] = [w for w in waiters if w[0] is not arrived]
                last = not waiters
                if last:
                    self._waiting.pop(topic, None)
            if last:
                self._unsubscribe(topic)

    def offer(self, message: Received) -> None:
        """Hand ``message`` to the requests waiting for its topic, if any (dispatcher thread). It is
        not taken away: the topic may also be one the daemon listens on."""
        if message.size == 0:  # no retained message (or its removal)
            return
        with self._lock:
            for arrived, box in self._waiting.get(message.topic, []):
                box.append(message.payload)  # empty when over limits.max_payload_bytes
                arrived.set()
