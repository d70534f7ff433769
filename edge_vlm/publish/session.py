"""The MQTT session's side of the daemon, on the dispatcher thread: every inbound event to the
router, Home Assistant's discovery announced on connect and when Home Assistant restarts, the
retained replay's end noticed (``serving``), and each turn the chores of a bounded outbox: flush
what waited, watch the broker's acknowledgements, publish the diagnostics when due."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from edge_vlm.config.models import AppConfig
from edge_vlm.core.topics import Outbound, Topics
from edge_vlm.ingest.router import Router
from edge_vlm.mqtt.connection import MqttConnection
from edge_vlm.mqtt.inbox import Connected, Event, Inbox, Received
from edge_vlm.publish.diagnostics import Diagnostics
from edge_vlm.publish.discovery import discovery_messages, stale_camera_messages
from edge_vlm.publish.publisher import Publisher

logger = logging.getLogger(__name__)

POLL_S = 0.2


class Session:
    def __init__(self, config: AppConfig, topics: Topics, connection: MqttConnection, *, inbox: Inbox, router: Router,
                 publisher: Publisher, diagnostics: Diagnostics, synced: Callable[[], None]) -> None:
        """``synced``: called once the retained replay after the first connect is read back."""
        self._config = config
        self._topics = topics
        self._connection = connection
        self._inbox = inbox
        self._router = router
        self._publisher = publisher
        self._diagnostics = diagnostics
        self._synced = synced
        self._sync_token = os.urandom(8).hex().encode()
        # Called on each turn of the dispatcher loop: systemd's watchdog keep-alive (edge_vlm.run.systemd).
        self.heartbeat: Callable[[], None] = _no_heartbeat
        # Set once our sync message came back after the first connect: subscribed, the retained
        # settings read back, discovery sent. What is published to us from then on is heard.
        self.serving = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="edge_vlm-dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, grace: float) -> None:
        """Handle no more events; what is in the inbox is drained by ``drain()``."""
        self._stopping.set()
        if self._thread.is_alive():  # started
            self._thread.join(grace)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def drain(self) -> None:
        """What arrived after the loop stopped: requests and triggers get "cancelled" (the capture
        pool and the scheduler are closed), settings are still taken."""
        while (event := self._inbox.get(0)) is not None:
            if isinstance(event, Received):
                self._handle(event)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            if not self._connection.stuck():  # else systemd's watchdog restarts the daemon
                self.heartbeat()
            event = self._inbox.get(POLL_S)
            if event is not None and not self._stopping.is_set():
                self._handle(event)
            self._inbox.summary()
            self._connection.check_acknowledgements()
            self._publisher.flush()
            self._diagnostics.publish_if_due()

    def _handle(self, event: Event) -> None:
        try:
            if isinstance(event, Connected):
                self._announce()
            else:
                self._router.route(event)
        except Exception:  # one bad event must not stop the daemon
            logger.exception("Unexpected error while handling %s", event)

    def _announce(self) -> None:
        diagnostics = self._diagnostics.publish()  # what this board reports decides which readings are announced
        if self._config.discovery.enabled:
            for message in discovery_messages(self._config, self._topics, diagnostics):
                self._connection.publish(message)
        self._publisher.republish()
        # Comes back after the retained messages our subscriptions replay (see Controls.synced).
        self._connection.publish(Outbound(self._topics.sync, self._sync_token, retain=False))

    # Its routes

    def sync(self, message: Received) -> None:
        """Our sync message came back: the retained replay before it is read."""
        if message.payload == self._sync_token:
            self._synced()
            self.serving.set()

    def ha_status(self, message: Received) -> None:
        """Home Assistant's status topic."""
        # Home Assistant restarted: it lost our entities until they are announced again.
        # Its retained "online" arrives on every subscribe and needs nothing.
        if message.payload.strip() == b"online" and not message.retain:
            logger.info("Home Assistant is online: announcing discovery again")
            self._announce()

    def stale_device(self, message: Received) -> None:
        """A camera this node announced before but is no longer configured: remove it from HA, and
        its retained topics from the broker."""
        camera = message.topic.split("/")[-2]
        if message.payload and self._config.camera(camera) is None:
            stale = stale_camera_messages(message.topic, message.payload, camera, self._topics)
            logger.info("Camera %r is no longer configured: removing its Home Assistant device and clearing its %d "
                        "retained topics", camera, len(stale) - 1)
            for outbound in stale:
                self._connection.publish(outbound)


def _no_heartbeat() -> None:
    pass
