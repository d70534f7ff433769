"""The broker connection: paho-mqtt 2.x set up the way a long-lived service needs it.

- The last will (``offline``, retained) is set before connecting; ``online`` follows each connect.
- paho reconnects by itself with a doubling delay capped at ``reconnect_max_delay``.
- Each connect subscribes again (clean sessions: the broker forgot us) and then says ``online``.
- paho's callbacks run on its network thread and must never block it: apart from queueing those
  packets, each one only puts an event into the ``Inbox``; the daemon's dispatcher thread does the
  work (announcing discovery, decoding images...).
- Everything is published with QoS 1. While the broker is unreachable paho keeps QoS 1 messages
  (up to ``max_queued_messages``) and sends them after the reconnect.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge_vlm.config.models import AppConfig
from edge_vlm.mqtt.topics import Outbound, Topics

logger = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    received_at: float  # time.monotonic()
    wall_time: float  # time.time()


@dataclass(frozen=True)
class Connected:
    pass


Event = Received | Connected


class Inbox:
    """Events from paho's thread to the dispatcher, bounded for messages.

    When ``max_messages`` received messages are waiting, the oldest one is dropped (and counted):
    under a flood the newest snapshots matter most. Connection events are never dropped.
    """

    def __init__(self, max_messages: int) -> None:
        self._events: deque[Event] = deque()
        self._messages = 0
        self._max = max_messages
        self._ready = threading.Condition()
        self.dropped = 0

    def put(self, event: Event) -> None:
        with self._ready:
            if isinstance(event, Received):
                if self._messages >= self._max:
                    self._drop_oldest_message()
                self._messages += 1
            self._events.append(event)
            self._ready.notify()

    def _drop_oldest_message(self) -> None:
        for index, event in enumerate(self._events):
            if isinstance(event, Received):
                del self._events[index]
                self._messages -= 1
                self.dropped += 1
                logger.warning("Inbox full (%d messages): dropped the oldest, from %s", self._max, event.topic)
                return

    def get(self, timeout: float) -> Event | None:
        with self._ready:
            if not self._ready.wait_for(lambda: self._events, timeout):
                return None
            event = self._events.popleft()
            if isinstance(event, Received):
                self._messages -= 1
            return event


def _reason_text(reason: Any) -> str:
    return str(getattr(reason, "getName", lambda: reason)())


class MqttConnection:
    def __init__(self, config: AppConfig, password: str | None, inbox: Inbox, subscriptions: list[str]) -> None:
        self._config = config.mqtt
        self._subscriptions = subscriptions
        self._topics = Topics.from_config(config)
        self._inbox = inbox
        self._connected = threading.Event()
        self._stopping = False
        self._last_problem: str | None = None
        self.dropped = 0  # outbound messages refused because paho's queue was full
        v5 = self._config.protocol == "5"
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else True,
        )
        self._client.enable_logger(logging.getLogger("edge_vlm.mqtt.paho"))
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
        self._client.max_queued_messages_set(self._config.max_queued_messages)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    @property
    def broker(self) -> str:
        return f"{self._config.host}:{self._config.port}"

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

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
            deadline = time.monotonic() + timeout
            while not info.is_published() and self.connected and time.monotonic() < deadline:
                time.sleep(0.01)
        self._client.disconnect()
        self._client.loop_stop()
        # Break the client <-> callbacks cycle: paho closes its wake-up socket pair in __del__,
        # which then runs on release instead of in a garbage-collection pass.
        self._client.on_connect = self._client.on_connect_fail = None
        self._client.on_disconnect = self._client.on_message = None

    def publish(self, message: Outbound) -> bool:
        """Hand ``message`` to paho (QoS 1); False if it was refused because the queue is full."""
        info = self._client.publish(message.topic, message.payload, qos=1, retain=message.retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            self.dropped += 1
            logger.warning(
                "Outgoing queue full (mqtt.max_queued_messages = %d): dropped a message to %s",
                self._config.max_queued_messages, message.topic,
            )
            return False
        return True

    # paho callbacks: network thread, must not block.

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        if reason.is_failure:
            self._report_problem(f"broker {self.broker} refused the connection: {_reason_text(reason)}")
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
        self._inbox.put(Received(message.topic, bytes(message.payload), bool(message.retain),
                                 time.monotonic(), time.time()))

    def _report_problem(self, problem: str) -> None:
        # Once per distinct problem, not on every retry: a broker down for a night must not
        # fill the journal.
        if problem != self._last_problem:
            logger.error("%s; retrying every %d s at most", problem, self._config.reconnect_max_delay)
            self._last_problem = problem
