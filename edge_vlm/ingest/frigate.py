"""Frigate's events: which ones to describe, with which snapshot and prompt.

Frigate publishes ``<prefix>/events`` as JSON ``{type: new|update|end, before, after}`` and keeps
the best snapshot of each camera and label retained on ``<prefix>/<camera>/<label>/snapshot``
(Frigate's MQTT documentation). An event that passes a camera's filters (label, zone, score, event
type) is described from that snapshot (edge_vlm.frames.sources.frigate), with the label's prompt, and its
result carries the event's id so that an automation can join it to Frigate's own notification.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.config.sources import FrigateCameraConfig
from edge_vlm.core.contracts import Origin
from edge_vlm.core.errors import TriggerError
from edge_vlm.ingest.trigger import Trigger
from edge_vlm.mqtt.inbox import Received

logger = logging.getLogger(__name__)

REMEMBERED_EVENTS = 1024  # event ids already described, so each is described once
PICTURE_RETRIES = 2  # an event that had no picture (no_frame) is tried again on its next messages


@dataclass(frozen=True)
class FrigateEvent:
    id: str
    type: str
    camera: str
    label: str
    sub_label: str | None
    zones: tuple[str, ...]
    score: float
    stationary: bool = False  # not moving now (Frigate's `stationary`)
    moved: bool = True  # has moved at least once (`position_changes` > 0; absent: taken as moved)
    has_snapshot: bool | None = None  # whether Frigate keeps a snapshot of it (absent: unknown)

    @property
    def summary(self) -> dict[str, Any]:
        return {"source": "frigate", "id": self.id, "type": self.type, "label": self.label,
                "sub_label": self.sub_label, "zones": list(self.zones), "score": self.score}


def parse_event(payload: bytes) -> FrigateEvent:
    try:
        message = json.loads(payload)
        after = message["after"]
        sub_label = after.get("sub_label") or after.get("recognized_license_plate")  # a name, else a plate read
        if isinstance(sub_label, list):  # [name, score] in recent Frigate versions (a plate too, 0.16+)
            sub_label = sub_label[0] if sub_label else None
        zones = tuple(dict.fromkeys([*(after.get("current_zones") or []), *(after.get("entered_zones") or [])]))
        score = after.get("top_score") or after.get("score") or 0.0
        changes, has_snapshot = after.get("position_changes"), after.get("has_snapshot")
        return FrigateEvent(str(after["id"]), str(message["type"]), str(after["camera"]), str(after["label"]),
                            None if sub_label is None else str(sub_label), zones, float(score),
                            stationary=bool(after.get("stationary")), moved=changes is None or int(changes) > 0,
                            has_snapshot=None if has_snapshot is None else bool(has_snapshot))
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise TriggerError(f"not a Frigate event: {type(exc).__name__}: {exc}") from None


def refusal(event: FrigateEvent, config: FrigateCameraConfig, *, any_type: bool = False) -> str | None:
    """Why ``event`` is not to be described, or None when it is (``any_type``: whichever message it is)."""
    if not any_type and event.type not in config.event_types:
        return f"event type {event.type} not in {config.event_types}"
    if config.labels and event.label not in config.labels:
        return f"label {event.label} not in {config.labels}"
    if config.zones and not set(config.zones) & set(event.zones):
        return f"zones {list(event.zones)} not in {config.zones}"
    if event.score < config.min_score:
        return f"score {event.score:.2f} below {config.min_score}"
    if not config.include_stationary and (event.stationary or not event.moved):
        return "stationary" if event.stationary else "it has never moved"
    return None


Key = tuple[str, str]  # our camera, Frigate's event (or review item) id
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def remember(memory: dict[K, V], key: K, value: V) -> None:
    """Keep ``value`` as the newest of ``memory``, which forgets its oldest past REMEMBERED_EVENTS."""
    memory.pop(key, None)
    memory[key] = value
    if len(memory) > REMEMBERED_EVENTS:
        del memory[next(iter(memory))]


def frigate_cameras(config: AppConfig, *, reviews: bool) -> dict[str, list[CameraConfig]]:
    """Frigate's camera -> ours that describe its review items (``reviews``), else its events."""
    cameras: dict[str, list[CameraConfig]] = {}
    for camera in config.cameras:
        if camera.frigate is not None and bool(camera.frigate.reviews) == reviews:
            cameras.setdefault(camera.frigate.camera or camera.id, []).append(camera)
    return cameras


