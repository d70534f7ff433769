"""Frigate's events: which ones to describe, with which snapshot and prompt.

Frigate publishes ``<prefix>/events`` as JSON ``{type: new|update|end, before, after}`` and keeps
the best snapshot of each camera and label retained on ``<prefix>/<camera>/<label>/snapshot``
(home-assistant-mqtt.md). An event that passes a camera's filters (label, zone, score, event
type) is described from that snapshot (or from Frigate's API), with the label's prompt, and its
result carries the event's id so that an automation can join it to Frigate's own notification.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.config.sources import FrigateCameraConfig, HttpSourceConfig
from edge_vlm.errors import SourceError, TriggerError
from edge_vlm.frames import Frame
from edge_vlm.ingest.triggers import Trigger
from edge_vlm.intake import Intake
from edge_vlm.mqtt.inbox import Received

logger = logging.getLogger(__name__)

SNAPSHOT_WAIT_S = 3.0  # Frigate may publish an event's snapshot just after the event itself
SNAPSHOT_LEAD_S = 5.0  # ...or just before: a snapshot that arrived this long before the event is its own
REMEMBERED_EVENTS = 1024  # event ids already described, so each is described once


@dataclass(frozen=True)
class FrigateEvent:
    id: str
    type: str
    camera: str
    label: str
    sub_label: str | None
    zones: tuple[str, ...]
    score: float
    start_time: float

    @property
    def summary(self) -> dict[str, Any]:
        return {"source": "frigate", "id": self.id, "type": self.type, "label": self.label,
                "sub_label": self.sub_label, "zones": list(self.zones), "score": self.score}


def parse_event(payload: bytes) -> FrigateEvent:
    try:
        message = json.loads(payload)
        after = message["after"]
        sub_label = after.get("sub_label")
        if isinstance(sub_label, list):  # [name, score] in recent Frigate versions
            sub_label = sub_label[0] if sub_label else None
        zones = tuple(dict.fromkeys([*(after.get("current_zones") or []), *(after.get("entered_zones") or [])]))
        score = after.get("top_score") or after.get("score") or 0.0
        return FrigateEvent(str(after["id"]), str(message["type"]), str(after["camera"]), str(after["label"]),
                            None if sub_label is None else str(sub_label), zones, float(score),
                            float(after.get("start_time") or 0.0))
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise TriggerError(f"not a Frigate event: {type(exc).__name__}: {exc}") from None


def refusal(event: FrigateEvent, config: FrigateCameraConfig) -> str | None:
    """Why ``event`` is not to be described, or None when it is."""
    if event.type not in config.event_types:
        return f"event type {event.type} not in {config.event_types}"
    if config.labels and event.label not in config.labels:
        return f"label {event.label} not in {config.labels}"
    if config.zones and not set(config.zones) & set(event.zones):
        return f"zones {list(event.zones)} not in {config.zones}"
    if event.score < config.min_score:
        return f"score {event.score:.2f} below {config.min_score}"
    return None


class FrigateEvents:
    """Frigate's topics, as the dispatcher hands them over."""

    def __init__(self, config: AppConfig, intake: Intake) -> None:
        self._config = config
        self._intake = intake
        self._prefix = config.frigate.topic_prefix
        self._cameras = {c.frigate.camera or c.id: c for c in config.cameras if c.frigate is not None}
        self._snapshots: dict[tuple[str, str], tuple[bytes, float]] = {}  # (camera, label) -> (jpeg, received)
        self._arrived = threading.Condition()
        self._described: dict[str, None] = {}  # event ids, oldest first

    def subscriptions(self) -> list[str]:
        return [f"{self._prefix}/+/+/snapshot"] if self._cameras else []

    def shared_subscriptions(self) -> list[str]:
        """The events: with several boards in a group, each event goes to one of them."""
        return [f"{self._prefix}/events"] if self._cameras else []

    def _snapshot_key(self, topic: str) -> tuple[str, str] | None:
        """(Frigate camera, label) of a ``<prefix>/<camera>/<label>/snapshot`` topic."""
        rest = topic.removeprefix(f"{self._prefix}/").split("/")
        if topic.startswith(f"{self._prefix}/") and len(rest) == 3 and rest[2] == "snapshot":
            return rest[0], rest[1]
        return None

    def handles(self, topic: str) -> bool:
        return bool(self._cameras) and (topic == f"{self._prefix}/events" or self._snapshot_key(topic) is not None)

    def handle(self, message: Received) -> None:
        if message.topic == f"{self._prefix}/events":
            self._event(message)
            return
        key = self._snapshot_key(message.topic)
        if key is not None and key[0] in self._cameras and message.payload:
            with self._arrived:
                # A retained snapshot is from an earlier event: we cannot tell when it was taken.
                self._snapshots[key] = (message.payload, 0.0 if message.retain else message.wall_time)
                self._arrived.notify_all()

    def _event(self, message: Received) -> None:
        try:
            event = parse_event(message.payload)
        except TriggerError as exc:
            logger.warning("Ignoring a message on %s: %s", message.topic, exc)
            return
        camera = self._cameras.get(event.camera)
        if camera is None or camera.frigate is None:
            return
        if (reason := refusal(event, camera.frigate)) is not None:
            logger.debug("Frigate event %s on %s not described: %s", event.id, event.camera, reason)
            return
        if event.id in self._described:  # an update or end of an event described already
            return
        self._described[event.id] = None
        if len(self._described) > REMEMBERED_EVENTS:
            del self._described[next(iter(self._described))]
        prompts = camera.frigate.prompts
        template = prompts.get(event.label) or prompts.get("default")  # else the camera's profile
        arrived = message.wall_time
        self._intake.trigger(Trigger(
            camera.id, "frigate", template, event.id, message.topic,
            message.received_at, event.summary, lambda: self._snapshot(camera, event, arrived),
        ))

    def _snapshot(self, camera: CameraConfig, event: FrigateEvent, arrived: float) -> Frame:
        """The event's snapshot (runs on a capture thread: may wait or fetch).

        Frigate publishes it around the event message; our clock decides what is recent enough,
        never Frigate's (the two need not agree)."""
        assert camera.frigate is not None
        if camera.frigate.snapshot == "http":
            return self._fetch(camera, event)
        key = (camera.frigate.camera or camera.id, event.label)
        with self._arrived:
            fresh = self._arrived.wait_for(
                lambda: key in self._snapshots and self._snapshots[key][1] >= arrived - SNAPSHOT_LEAD_S,
                SNAPSHOT_WAIT_S)
            found = self._snapshots.get(key)
        if fresh and found is not None:
            return self._intake.decode(found[0], camera.id, found[1])
        if self._config.frigate.api_url is not None:
            return self._fetch(camera, event)
        topic = f"{self._prefix}/{key[0]}/{event.label}/snapshot"
        raise TriggerError(f"Frigate event {event.id}: no snapshot on {topic} within {SNAPSHOT_WAIT_S:g} s of the "
                           "event (set frigate.api_url to fetch it from Frigate instead)", code="no_frame")

    def _fetch(self, camera: CameraConfig, event: FrigateEvent) -> Frame:
        from edge_vlm.frames.sources.http import HttpSnapshotSource  # noqa: PLC0415

        api = (self._config.frigate.api_url or "").rstrip("/")
        source = HttpSourceConfig(type="http", url=f"{api}/api/events/{event.id}/snapshot.jpg")
        limits = self._config.limits
        try:
            return HttpSnapshotSource(camera.id, source, password=None, max_bytes=limits.max_payload_bytes,
                                      max_pixels=limits.max_image_pixels, min_long_side=None).grab()
        except SourceError as exc:
            raise SourceError(f"Frigate event {event.id}: {exc}", code=exc.code) from None
