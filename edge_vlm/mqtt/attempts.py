"""How connecting to the broker goes: why an attempt failed, said once per cause, and backoff for a
broker that keeps dropping us.

paho reconnects by itself with a doubling delay capped at ``reconnect_max_delay``. A failed attempt
is logged once per distinct cause until a connection works, saying what to change (connect_problems):
a refused CONNACK, a TLS failure (from the exception paho's connect raised, or the socket error paho
logged), nothing listening, a name that does not resolve. A connection dropped soon after it was
accepted raises paho's minimum delay. Called from MqttConnection's paho callbacks, on paho's network
thread: nothing here blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from edge_vlm.config.mqtt import MqttConfig
from edge_vlm.mqtt.connect_problems import (
    ListeningProbe,
    closed_before_connack_problem,
    connack_problem,
    connect_failure_problem,
    dropped_problem,
    reason_text,
)

# The connection's log: these lines are what users and tests (tests/test_connection_hints.py) read
# under edge_vlm.mqtt.connection, and what a logging.modules level for it applies to.
logger = logging.getLogger("edge_vlm.mqtt.connection")

# A connection the broker drops sooner than this did not really work: the next reconnect waits
# longer (twice each time, up to reconnect_max_delay), and the same reason is logged once.
STABLE_S = 30.0


class ConnectAttempts:
    """The connection's attempts and drops, told by MqttConnection's paho callbacks (one method each);
    ``last_problem`` is why the last attempt failed, in words."""

    def __init__(self, client: paho.Client, config: MqttConfig, client_id: str, broker: str,
                 stopping: Callable[[], bool]) -> None:
        self._client = client
        self._config = config
        self._client_id = client_id
        self._broker = broker
        self._stopping = stopping
        self.last_problem: str | None = None
        # Reported since the connection last worked: a cause that comes and goes (a TLS alert the
        # client sometimes reads as a bare EOF) is not logged again each time it comes back.
        self._reported: set[str] = set()
        self._short_connections = 0  # in a row, each dropped within STABLE_S, and the broker took us back at once
        self._last_drop: tuple[int, str] = (0, "")  # reason code and name of the last drop
        self._drop_probe = ListeningProbe(None)  # whether the broker still listened after the last drop
        self._peer: tuple[str, int] | None = None  # the broker's address on the current connection
        self._attempt_reported = False  # this connection attempt's failure was reported already
        self.socket_error: str | None = None  # the last socket error paho logged in this attempt

    def started(self) -> None:
        """An attempt begins (on_pre_connect)."""
        self._attempt_reported = False
        self.socket_error = None

    def refused(self, reason: ReasonCode) -> None:
        """The broker's CONNACK refused us."""
        self._attempt_reported = True
        self._short_connections = 0  # refused, not dropped
        self.report(connack_problem(reason.value, reason_text(reason), self._config))

    def accepted(self, peer: tuple[str, int] | None) -> None:
        """The broker at ``peer`` accepted us."""
        self._peer = peer
        if self._drop_probe.listening is False:  # it was away after the last drop: a restart, not a clash
            self._short_connections = 0
        if self._short_connections > 1:  # it keeps taking us and dropping us
            self.report(dropped_problem(*self._last_drop, self._config, self._client_id, repeated=True)
                        or f"broker {self._broker} keeps dropping the connection")

    def failed(self, error: BaseException | None) -> None:
        """The attempt failed before MQTT (a refused TCP connect, a failed TLS handshake, DNS): ``error``."""
        self._attempt_reported = True
        self._short_connections = 0  # the broker is away (a restart?): not one that keeps dropping us
        self.report(connect_failure_problem(error, self._config))

    def closed_before_connack(self) -> None:
        """The connection closed before its CONNACK (a TLS alert, a plain client on a TLS port): the socket
        error paho logged says why."""
        if not self._attempt_reported:
            self._attempt_reported = True
            self.report(closed_before_connack_problem(self.socket_error, self._config))

    def dropped(self, reason: ReasonCode, lasted: float) -> None:
        """An accepted connection ended after ``lasted`` seconds, for ``reason``."""
        if lasted >= STABLE_S:  # it worked: a broker restart, a network hiccup
            self._short_connections = 0
            self.last_problem = None
            self._reported.clear()
            self._client.reconnect_delay_set(self._config.reconnect_min_delay, self._config.reconnect_max_delay)
            logger.warning("Disconnected from MQTT broker %s (%s); reconnecting", self._broker, reason_text(reason))
            return
        # Dropped soon after it was accepted. paho starts its delay again from the minimum after
        # each accepted connection: raise the minimum so that a broker that keeps dropping us (a
        # client with the same id, an ACL that disconnects) is not hammered every second.
        self._short_connections += 1
        self._drop_probe = ListeningProbe(self._peer)
        delay = min(self._config.reconnect_min_delay * 2 ** self._short_connections, self._config.reconnect_max_delay)
        self._client.reconnect_delay_set(delay, self._config.reconnect_max_delay)
        self._last_drop = (reason.value, reason_text(reason))
        problem = dropped_problem(*self._last_drop, self._config, self._client_id, repeated=False)
        if problem is None:  # a second one in a row is reported when the broker takes us back at once
            logger.warning("Disconnected from MQTT broker %s %.0f s after connecting (%s); reconnecting",
                           self._broker, lasted, reason_text(reason))
        else:
            self.report(problem)

    def report(self, problem: str) -> None:
        # Once per distinct problem until a connection works, not on every retry: a broker down for
        # a night must not fill the journal.
        if self._stopping():
            return
        self.last_problem = problem
        if problem not in self._reported:
            logger.error("%s (retrying with backoff, every %d s at most)", problem, self._config.reconnect_max_delay)
            self._reported.add(problem)
        else:
            logger.debug("Connection attempt failed again: %s", problem)