class FrigateEvents:
    """Frigate's events topic, as the router hands it over."""

    def __init__(self, config: AppConfig, submit: Callable[[Trigger], None],
                 seen: Callable[[FrigateEvent, float], None] = lambda event, received_at: None) -> None:
        """``seen``: every event message, parsed, with its arrival (``time.monotonic()``), before it is
        considered (frames.sources.frigate follows which objects are about, to tell whose a snapshot is)."""
        self._submit = submit
        self._seen = seen
        self._cameras = frigate_cameras(config, reviews=False)  # filters never overlap
        # Frigate's cameras whose events are kept, for review items too
        self._followed = {c.frigate.camera or c.id for c in config.cameras if c.frigate is not None}
        # -> the name it was described with (None: none yet), and the revision last asked for
        self._described: dict[Key, tuple[str | None, int]] = {}
        self._recent: dict[str, FrigateEvent] = {}  # event id -> its newest message, oldest first
        self._retries: dict[Key, int] = {}  # -> times its picture was tried again after a no_frame
        self._retry_due: set[Key] = set()  # no picture: its next message tries again
        # -> its newest message while it waits for a recognised name, and the timer
        self._waiting: dict[Key, tuple[CameraConfig, FrigateEvent, Received, threading.Timer]] = {}
        self._lock = threading.Lock()  # the dispatcher, the timers and the capture threads
        self._stopped = False

    def handle(self, message: Received) -> None:
        try:
            event = parse_event(message.payload)
        except TriggerError as exc:
            logger.warning("Ignoring a message on %s: %s", message.topic, exc)
            return
        self._seen(event, message.received_at)
        if event.camera in self._followed:
            with self._lock:
                remember(self._recent, event.id, event)
        for camera in self._cameras.get(event.camera, []):
            self._consider(camera, event, message)

    def _consider(self, camera: CameraConfig, event: FrigateEvent, message: Received) -> None:
        """Describe the event now, later (waiting for a name), again (a name came), or not. Submitting
        only queues the trigger, so it is done under the lock: descriptions are asked for in order."""
        config = camera.frigate
        assert config is not None
        key = (camera.id, event.id)
        with self._lock:
            if self._stopped:
                return
            if key in self._described:  # an update or end of an event described already
                name, revision = self._described[key]
                if config.again_when_named and event.sub_label and name is None:
                    remember(self._described, key, (event.sub_label, revision + 1))  # named now: again (any message)
                    self._describe(camera, event, message, revision + 1)
                return
            retry = key in self._retry_due  # after a no_frame: whichever message comes next
            if (reason := refusal(event, config, any_type=retry)) is not None:
                logger.debug("Frigate event %s on %s not described for %s: %s", event.id, event.camera, camera.id,
                             reason)
                return
            if config.name_wait_s and event.sub_label is None and event.type != "end" and not retry:
                # no name yet: wait for an update that brings one (a face, a plate), at most name_wait_s
                timer = self._waiting[key][3] if key in self._waiting else threading.Timer(
                    config.name_wait_s, self._waited, (key,))
                self._waiting[key] = (camera, event, message, timer)
                if not timer.is_alive():
                    timer.daemon = True
                    timer.start()
                return
            if (waited := self._waiting.pop(key, None)) is not None:
                waited[3].cancel()
            self._retry_due.discard(key)
            remember(self._described, key, (event.sub_label, 0))
            self._describe(camera, event, message)

    def _waited(self, key: Key) -> None:
        """No name came in time (a timer thread): describe the event as its last message had it."""
        with self._lock:
            waited = self._waiting.pop(key, None)
            if waited is None or self._stopped:
                return
            remember(self._described, key, (waited[1].sub_label, 0))
            self._describe(*waited[:3])

    def _describe(self, camera: CameraConfig, event: FrigateEvent, message: Received, revision: int = 0) -> None:
        assert camera.frigate is not None
        prompts = camera.frigate.prompts
        template = prompts.get(event.label) or prompts.get("default")  # else the camera's profile
        self._submit(Trigger(camera.id, Origin.FRIGATE, template, event.id, message.topic, message.received_at,
                             message.wall_time, {**event.summary, "revision": revision}, frigate=event,
                             revision=revision, clip=camera.frigate.clip or None))

    def unpictured(self, camera: str, event_id: str, revision: int) -> None:
        """No picture of the event's description ``revision`` could be had for now (another object
        was about, no snapshot came; a capture thread): its next message tries again (a named one,
        for a revision), ``PICTURE_RETRIES`` times at most."""
        key = (camera, event_id)
        with self._lock:
            tries = self._retries.get(key, 0)
            if key not in self._described or self._described[key][1] != revision or tries >= PICTURE_RETRIES:
                return  # not ours (a review item's object), a newer description was asked for, or given up
            remember(self._retries, key, tries + 1)
            if revision:  # as if still unnamed: the next named message asks for this revision again
                self._described[key] = (None, revision - 1)
                return
            del self._described[key]
            self._retry_due.add(key)
            if len(self._retry_due) > REMEMBERED_EVENTS:
                self._retry_due.clear()  # an event that never sent another message is long gone

    def recent(self, event_id: str) -> FrigateEvent | None:
        """The newest message of one of our Frigate cameras' events, if it came lately."""
        with self._lock:
            return self._recent.get(event_id)

    def stop(self) -> None:
        """Events still waiting for a name are dropped: the service is stopping."""
        with self._lock:
            self._stopped = True
            for *_, timer in self._waiting.values():
                timer.cancel()
            self._waiting.clear()
