"""Traffic for the reliability tests: a steady stream of snapshots, and the events that come back."""

from __future__ import annotations

import secrets
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.support.mqtt import Message

TERMINAL = ("described", "failed", "superseded")


class SnapshotPublisher:
    """Its own paho client publishing snapshots with QoS 1 at a steady rate, across broker restarts
    (paho keeps what it could not send and sends it after reconnecting)."""

    def __init__(self, port: int, topics: list[str], payloads: list[bytes], period_s: float) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"snapshots-{secrets.token_hex(4)}",
                                  protocol=MQTTProtocolVersion.MQTTv311)
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.sent = 0
        self._topics, self._payloads, self._period = topics, payloads, period_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="snapshot-publisher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stopping.wait(max(0.0, next_at - time.monotonic())):
            i = self.sent
            self.client.publish(self._topics[i % len(self._topics)], self._payloads[i % len(self._payloads)], qos=1)
            self.sent += 1
            next_at += self._period

    def stop(self) -> None:
        """Stop publishing and disconnect; again is a no-op."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()
        self.client.on_connect = None


def event_time(message: Message) -> float:
    return datetime.fromisoformat(message.json()["time"]).timestamp()


def outcomes(events: list[Message]) -> dict[str, list[str]]:
    """id -> its event types in order of arrival."""
    by_id: dict[str, list[str]] = defaultdict(list)
    for message in events:
        event = message.json()
        by_id[event["id"]].append(event["event_type"])
    return by_id


def settled(by_id: dict[str, list[str]]) -> bool:
    return all(any(t in TERMINAL for t in types) for types in by_id.values())


@dataclass(frozen=True)
class Tally:
    """What the events say about each id: the claim is one pending, then exactly one terminal status."""

    accepted: set[str]  # ids announced pending
    counts: dict[str, int]  # event type -> ids that had it
    missing: list[str]  # pending, no outcome
    conflicting: dict[str, list[str]]  # two different outcomes
    orphans: list[str]  # an outcome, never pending
    overtaken: list[str]  # the outcome arrived before the pending
    duplicates: int  # the same (id, type) delivered again (QoS 1 may)


def tally(by_id: dict[str, list[str]]) -> Tally:
    accepted = {i for i, types in by_id.items() if "pending" in types}
    counts: dict[str, int] = defaultdict(int)
    for types in by_id.values():
        for kind in set(types):
            counts[kind] += 1
    return Tally(
        accepted=accepted, counts=dict(counts),
        missing=sorted(i for i in accepted if not any(t in TERMINAL for t in by_id[i])),
        conflicting={i: types for i, types in by_id.items() if len({t for t in types if t in TERMINAL}) > 1},
        orphans=sorted(i for i in by_id if i not in accepted),
        overtaken=sorted(i for i in accepted if by_id[i][0] != "pending"),
        duplicates=sum(len(types) - len(set(types)) for types in by_id.values()),
    )
