"""The snapshot of a Frigate event: the ``<prefix>/<camera>/<label>/snapshot`` Frigate publishes for
it, or its API's ``/api/events/<id>/snapshot.jpg`` (``frigate.api_url``).

Frigate's snapshot topic names a camera and a label, not an event: it carries whichever object of
that label last had a better picture (from 0.16 also each new object's first one, published before
its event message). So a snapshot is taken as an event's own only when no other object of the same
camera and label was about while it arrived, as Frigate's events tell (every event message of the
cameras is noted here, described or not). Otherwise the event's snapshot comes from Frigate's API by
its id, or the description fails as ``no_frame``, saying why: never another event's picture.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.config.sources import HttpSourceConfig
from edge_vlm.core.errors import ErrorCode, SourceError, TriggerError
from edge_vlm.frames import Frame
from edge_vlm.ingest.frigate import FrigateEvent
from edge_vlm.mqtt.inbox import Received

SNAPSHOT_WAIT_S = 3.0  # Frigate may publish an event's snapshot just after the event itself
SNAPSHOT_LEAD_S = 5.0  # ...or before: from 0.16 a new object's first picture precedes its event message
AFTER_END_S = 1.0  # ...and up to 0.15 the label's best one again right after an object's end
KEPT_S = 600.0  # snapshots and objects older than this are forgotten
KEPT_SNAPSHOTS = 8  # per camera and label

Decoder = Callable[[bytes, str, float], Frame]  # data, camera, captured_at
Key = tuple[str, str]  # Frigate's camera, label


@dataclass
class _Object:
    """One of Frigate's tracked objects, by the times its event messages arrived (``time.monotonic()``)."""

    first: float
    last: float
    ended: float | None = None
    # Since when it has stood still, as its messages said (None: moving). Frigate publishes no picture
    # of a stationary object (0.16+; up to 0.15 none before it moved, but 0.16 pictures a new object at
    # once, so moving is not waited for here). Only the time since we heard it is excluded: Frigate
    # said so no later than that, and a picture from before may still be its.
    still_since: float | None = None

    def about_at(self, when: float) -> bool:
        """Whether the snapshot that arrived at ``when`` could be of this object."""
        return (self.first - SNAPSHOT_LEAD_S <= when and (self.ended is None or when <= self.ended + AFTER_END_S)
                and (self.still_since is None or when < self.still_since))


