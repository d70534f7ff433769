"""Our QoS 1 messages that the broker has not acknowledged yet: how many, how many bytes, since when.

paho calls ``on_publish`` from its network thread holding its own lock, sometimes before the
thread that published has got its message id back: an acknowledgement that overtakes the
bookkeeping of its publish waits in ``_early`` until that publish is counted (and never counts).
Nothing here calls into paho, so no lock is held across paho's.
"""

from __future__ import annotations

import threading
import time


class Unacknowledged:
    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._sent: dict[int, tuple[float, int]] = {}  # mid -> (time.monotonic() handed to paho, bytes)
        self._bytes = 0
        self._early: set[int] = set()
        self._lock = threading.Lock()

    def sent(self, mid: int, size: int) -> None:
        with self._lock:
            if mid in self._early:
                self._early.discard(mid)
            else:
                self._sent[mid] = (time.monotonic(), size)
                self._bytes += size

    def acknowledged(self, mid: int) -> None:
        with self._lock:
            entry = self._sent.pop(mid, None)
            if entry is None:
                self._early.add(mid)
            else:
                self._bytes -= entry[1]

    @property
    def has_room(self) -> bool:
        """Fewer than max_messages, and max_bytes, wait for their acknowledgement."""
        with self._lock:
            return len(self._sent) < self._max_messages and self._bytes < self._max_bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._sent)

    def oldest(self) -> float | None:
        """When the oldest one waiting was handed to paho (time.monotonic()), None if none waits."""
        with self._lock:
            return min((at for at, _ in self._sent.values()), default=None)
