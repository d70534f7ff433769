"""The snapshot of a Frigate event: the retained ``<prefix>/<camera>/<label>/snapshot`` Frigate
publishes around the event, or its API's ``/api/events/<id>/snapshot.jpg`` (``frigate.api_url``)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.config.sources import HttpSourceConfig
from edge_vlm.core.errors import ErrorCode, SourceError, TriggerError
from edge_vlm.frames import Frame
from edge_vlm.ingest.frigate import FrigateEvent
from edge_vlm.mqtt.inbox import Received

SNAPSHOT_WAIT_S = 3.0  # Frigate may publish an event's snapshot just after the event itself
SNAPSHOT_LEAD_S = 5.0  # ...or just before: a snapshot that arrived this long before the event is its own

Decoder = Callable[[bytes, str, float], Frame]  # data, camera, captured_at


class FrigateSnapshots:
    def __init__(self, config: AppConfig, decode: Decoder) -> None:
        self._config = config
        self._decode = decode
        self._prefix = config.frigate.topic_prefix
        self._cameras = {c.frigate.camera or c.id for c in config.cameras if c.frigate is not None}
        self._snapshots: dict[tuple[str, str], tuple[bytes, float]] = {}  # (camera, label) -> (jpeg, received)
        self._arrived = threading.Condition()

    def handle(self, message: Received) -> None:
        """A snapshot Frigate published (dispatcher thread)."""
        rest = message.topic.removeprefix(f"{self._prefix}/").split("/")
        if len(rest) == 3 and rest[0] in self._cameras and message.payload:
            with self._arrived:
                # A retained snapshot is from an earlier event: we cannot tell when it was taken.
                self._snapshots[rest[0], rest[1]] = (message.payload, 0.0 if message.retain else message.wall_time)
                self._arrived.notify_all()

    def grab(self, camera: CameraConfig, event: FrigateEvent, arrived: float) -> Frame:
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
            return self._decode(found[0], camera.id, found[1])
        if self._config.frigate.api_url is not None:
            return self._fetch(camera, event)
        topic = f"{self._prefix}/{key[0]}/{event.label}/snapshot"
        raise TriggerError(f"Frigate event {event.id}: no snapshot on {topic} within {SNAPSHOT_WAIT_S:g} s of the "
                           "event (set frigate.api_url to fetch it from Frigate instead)", code=ErrorCode.NO_FRAME)

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
