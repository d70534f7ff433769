"""The broker connection: paho-mqtt 2.x set up the way a long-lived service needs it.

- The last will (``offline``, retained) is set before connecting (``client``); ``online`` follows each connect.
- paho reconnects by itself with a doubling delay capped at ``reconnect_max_delay``. A failed
  attempt is logged once per distinct cause, saying what to change (``attempts``, connect_problems).
- ACL refusals (a SUBACK failure; an MQTT 5 PUBACK failure) are logged once per topic (denials).
- Each connect subscribes again (clean sessions: the broker forgot us) and then says ``online``.
- paho's callbacks run on its network thread and must never block it: apart from queueing those
  packets, each one only puts an event into the ``Inbox``; the daemon's dispatcher thread does the
  work (announcing discovery, decoding images...).
- Everything is published with QoS 1. What waits while the broker is unreachable, or while it has
  not acknowledged ``max_unacked_messages`` messages, is bounded by the Publisher, not here.
- Acknowledgements that do not come are noticed (``check_acknowledgements``, from the dispatcher):
  mosquitto drops even PUBACKs for a client whose queue is full, and the keep-alive still works, so
  without this nothing would ever be delivered again while the daemon logs "described". After
  ``ack_timeout_s`` the connection is dropped and paho reconnects (and sends again what was not
  acknowledged); if even that does not help, ``stuck`` stops the systemd watchdog's keep-alives.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_vlm.config.models import AppConfig
from edge_vlm.core.topics import Outbound
from edge_vlm.mqtt.acks import Unacknowledged
from edge_vlm.mqtt.attempts import ConnectAttempts
from edge_vlm.mqtt.client import OFFLINE, ONLINE, new_client
from edge_vlm.mqtt.connect_problems import peer_address, reason_text
from edge_vlm.mqtt.denials import Denials
from edge_vlm.mqtt.inbox import Connected, Inbox, Received

logger = logging.getLogger(__name__)
paho_logger = logging.getLogger("edge_vlm.mqtt.paho")  # paho's own log, at DEBUG: for debugging only

# Bytes handed to paho and not acknowledged yet, at most (and mqtt.max_unacked_messages messages).
MAX_UNACKED_BYTES = 16_000_000
# Past ack_timeout_s the connection is dropped once nothing has come in for QUIET_S (the broker's
# queue for us is drained: a clean reconnect loses nothing it held, a trigger sent right after a
# flood among it), or after FORCE_AFTER_TIMEOUTS ack timeouts whatever comes in.
QUIET_S = 1.0
FORCE_AFTER_TIMEOUTS = 4
# Unacknowledged this many ack timeouts although the connection was dropped: the publishing path is stuck.
STUCK_AFTER_TIMEOUTS = 6


class MqttConnection:
    def __init__(self, config: AppConfig, password: str | None, inbox: Inbox, *, status_topic: str) -> None:
        """``status_topic``: ``online`` once connected, ``offline`` as the last will and at stop."""
        self._config = config.mqtt
        self._subscriptions: list[str] = []
        self._replay_only: list[str] = []
        self._max_payload = config.limits.max_payload_bytes
        self._status_topic = status_topic
        self._inbox = inbox
        self._connected = threading.Event()
        self._stopping = False
        self._connected_at = 0.0  # time.monotonic() of the last CONNACK
        self._denials = Denials(self._config.username)
        self._unacked = Unacknowledged(self._config.max_unacked_messages, MAX_UNACKED_BYTES)
        self._ack_timeout_reported = False
        self.ack_timeouts = 0  # connections dropped because the broker stopped acknowledging
        self._dropped_for_acks_at = -1.0  # _connected_at of the connection last dropped for that
        self._stuck_reported = False
        self._last_received = 0.0  # time.monotonic() of the last message received
        self._v5 = self._config.protocol == "5"
        self._client = new_client(self._config, config.client_id, password, self._status_topic)
        self._attempts = ConnectAttempts(self._client, self._config, config.client_id, self.broker,
                                         lambda: self._stopping)
        self._client.on_pre_connect = self._on_pre_connect
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_publish = self._on_publish
        self._client.on_log = self._on_log

    def subscribe_on_connect(self, filters: list[str], replay_only: list[str]) -> None:
        """What to subscribe to on every connect (before start). ``replay_only``: filters that matter
        only for the retained messages the broker replays on subscribe; their live messages (our own
        publishes echoed back) are dropped in the callback."""
        self._subscriptions = list(dict.fromkeys([*filters, *replay_only]))
        self._replay_only = replay_only

    def subscribe(self, topic: str) -> None:
        """Subscribe now (any thread), e.g. to read a topic's retained message once."""
        self._subscribe([topic])

    def _subscribe(self, filters: list[str]) -> None:
        result, mid = self._client.subscribe([(f, 1) for f in filters])
        if result == paho.MQTT_ERR_SUCCESS and mid is not None:
            self._denials.sent("subscribe", mid, filters)

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

    @property
    def problem(self) -> str | None:
        """Why the last connection attempt failed, in words (None while connected): for a status line."""
        return None if self.connected else self._attempts.last_problem

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
            info = self._publish(self._status_topic, OFFLINE, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):  # the connection went away meanwhile
                logger.warning("Could not publish offline before disconnecting; the broker's will says it")
        self._client.disconnect()
        self._client.loop_stop()
        # Break the client <-> callbacks cycle: paho closes its wake-up socket pair in __del__,
        # which then runs on release instead of in a garbage-collection pass.
        self._client.on_connect = self._client.on_connect_fail = self._client.on_pre_connect = None
        self._client.on_disconnect = self._client.on_message = None
        self._client.on_subscribe = self._client.on_publish = self._client.on_log = None

    def publish(self, message: Outbound) -> None:
        """Hand ``message`` to paho (QoS 1): sent now, or after the reconnect if the link just dropped."""
        properties = None
        if message.correlation is not None and self._config.protocol == "5":
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho leaves it untyped
            properties.CorrelationData = message.correlation
        self._publish(message.topic, message.payload, retain=message.retain, properties=properties)

    def _publish(self, topic: str, payload: bytes, *, retain: bool,
                 properties: Properties | None = None) -> paho.MQTTMessageInfo:
        info = self._client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        if self._v5:  # MQTT 3.1.1 cannot tell a refused publish: nothing to match
            self._denials.sent("publish", info.mid, [topic])
        self._unacked.sent(info.mid, len(payload))
        return info

    # Acknowledgements

    @property
    def has_room(self) -> bool:
        """Fewer than max_unacked_messages (and MAX_UNACKED_BYTES) wait for the broker's acknowledgement."""
        return self._unacked.has_room

    def _waiting_for_ack_s(self, now: float) -> float:
        """How long the oldest unacknowledged message has waited while connected (0: none waits)."""
        oldest = self._unacked.oldest()
        if oldest is None or not self.connected:
            return 0.0
        return now - max(oldest, self._connected_at)

    def check_acknowledgements(self, now: float | None = None) -> None:
        """Drop the connection (paho reconnects) if the broker has acknowledged nothing for
        ack_timeout_s; called by the dispatcher, not by paho's thread."""
        now = time.monotonic() if now is None else now
        waited = self._waiting_for_ack_s(now)
        if waited < self._config.ack_timeout_s or self._stopping:
            return
        if now - self._last_received < QUIET_S and waited < FORCE_AFTER_TIMEOUTS * self._config.ack_timeout_s:
            return  # still receiving: the broker's queue for us may hold triggers a reconnect would lose
        if self._dropped_for_acks_at == self._connected_at:  # done already for this connection
            return
        self._dropped_for_acks_at = self._connected_at
        self.ack_timeouts += 1
        log = logger.debug if self._ack_timeout_reported else logger.warning
        self._ack_timeout_reported = True
        log("MQTT broker %s acknowledged none of %d messages for %.0f s (mqtt.ack_timeout_s; a broker whose "
            "queue for this client is full may drop acknowledgements): reconnecting", self.broker, len(self._unacked),
            waited)
        sock = self._client.socket()
        if isinstance(sock, socket.socket):  # paho sees the connection end, reconnects and sends them again
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def stuck(self) -> bool:
        """Nothing acknowledged for several ack timeouts although the connection was dropped: the
        publishing path is dead (paho's thread?); the systemd watchdog should restart the daemon."""
        waited = self._waiting_for_ack_s(time.monotonic())
        if waited < STUCK_AFTER_TIMEOUTS * self._config.ack_timeout_s:
            return False
        if not self._stuck_reported:
            self._stuck_reported = True
            logger.error("Nothing published has been acknowledged by MQTT broker %s for %.0f s, even after "
                         "dropping the connection: no more watchdog keep-alives (systemd restarts the service)",
                         self.broker, waited)
        return True

    # paho callbacks: network thread, must not block.

    def _on_pre_connect(self, client: paho.Client, userdata: Any) -> None:
        self._attempts.started()

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        if reason.is_failure:
            self._attempts.refused(reason)
            return
        if self._stopping:
            return
        self._connected_at = time.monotonic()
        peer = peer_address(client.socket())
        logger.info("Connected to MQTT broker %s", self.broker)
        self._attempts.accepted(peer)
        # Subscribing and publishing only queue packets. The broker handles them in this order,
        # so whoever sees "online" can publish to us and be heard.
        if self._subscriptions:
            self._subscribe(self._subscriptions)
        self._publish(self._status_topic, ONLINE, retain=True)
        self._connected.set()
        self._inbox.put(Connected())

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        # paho calls this from inside its `except OSError:` around the attempt: the exception being
        # handled is the reason (a refused TCP connect, a failed TLS handshake, DNS).
        self._attempts.failed(sys.exc_info()[1])

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       properties: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if self._stopping:
            return
        if was_connected:
            self._attempts.dropped(reason, time.monotonic() - self._connected_at)
        else:  # closed before its CONNACK
            self._attempts.closed_before_connack()

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: list[ReasonCode],
                      properties: Any) -> None:
        self._denials.acknowledged("subscribe", mid, [(r.value, reason_text(r)) for r in reasons])

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any) -> None:
        self._unacked.acknowledged(mid)
        self._ack_timeout_reported = False
        if self._v5:
            self._denials.acknowledged("publish", mid, [(reason.value, reason_text(reason))])

    def _on_log(self, client: paho.Client, userdata: Any, level: int, text: str) -> None:
        # paho's errors, e.g. "failed to receive on socket: [SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] ...",
        # are the reason of a connection that ends before its CONNACK: we log that reason once, in
        # words. paho's whole log goes to edge_vlm.mqtt.paho at DEBUG, but for an exception in
        # one of our callbacks: a bug, always shown.
        if level == paho.MQTT_LOG_ERR:
            self._attempts.socket_error = text
        bug = text.startswith("Caught exception in")
        if bug or paho_logger.isEnabledFor(logging.DEBUG):
            paho_logger.log(logging.ERROR if bug else logging.DEBUG, "%s", text)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._last_received = time.monotonic()
        if not message.retain and any(paho.topic_matches_sub(f, message.topic) for f in self._replay_only):
            return
        size = len(message.payload)
        payload = bytes(message.payload) if size <= self._max_payload else b""
        props = getattr(message, "properties", None)
        response = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        self._inbox.put(Received(message.topic, payload, bool(message.retain), time.monotonic(), time.time(), size,
                                 response, None if correlation is None else bytes(correlation)))
