"""What the daemon says when the broker drops it: the right cause, on the evidence, against a real
mosquitto that is restarted, or that another client with the daemon's client id takes over from."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

import pytest

from edge_vlm.service import Service
from tests.conftest import app_config
from tests.support.broker import Mosquitto
from tests.test_daemon import wait_until

pytestmark = pytest.mark.mqtt

Daemon = Callable[..., Service]
CONNECTION_LOGGER = "edge_vlm.mqtt.connection"
WAIT_S = 30.0


class ConnectionLog(logging.Handler):
    """The connection's log lines, and a wait for the n-th "Connected"."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[int, str]] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.lines.append((record.levelno, record.getMessage()))
            self.changed.notify_all()

    def connects(self) -> int:
        return sum(line.startswith("Connected to MQTT broker") for _, line in self.lines)

    def wait_for_connects(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.connects() >= count, WAIT_S), self.lines

    def errors(self) -> list[str]:
        with self.changed:
            return [line for level, line in self.lines if level >= logging.ERROR]


@pytest.fixture
def connection_log() -> Iterator[ConnectionLog]:
    handler = ConnectionLog()
    logger = logging.getLogger(CONNECTION_LOGGER)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_broker_restarts_soon_after_connecting_are_not_blamed_on_a_client_id_clash(
        restartable_broker: Mosquitto, make_daemon: Daemon, connection_log: ConnectionLog, protocol: str) -> None:
    """Issue 10, 8: after plain broker restarts, each within 30 s of the daemon connecting, it said
    "another client with the same client id?". Mosquitto 2.0 gives no reason for either drop (not
    even in MQTT 5): what tells them apart is that a restarted broker was away."""
    config = app_config(restartable_broker.port, mqtt={"port": restartable_broker.port, "protocol": protocol,
                                                       "reconnect_min_delay": 1, "reconnect_max_delay": 1})
    service = make_daemon(config)
    connection_log.wait_for_connects(1)
    for restart in range(1, 4):
        restartable_broker.restart()  # SIGTERM, then start; returns once it listens
        connection_log.wait_for_connects(1 + restart)
    # The connect callback sets the connected flag after anything it logs.
    wait_until(lambda: service.connection.connected)
    assert [e for e in connection_log.errors() if "client id" in e] == []
    warnings = [line for level, line in connection_log.lines if level == logging.WARNING]
    assert len([w for w in warnings if w.startswith("Disconnected from MQTT broker")]) == 3, warnings
