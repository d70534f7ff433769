"""A test's own MQTT client: records what arrives and waits for it with events, never sleeps."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TIMEOUT_S = 60.0  # a bound on waiting for an event; a busy CI machine may take tens of seconds


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    index: int  # position in the order of arrival
    correlation: bytes | None = None  # MQTT 5 correlation data (a protocol "5" recorder only)
    response_topic: str | None = None  # MQTT 5 response topic (a protocol "5" recorder only)

    def json(self) -> Any:
        return json.loads(self.payload)


class Recorder:
    """Subscribes to ``filters`` and keeps every message, in order of arrival.

    ``protocol``: "3.1.1" (default) or "5"; an MQTT 5 recorder also records the correlation data and
    response topic of what arrives, and can publish with them. ``auth``: user name and password, for a
    broker that wants them.
    """

    def __init__(self, port: int, filters: list[str], *, client_id: str = "", persistent: bool = False,
                 protocol: str = "3.1.1", auth: tuple[str, str] | None = None) -> None:
        if protocol not in ("3.1.1", "5"):
            raise ValueError(f"protocol {protocol!r}: use '3.1.1' or '5'")
        if persistent and protocol == "5":
            raise ValueError("a persistent session is only set up for MQTT 3.1.1 here")
        self.messages: list[Message] = []
        self._changed = threading.Condition()
        self._filters = filters
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.v5 = protocol == "5"
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311,
                                  clean_session=None if self.v5 else not persistent)
        self.client.reconnect_delay_set(1, 1)
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        if self.v5:
            self.client.connect("127.0.0.1", port, clean_start=True)
        else:
            self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(TIMEOUT_S), "the test client was not subscribed in time"

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected.set()
        if not flags.session_present:
            client.subscribe([(f, 1) for f in self._filters])

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        props = getattr(message, "properties", None)
        correlation = getattr(props, "CorrelationData", None)
        response_topic = getattr(props, "ResponseTopic", None)
        with self._changed:
            self.messages.append(
                Message(message.topic, bytes(message.payload), bool(message.retain), len(self.messages),
                        None if correlation is None else bytes(correlation), response_topic),
            )
            self._changed.notify_all()

    def on(self, topic: str) -> list[Message]:
        with self._changed:
            return [m for m in self.messages if m.topic == topic]

    def since(self, index: int) -> Callable[[Message], bool]:
        """A ``where`` for messages that arrived after the first ``index`` ones."""
        return lambda m: m.index >= index

    def wait_for(
        self, topic: str, where: Callable[[Message], bool] = lambda m: True, timeout: float = TIMEOUT_S,
    ) -> Message:
        """The first message on ``topic`` for which ``where`` holds, waiting up to ``timeout``."""

        def found() -> Message | None:
            return next((m for m in self.messages if m.topic == topic and where(m)), None)

        with self._changed:
            if not self._changed.wait_for(lambda: found() is not None, timeout):
                seen = sorted({m.topic for m in self.messages})
                raise AssertionError(f"no matching message on {topic} within {timeout} s; topics seen: {seen}")
            message = found()
            assert message is not None
            return message

    def wait_where(self, where: Callable[[Message], bool], timeout: float = TIMEOUT_S) -> Message:
        """The first message, on any topic, for which ``where`` holds."""
        with self._changed:
            if not self._changed.wait_for(lambda: any(where(m) for m in self.messages), timeout):
                raise AssertionError(f"no matching message within {timeout} s")
            return next(m for m in self.messages if where(m))

    def wait_json(self, topic: str, **expected: Any) -> Any:
        """The first JSON message on ``topic`` whose keys include ``expected``."""
        message = self.wait_for(
            topic, lambda m: all(m.json().get(k) == v for k, v in expected.items()),
        )
        return message.json()

    def count(self, topic: str, n: int, timeout: float = TIMEOUT_S) -> list[Message]:
        """Wait until ``n`` messages arrived on ``topic``; return them."""
        self.wait_for(topic, lambda m: len(self.on(topic)) >= n, timeout)
        return self.on(topic)

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False, response_topic: str | None = None,
                correlation: bytes | None = None) -> None:
        """Publish (QoS 1) and wait until the broker has it; ``response_topic`` and ``correlation``
        are MQTT 5 properties (a protocol "5" recorder only)."""
        properties = None
        if response_topic is not None or correlation is not None:
            if not self.v5:
                raise ValueError("response_topic and correlation are MQTT 5 properties: use protocol='5'")
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho leaves it untyped
            if response_topic is not None:
                properties.ResponseTopic = response_topic
            if correlation is not None:
                properties.CorrelationData = correlation
        self.client.publish(topic, payload, qos=1, retain=retain, properties=properties).wait_for_publish(TIMEOUT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        # Break the client <-> callbacks cycle so that paho's __del__, which closes its wake-up
        # socket pair, runs on release rather than racing the sockets' own finalizers in a GC pass.
        self.client.on_connect = self.client.on_subscribe = self.client.on_message = None