class FrigateSnapshots:
    def __init__(self, config: AppConfig, decode: Decoder) -> None:
        self._config = config
        self._decode = decode
        self._prefix = config.frigate.topic_prefix
        self._cameras = {c.frigate.camera or c.id for c in config.cameras if c.frigate is not None}
        # newest last: (jpeg, arrived as time.monotonic(), and as time.time() for the frame's time)
        self._snapshots: dict[Key, list[tuple[bytes, float, float]]] = {}
        self._objects: dict[Key, dict[str, _Object]] = {}
        self._changed = threading.Condition()
        self._closed = False
        # With a shared subscription each board hears only its share of the event messages: it cannot
        # tell whose a snapshot is, so every event's comes from the API (check requires api_url).
        self._by_topic = config.mqtt.shared_group is None
        self._unpictured: Callable[[str, str, int], None] = lambda camera, event_id, revision: None

    def on_unpictured(self, retry: Callable[[str, str, int], None]) -> None:
        """``retry(camera, event id, revision)``: the picture for an event's description could not be
        had yet (another object was about, or none came), so its next message may try again
        (ingest.frigate)."""
        self._unpictured = retry

    def close(self) -> None:
        """Stopping: a grab waiting for a snapshot gives up at once."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def handle(self, message: Received) -> None:
        """A snapshot Frigate published (dispatcher thread). A retained one is from before we
        subscribed: no one can tell whose it is, so it is never an event's."""
        rest = message.topic.removeprefix(f"{self._prefix}/").split("/")
        if len(rest) == 3 and rest[0] in self._cameras and message.payload and not message.retain:
            with self._changed:
                kept = self._snapshots.setdefault((rest[0], rest[1]), [])
                kept.append((message.payload, message.received_at, message.wall_time))
                del kept[:-KEPT_SNAPSHOTS]
                self._changed.notify_all()

    def note_event(self, event: FrigateEvent, now: float) -> None:
        """Any of Frigate's event messages, arrived at ``now`` (``time.monotonic()``; the dispatcher
        thread, handed over by ingest.frigate before it considers the event for a description): which
        objects are about, to tell whose a snapshot can be."""
        if event.camera not in self._cameras:
            return
        with self._changed:
            objects = self._objects.setdefault((event.camera, event.label), {})
            seen = objects.setdefault(event.id, _Object(first=now, last=now))
            seen.last = now
            seen.still_since = (seen.still_since or now) if event.stationary else None
            if event.type == "end":
                seen.ended = now
            for gone in [i for i, o in objects.items() if (o.ended or o.last) < now - KEPT_S]:
                del objects[gone]
            self._changed.notify_all()

    def grab(self, camera: CameraConfig, event: FrigateEvent, arrived: float, revision: int = 0) -> Frame:
        """The snapshot of the event whose message arrived at ``arrived`` (``time.monotonic()``: a
        board without a clock battery sets its clock after boot), on a capture thread: may wait or
        fetch. Our clock decides what is recent enough, never Frigate's (the two need not agree).
        ``revision``: which description of the event it is for (0: the first), said when none is had."""
        assert camera.frigate is not None
        if camera.frigate.snapshot == "http" or not self._by_topic:
            return self._fetch(camera, event)
        key = (camera.frigate.camera or camera.id, event.label)
        with self._changed:
            found = self._settled(key, event.id, arrived)
            others = self._others(key, event.id)
        if found is not None:
            return self._decode(found[0], camera.id, found[2])
        if self._config.frigate.api_url is not None:
            return self._fetch(camera, event)
        self._unpictured(camera.id, event.id, revision)  # may come later: its next message tries again
        topic = f"{self._prefix}/{key[0]}/{event.label}/snapshot"
        why = (f"{others} other {event.label} object(s) of {key[0]} were about too, and {topic} does not say whose "
               "picture it carries" if others else f"no snapshot on {topic} within {SNAPSHOT_WAIT_S:g} s of the event")
        raise TriggerError(f"Frigate event {event.id}: {why} (set frigate.api_url to fetch each event's own snapshot "
                           "from Frigate)", code=ErrorCode.NO_FRAME)

    def _settled(self, key: Key, event_id: str, arrived: float) -> tuple[bytes, float, float] | None:
        """The event's own snapshot once it is sure (lock held): one that came up to SNAPSHOT_WAIT_S
        after the event message, and stayed its own for SNAPSHOT_LEAD_S after it came (a new object
        shows its picture up to that long before its own event message). None when none came."""
        if event_id not in self._objects.get(key, {}):  # no message of it came: nothing to wait for
            return None
        while not self._closed:
            now = time.monotonic()
            own = self._own(key, event_id)
            if own is not None and own[1] + SNAPSHOT_LEAD_S <= now:
                return own
            if own is None and now >= arrived + SNAPSHOT_WAIT_S:
                return None
            self._changed.wait((own[1] + SNAPSHOT_LEAD_S if own else arrived + SNAPSHOT_WAIT_S) - now)
        return None

    def _own(self, key: Key, event_id: str) -> tuple[bytes, float, float] | None:
        """The newest snapshot of ``key`` that can only be this event's, as far as is known now."""
        objects = self._objects.get(key, {})
        mine = objects.get(event_id)
        if mine is None:
            return None
        for data, when, wall_time in reversed(self._snapshots.get(key, [])):
            if mine.about_at(when) and not any(
                    other.about_at(when) for other_id, other in objects.items() if other_id != event_id):
                return data, when, wall_time
        return None

    def _others(self, key: Key, event_id: str) -> int:
        """How many other objects of ``key`` could have been pictured since this one appeared."""
        objects = self._objects.get(key, {})
        mine = objects.get(event_id)
        if mine is None:
            return 0
        return sum(1 for other_id, other in objects.items() if other_id != event_id and other.still_since is None
                   and (other.ended is None or other.ended >= mine.first))

    def _fetch(self, camera: CameraConfig, event: FrigateEvent) -> Frame:
        from edge_vlm.frames.sources.http import HttpSnapshotSource  # noqa: PLC0415

        if event.type == "end" and event.has_snapshot is False:
            raise TriggerError(f"Frigate event {event.id} has no snapshot (has_snapshot is false: snapshots are off "
                               "for this camera in Frigate, or the object never moved)", code=ErrorCode.NO_FRAME)
        api = (self._config.frigate.api_url or "").rstrip("/")
        source = HttpSourceConfig(type="http", url=f"{api}/api/events/{quote(event.id, safe='')}/snapshot.jpg")
        limits = self._config.limits
        try:
            return HttpSnapshotSource(camera.id, source, password=None, max_bytes=limits.max_payload_bytes,
                                      max_pixels=limits.max_image_pixels, min_long_side=None).grab()
        except SourceError as exc:
            if exc.status == 404:
                raise TriggerError(f"Frigate event {event.id}: Frigate has no snapshot of it (HTTP 404 from its API)",
                                   code=ErrorCode.NO_FRAME) from None
            raise SourceError(f"Frigate event {event.id}: {exc}", code=exc.code) from None
