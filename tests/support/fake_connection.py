"""A broker connection without a broker, for unit tests of the publishing side (edge_vlm.publish).

``FakeConnection`` has what the publishing side uses of edge_vlm.mqtt.connection.MqttConnection,
with the same signatures: ``publish``, ``subscribe``, ``unsubscribe``, ``connected`` and ``has_room``.
It records what is published, in order; the test sets ``connected`` and ``has_room`` (or ``room``: how
many more messages the broker takes before it has none, as with ``mqtt.max_unacked_messages``).

``Publishing`` names those members. mypy checks that both classes have them (the assignments at
the end of this module); tests/test_publisher.py checks that the parameter names match too.
Publisher takes any connection with its Protocol's members (edge_vlm.publish.publisher.Connection).
"""

from __future__ import annotations

from typing import Protocol

from edge_vlm.core.topics import Outbound
from edge_vlm.mqtt.connection import MqttConnection


class Publishing(Protocol):
    """What the publishing side (Publisher, RetainedImages) uses of the connection."""

    def publish(self, message: Outbound) -> None: ...

    def subscribe(self, topic: str) -> None: ...

    def unsubscribe(self, topic: str) -> None: ...

    @property
    def connected(self) -> bool: ...

    @property
    def has_room(self) -> bool: ...


class FakeConnection:
    # The fake's own methods, for the test: MqttConnection has none of them.
    HELPERS = frozenset({"on", "topics"})

    def __init__(self, *, connected: bool = True) -> None:
        self.connected = connected
        self.room: int | None = None  # messages the broker takes before it has no room; None: no limit
        self.published: list[Outbound] = []
        self.subscriptions: list[str] = []  # subscribed now, in order

    def publish(self, message: Outbound) -> None:
        self.published.append(message)
        if self.room is not None:
            self.room = max(self.room - 1, 0)

    def subscribe(self, topic: str) -> None:
        self.subscriptions.append(topic)

    def unsubscribe(self, topic: str) -> None:
        self.subscriptions.remove(topic)

    @property
    def has_room(self) -> bool:
        return self.room is None or self.room > 0

    @has_room.setter
    def has_room(self, value: bool) -> None:
        self.room = None if value else 0

    # For the test

    def topics(self) -> list[str]:
        """The topic of each message published, in order."""
        return [message.topic for message in self.published]

    def on(self, topic: str) -> list[bytes]:
        """The payloads published to ``topic``, in order."""
        return [message.payload for message in self.published if message.topic == topic]


# Both connections have what Publishing names (mypy checks these assignments; nothing runs them).
_fake: type[Publishing] = FakeConnection
_real: type[Publishing] = MqttConnection
