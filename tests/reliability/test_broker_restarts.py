"""The broker stopped and restarted 20 times while snapshots keep arriving: no outcome lost or doubled.

The claim: every snapshot the daemon ACCEPTED (a ``pending`` event on its camera's event topic) gets
exactly one outcome under the same id: ``described``, ``failed`` or ``superseded``. Snapshots that
reach the broker while the daemon is disconnected are never accepted (its session is clean, by
design: no backlog of stale frames) and are not part of the claim; the count of them is reported.

How nothing is lost between the daemon and the recorder:
- the daemon publishes with QoS 1; what paho had in flight when the link dropped is sent again after
  the reconnect, and events made while disconnected wait in the Publisher (edge_vlm/publish/publisher.py);
- the recorder has a persistent session (MQTT 3.1.1, clean_session false) with QoS 1 subscriptions,
  so the broker queues for it while it is away;
- mosquitto runs with ``persistence true`` and is stopped with SIGTERM, on which it writes its
  persistence file (sessions, subscriptions, queued messages) before exiting. A kill -9 would lose
  what arrived since its last autosave, which no client can make up for (the broker acknowledged
  those messages), so it would test the broker's configuration rather than the daemon.
QoS 1 may deliver a message twice: the same id and status twice is counted as a duplicate delivery;
two different outcomes for one id would be a failure, and so would an outcome that arrives before its
``pending`` (the second test provokes that case on purpose).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from edge_vlm.config.models import CameraConfig, OpencvBackendConfig
from edge_vlm.frames import Frame
from edge_vlm.inference.backends.opencv import OpencvBackend
from edge_vlm.inference.results import Description
from edge_vlm.service import Service
from tests.reliability.conftest import DaemonSecrets, SecretScan, secret_config
from tests.reliability.figures import report, spread
from tests.reliability.traffic import SnapshotPublisher, event_time, outcomes, settled, tally
from tests.support import images
from tests.support.broker import Mosquitto
from tests.support.mqtt import Message, Recorder
from tests.test_daemon import wait_until

pytestmark = pytest.mark.mqtt

RESTARTS = 20
CAMERAS = ("front_door", "driveway")
SNAPSHOT_PERIOD_S = 0.1  # 10 snapshots/s over the two cameras: faster than the backend, so some are superseded
DESCRIBED_BETWEEN_RESTARTS = 3  # the daemon works again before the next restart


def test_every_accepted_snapshot_gets_exactly_one_outcome_across_20_broker_restarts(
        restartable_broker: Mosquitto, start_daemon: Callable[..., Service], make_recorder: Callable[..., Recorder],
        secret_scan: SecretScan, daemon_secrets: DaemonSecrets) -> None:
    broker = restartable_broker
    config = secret_config(broker.port, list(CAMERAS), daemon_secrets)
    base, status = config.base_topic, f"{config.base_topic}/{config.node_id}/status"
    event_topics = {f"{base}/{c}/event" for c in CAMERAS}
    recorder = secret_scan.watch(make_recorder(
        broker.port, [f"{base}/+/event", f"{base}/+/error", f"{base}/+/result", status,
                      f"{base}/{config.node_id}/diagnostics", f"{config.discovery.prefix}/#"],
        client_id=f"restarts-recorder-{secrets.token_hex(4)}", persistent=True))
    service = start_daemon(config)
    recorder.wait_for(status, lambda m: m.payload == b"online")
    publisher = SnapshotPublisher(broker.port, [f"{base}/{c}/snapshot" for c in CAMERAS],
                                  [images.sample("front_door"), images.sample("driveway")], SNAPSHOT_PERIOD_S)

    def described_since(index: int, after_wall: float = 0.0) -> Callable[[Message], bool]:
        return lambda m: (m.index >= index and m.topic in event_topics and m.json()["event_type"] == "described"
                          and event_time(m) >= after_wall)

    reconnect_s: list[float] = []
    first_result_s: list[float] = []
    started = time.monotonic()
    try:
        mark = 0
        for _ in range(RESTARTS):
            for _ in range(DESCRIBED_BETWEEN_RESTARTS):  # the daemon is working again
                mark = recorder.wait_where(described_since(mark), timeout=30).index + 1
            log_mark = len(secret_scan.log)
            broker.restart()  # SIGTERM (saves the persistence file), then start; returns once it listens
            up_wall, up = time.time(), time.monotonic()
            connected = secret_scan.log.wait_for(
                lambda r: r.name == "edge_vlm.mqtt.connection" and r.getMessage().startswith("Connected to MQTT"),
                since=log_mark, timeout=30)
            reconnect_s.append(connected.created - up_wall)
            # Descriptions made while disconnected go out on reconnect: the first after it is what counts.
            first = recorder.wait_where(described_since(0, connected.created), timeout=30)
            first_result_s.append(event_time(first) - up_wall)
            mark = first.index + 1
            assert time.monotonic() - up < 30
    finally:
        publisher.stop()

    def events() -> list[Message]:
        return [m for m in recorder.messages if m.topic in event_topics]

    wait_until(lambda: service.scheduler.depth == 0 and settled(outcomes(events())), timeout=30)
    stats = service.stats.values()
    result = tally(outcomes(events()))
    figures: dict[str, Any] = {
        "restarts": RESTARTS, "snapshots_published": publisher.sent, "accepted": len(result.accepted),
        "not_accepted": publisher.sent - len(result.accepted), "described": result.counts.get("described", 0),
        "superseded": result.counts.get("superseded", 0), "failed": result.counts.get("failed", 0),
        "lost": len(result.missing), "conflicting": len(result.conflicting), "orphans": len(result.orphans),
        "outcome_before_pending": len(result.overtaken),
        "duplicate_deliveries": result.duplicates,
        "reconnect_s": spread(reconnect_s), "first_result_after_restart_s": spread(first_result_s),
        "reconnect_delay_config_s": config.mqtt.reconnect_min_delay,
        "inbox_dropped": service.inbox.dropped, "outbox_dropped": service.publisher.dropped,
        "duration_s": round(time.monotonic() - started, 1),
    }
    report("broker_restarts", figures)
    assert not result.missing, f"accepted snapshots without an outcome: {result.missing[:10]}"
    assert not result.conflicting, f"two different outcomes: {list(result.conflicting.items())[:10]}"
    assert not result.orphans, f"outcomes of snapshots never announced as pending: {result.orphans[:10]}"
    assert not result.overtaken, f"outcomes that arrived before their pending: {result.overtaken[:10]}"
    # Every job the daemon accepted was announced: its own count of outcomes matches what arrived.
    assert len(result.accepted) == stats["jobs_done"] + stats["jobs_failed"] + stats["jobs_coalesced"]
    assert result.counts.get("failed", 0) == 0
    assert service.inbox.dropped == 0 and service.publisher.dropped == 0
    assert len(reconnect_s) == RESTARTS
    assert recorder.on(status)[-1].payload == b"online"


class WaitsForTheBroker(OpencvBackend):
    """Once ``hold`` is set, each job waits until the daemon is connected again, and is done the
    moment it is: its outcome is ready before the daemon has sent what waited during the outage."""

    def __init__(self) -> None:
        super().__init__(OpencvBackendConfig())
        self.hold = threading.Event()
        self.held = threading.Event()
        self.connected: threading.Event | None = None

    def describe(self, prepared: np.ndarray | None, frame: Frame | None, prompt: str) -> Description:
        description = super().describe(prepared, frame, prompt)
        if self.hold.is_set() and self.connected is not None:
            self.held.set()
            assert self.connected.wait(30)  # woken the moment the connection is back
        return description


def test_an_outcome_never_overtakes_its_pending_across_a_reconnect(
        restartable_broker: Mosquitto, start_daemon: Callable[..., Service], make_recorder: Callable[..., Recorder],
        secret_scan: SecretScan, daemon_secrets: DaemonSecrets) -> None:
    """A job accepted while the broker is away (an interval camera goes on describing) waits with its
    ``pending`` in the Publisher; its outcome, ready the moment the daemon reconnects, must still
    come after that ``pending`` (it used to go out first, before the reconnect's republish)."""
    broker = restartable_broker
    config = secret_config(broker.port, [], daemon_secrets)
    config = config.model_copy(update={"cameras": [*config.cameras, CameraConfig(id="lawn", interval_s=1)]})
    events = f"{config.base_topic}/lawn/event"
    status = f"{config.base_topic}/{config.node_id}/status"
    recorder = secret_scan.watch(make_recorder(broker.port, [events, status],
                                               client_id=f"order-recorder-{secrets.token_hex(4)}", persistent=True))
    backend = WaitsForTheBroker()
    service = start_daemon(config, backend)
    backend.connected = service.connection._connected  # the instrument wakes with the connection itself
    recorder.wait_for(status, lambda m: m.payload == b"online")
    recorder.publish(f"{config.base_topic}/lawn/snapshot", images.sample("driveway"))  # what the interval describes
    recorder.count(events, 4)

    broker.stop()
    wait_until(lambda: not service.connection.connected)
    backend.hold.set()
    assert backend.held.wait(10)  # an interval job accepted while disconnected is done, but for the broker
    broker.start()
    mark = len(recorder.messages)
    held = recorder.wait_for(events, lambda m: m.index >= mark and m.json()["event_type"] == "described",
                             timeout=30).json()
    backend.hold.clear()
    recorder.wait_for(events, lambda m: m.json()["id"] == held["id"] and m.json()["event_type"] == "pending")
    result = tally(outcomes(recorder.on(events)))
    assert not result.overtaken, f"outcomes that arrived before their pending: {result.overtaken}"
    assert not result.orphans and not result.conflicting  # (the interval goes on: the last job may be running)
