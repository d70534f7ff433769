"""The broker connection: paho-mqtt 2.x set up the way a long-lived service needs it.

- The last will (``offline``, retained) is set before connecting; ``online`` follows each connect.
- paho reconnects by itself with a doubling delay capped at ``reconnect_max_delay``.
- Each connect subscribes again (clean sessions: the broker forgot us) and then says ``online``.
- paho's callbacks run on its network thread and must never block it: apart from queueing those
  packets, each one only puts an event into the ``Inbox``; the daemon's dispatcher thread does the
  work (announcing discovery, decoding images...).
- Everything is published with QoS 1. What waits while the broker is unreachable is bounded by
  the Publisher, not here.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_vlm.config.models import AppConfig
from edge_vlm.mqtt.topics import Outbound, Topics

logger = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"


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
    newest snapshots matter most. Connection events are never dropped.
    """

    def __init__(self, max_messages: int, max_bytes: int) -> None:
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
        index, oldest = next((i, e) for i, e in enumerate(self._events) if isinstance(e, Received))
        del self._events[index]
        self._count_out(oldest)
        self.dropped += 1
        logger.warning("Inbox full (%d messages, %d MB at most): dropped the oldest, from %s",
                       self._max_messages, self._max_bytes // 1_000_000, oldest.topic)

    def _count_out(self, message: Received) -> None:
        self._messages -= 1
        self._bytes -= len(message.payload)

    def get(self, timeout: float) -> Event | None:
        with self._ready:
            if not self._ready.wait_for(lambda: self._events, timeout):
                return None
            event = self._events.popleft()
            if isinstance(event, Received):
                self._count_out(event)
            return event


def _reason_text(reason: Any) -> str:
    return str(getattr(reason, "getName", lambda: reason)())


class MqttConnection:
    def __init__(self, config: AppConfig, password: str | None, inbox: Inbox) -> None:
        self._config = config.mqtt
        self._subscriptions: list[str] = []
        self._replay_only: list[str] = []
        self._max_payload = config.limits.max_payload_bytes
        self._topics = Topics.from_config(config)
        self._inbox = inbox
        self._connected = threading.Event()
        self._stopping = False
        self._last_problem: str | None = None
        v5 = self._config.protocol == "5"
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            # A clean session each time (MQTT 5: clean_start on every connect, below): after an
            # outage we subscribe again rather than receive a backlog of stale snapshots.
            clean_session=None if v5 else True,
        )
        paho_logger = logging.getLogger("edge_vlm.mqtt.paho")
        if paho_logger.isEnabledFor(logging.DEBUG):  # paho's own log is for debugging only
            self._client.enable_logger(paho_logger)
        self._client.will_set(self._topics.status, OFFLINE, qos=1, retain=True)
        if self._config.username is not None:
            self._client.username_pw_set(self._config.username, password)
        tls = self._config.tls
        if tls.enabled:
            self._client.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            self._client.tls_insecure_set(not tls.verify_hostname)
        self._client.reconnect_delay_set(self._config.reconnect_min_delay, self._config.reconnect_max_delay)
        # paho's own queue is unbounded: the Publisher bounds what waits while we are disconnected
        # (paho's bound would also refuse "online" and discovery, which must never be dropped).
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    def subscribe_on_connect(self, filters: list[str], replay_only: list[str]) -> None:
        """What to subscribe to on every connect (before start). ``replay_only``: filters that matter
        only for the retained messages the broker replays on subscribe; their live messages (our own
        publishes echoed back) are dropped in the callback."""
        self._subscriptions = list(dict.fromkeys([*filters, *replay_only]))
        self._replay_only = replay_only

    def subscribe(self, topic: str) -> None:
        """Subscribe now (any thread), e.g. to read a topic's retained message once."""
        self._client.subscribe(topic, qos=1)

    def unsubscribe(self, topic: str) -> None:
        """Undo ``subscribe``; a filter subscribed on every connect stays."""
        if topic not in self._subscriptions:
            self._client.unsubscribe(topic)

    @property
    def broker(self) -> str:
        return f"{self._config.host}:{self._config.port}"

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        logger.info("Connecting to MQTT broker %s (MQTT %s%s)", self.broker, self._config.protocol,
                    ", TLS" if self._config.tls.enabled else "")
        self._client.connect_async(
            self._config.host, self._config.port, keepalive=self._config.keepalive,
            clean_start=True if self._config.protocol == "5" else paho.MQTT_CLEAN_START_FIRST_ONLY,
        )
        self._client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline``, wait for it to leave, disconnect and stop the network thread."""
        self._stopping = True
        if self.connected:
            info = self._client.publish(self._topics.status, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):  # the connection went away meanwhile
                logger.warning("Could not publish offline before disconnecting; the broker's will says it")
        self._client.disconnect()
        self._client.loop_stop()
        # Break the client <-> callbacks cycle: paho closes its wake-up socket pair in __del__,
        # which then runs on release instead of in a garbage-collection pass.
        self._client.on_connect = self._client.on_connect_fail = None
        self._client.on_disconnect = self._client.on_message = None

    def publish(self, message: Outbound) -> None:
        """Hand ``message`` to paho (QoS 1): sent now, or after the reconnect if the link just dropped."""
        properties = None
        if message.correlation is not None and self._config.protocol == "5":
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho leaves it untyped
            properties.CorrelationData = message.correlation
        self._client.publish(message.topic, message.payload, qos=1, retain=message.retain, properties=properties)

    # paho callbacks: network thread, must not block.

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        if reason.is_failure:
            self._report_problem(f"broker {self.broker} refused the connection: {_reason_text(reason)}")
            return
        if self._stopping:
            return
        self._last_problem = None
        logger.info("Connected to MQTT broker %s", self.broker)
        # Subscribing and publishing only queue packets. The broker handles them in this order,
        # so whoever sees "online" can publish to us and be heard.
        self._client.subscribe([(f, 1) for f in self._subscriptions])
        self._client.publish(self._topics.status, ONLINE, qos=1, retain=True)
        self._connected.set()
        self._inbox.put(Connected())

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._report_problem(f"cannot reach MQTT broker {self.broker}")

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       properties: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and not self._stopping:
            logger.warning("Disconnected from MQTT broker %s (%s); reconnecting", self.broker, _reason_text(reason))

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if not message.retain and any(paho.topic_matches_sub(f, message.topic) for f in self._replay_only):
            return
        size = len(message.payload)
        payload = bytes(message.payload) if size <= self._max_payload else b""
        props = getattr(message, "properties", None)
        response = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        self._inbox.put(Received(message.topic, payload, bool(message.retain), time.monotonic(), time.time(), size,
                                 response, None if correlation is None else bytes(correlation)))

    def _report_problem(self, problem: str) -> None:
        # Once per distinct problem, not on every retry: a broker down for a night must not
        # fill the journal.
        if problem != self._last_problem:
            logger.error("%s; retrying every %d s at most", problem, self._config.reconnect_max_delay)
            self._last_problem = problem
