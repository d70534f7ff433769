"""Intake: a snapshot or a trigger becomes a job, or a failure that says what was wrong.

Every trigger (an MQTT trigger, Home Assistant's button, motion, an interval, a Frigate event)
takes one path: ``trigger()`` checks the camera, grabs a frame from the camera's source, and
submits a job. Grabbing may block (an HTTP request, an RTSP connection), so it happens on a small
capture pool, never on the dispatcher thread; snapshots that arrive over MQTT are decoded on the
dispatcher, overlapping with the backend describing the previous frame.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from paho.mqtt.client import topic_matches_sub

from edge_vlm.backends import Backend
from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.diagnostics import Stats
from edge_vlm.errors import BackendError, ImageError, InputError, TriggerError
from edge_vlm.frames import Frame, decode_image
from edge_vlm.jobs import Failure, Job, new_request_id
from edge_vlm.mqtt.connection import Received
from edge_vlm.mqtt.topics import SNAPSHOT, TRIGGER, Topics
from edge_vlm.scenes import scene_hash, unchanged
from edge_vlm.scheduler import AUTOMATIC, Scheduler, SchedulerClosed
from edge_vlm.sources import Source
from edge_vlm.sources.mqtt_snapshot import LatestSnapshot
from edge_vlm.triggers import parse_trigger

logger = logging.getLogger(__name__)

MAX_CAPTURE_THREADS = 16  # one per camera whose frames take time to get (rtsp, http), up to this


class Outcomes(Protocol):
    def refuse(self, failure: Failure) -> None: ...

    def skip(self, job: Job, reason: str) -> None: ...


@dataclass(frozen=True)
class Trigger:
    """A request to describe a camera's current frame."""

    camera: str
    origin: str  # trigger, motion, interval, frigate
    prompt: str | None = None  # None: the camera's prompt
    request_id: str | None = None
    topic: str | None = None  # where it came from, for error messages
    received_at: float = field(default_factory=time.monotonic)
    event: dict[str, Any] | None = None  # what started it (a Frigate event), published with the result
    grab: Callable[[], Frame] | None = None  # instead of the camera's source (an event's snapshot)
    superseded: tuple[str, ...] = ()  # triggers this one replaced while they waited for a frame


class Intake:
    def __init__(self, config: AppConfig, scheduler: Scheduler, outcomes: Outcomes, stats: Stats, *,
                 backend: Backend, sources: dict[str, Source]) -> None:
        self._config = config
        self._topics = Topics.from_config(config)
        self._scheduler = scheduler
        self._outcomes = outcomes
        self._stats = stats
        self._backend = backend
        self._sources = sources
        threads = min(MAX_CAPTURE_THREADS, max(1, sum(not s.instant for s in sources.values())))
        self._capture = ThreadPoolExecutor(threads, thread_name_prefix="edge_vlm-capture")
        # One capture at a time per camera, and at most one trigger waiting for it (latest wins).
        self._waiting: dict[str, Trigger] = {}
        self._capturing: set[str] = set()
        self._capture_lock = threading.Lock()
        self._closed = False
        self._described: dict[str, int] = {}  # camera -> scene hash of its last described frame

    def subscriptions(self) -> list[str]:
        extra = [t for camera in self._config.cameras for t in camera.snapshot_topics]
        return [self._topics.any_camera(SNAPSHOT), self._topics.any_camera(TRIGGER), *dict.fromkeys(extra)]

    def close(self) -> None:
        """No more captures: triggers still waiting for one are answered ``cancelled``."""
        with self._capture_lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting.values()), {}
        for trigger in waiting:
            self._cancel(trigger)
        self._capture.shutdown(wait=True)

    def _cancel(self, trigger: Trigger) -> None:
        self._outcomes.refuse(Failure(trigger.camera, "cancelled", "the daemon is stopping",
                                      trigger.request_id, trigger.topic))

    def described(self, job: Job) -> None:
        """``job``'s frame is now the camera's last described one (for skipping unchanged scenes)."""
        if job.scene is not None:
            self._described[job.camera] = job.scene

    # MQTT messages (dispatcher thread)

    def handle(self, message: Received) -> None:
        own = self._topics.camera_of(message.topic, TRIGGER) or self._topics.camera_of(message.topic, SNAPSHOT)
        extra = [c for c in self._config.cameras if any(topic_matches_sub(f, message.topic) for f in c.snapshot_topics)]
        if message.size > len(message.payload):  # paho's thread dropped a payload over the limit
            error = ImageError(f"payload of {message.size} bytes is over the limit of "
                               f"{self._config.limits.max_payload_bytes} (limits.max_payload_bytes)",
                               code="payload_too_large")
            for camera in [own] if own else [c.id for c in extra]:
                self._refuse(camera, error, message.topic)
        elif (camera_id := self._topics.camera_of(message.topic, TRIGGER)) is not None:
            self._mqtt_trigger(camera_id, message)
        elif (camera_id := self._topics.camera_of(message.topic, SNAPSHOT)) is not None:
            self._own_snapshot(camera_id, message)
        else:
            self._snapshot(extra, message)

    def _mqtt_trigger(self, camera_id: str, message: Received) -> None:
        if message.retain:
            # A retained trigger would fire again at every start; whoever left it there should know.
            logger.warning("Ignoring a retained trigger on %s: publish triggers without retain", message.topic)
            return
        try:
            request = parse_trigger(message.payload)
        except InputError as error:
            self._refuse(camera_id, error, message.topic)
            return
        self.trigger(Trigger(camera_id, "trigger", request.prompt, request.id, message.topic, message.received_at))

    def _own_snapshot(self, camera_id: str, message: Received) -> None:
        try:
            camera = self._camera(camera_id)
        except InputError as error:
            self._refuse(camera_id, error, message.topic)
            return
        self._snapshot([camera], message)

    def _snapshot(self, cameras: list[CameraConfig], message: Received) -> None:
        cameras = [c for c in cameras if c.enabled and (c.accept_retained or not message.retain)]
        if not cameras:
            logger.debug("Skipping snapshot on %s (retained, or no enabled camera takes it)", message.topic)
            return
        started = time.perf_counter()
        try:
            frame = self.decode(message.payload, cameras[0].id, message.wall_time)
        except InputError as error:
            for camera in cameras:
                self._refuse(camera.id, error, message.topic)
            return
        capture_ms = (time.perf_counter() - started) * 1000
        for camera in cameras:
            camera_frame = dataclasses.replace(frame, camera=camera.id)
            source = self._sources[camera.id]
            if isinstance(source, LatestSnapshot):
                source.update(camera_frame)
            snapshot = Trigger(camera.id, "snapshot", topic=message.topic, received_at=message.received_at)
            self._submit(camera, snapshot, camera_frame, capture_ms)

    def decode(self, data: bytes, camera: str, captured_at: float) -> Frame:
        limits = self._config.limits
        return decode_image(data, camera=camera, captured_at=captured_at, max_bytes=limits.max_payload_bytes,
                            max_pixels=limits.max_image_pixels, min_long_side=self._backend.min_long_side)

    # Triggers (any thread)

    def trigger(self, trigger: Trigger) -> None:
        """Describe the camera's current frame: grab it from its source, then submit a job."""
        trigger = dataclasses.replace(trigger, request_id=trigger.request_id or new_request_id())
        try:
            camera = self._camera(trigger.camera)
        except InputError as error:
            self._refuse(trigger.camera, error, trigger.topic, trigger.request_id)
            return
        source = self._sources[camera.id]
        if trigger.grab is None and source.instant:
            self._grab_and_submit(camera, trigger, source.grab)
            return
        with self._capture_lock:
            start = False if self._closed else self._wait_for_capture(camera.id, trigger)
        if self._closed:
            self._cancel(trigger)
        elif start:
            self._capture.submit(self._capture_loop, camera)

    def _wait_for_capture(self, camera: str, trigger: Trigger) -> bool:
        """Put ``trigger`` in the camera's capture slot; True when no capture is running for it."""
        waiting = self._waiting.get(camera)
        if waiting is not None and trigger.origin in AUTOMATIC and waiting.origin not in AUTOMATIC:
            self._stats.count("jobs_coalesced")  # the trigger someone asked for will describe it
            return False
        if waiting is not None:
            self._stats.count("jobs_coalesced")
            trigger = dataclasses.replace(trigger, superseded=(*waiting.superseded, str(waiting.request_id)))
        self._waiting[camera] = trigger
        if camera in self._capturing:
            return False
        self._capturing.add(camera)
        return True

    def _capture_loop(self, camera: CameraConfig) -> None:
        """Serve the camera's capture slot until it is empty (runs on a capture thread)."""
        while True:
            with self._capture_lock:
                trigger = self._waiting.pop(camera.id, None)
                if trigger is None:
                    self._capturing.discard(camera.id)
                    return
            self._grab_and_submit(camera, trigger, trigger.grab or self._sources[camera.id].grab)

    def _grab_and_submit(self, camera: CameraConfig, trigger: Trigger, grab: Callable[[], Frame]) -> None:
        started = time.perf_counter()
        try:
            frame = grab()
        except InputError as error:
            self._refuse(camera.id, error, trigger.topic, trigger.request_id)
            return
        except Exception:  # a capture thread must report, never die silently
            logger.exception("Grabbing a frame from camera %s failed", camera.id)
            self._refuse(camera.id, InputError("the camera's source failed unexpectedly; see the log",
                                               code="camera_unavailable"), trigger.topic, trigger.request_id)
            return
        self._submit(camera, trigger, frame, (time.perf_counter() - started) * 1000)

    def _submit(self, camera: CameraConfig, trigger: Trigger, frame: Frame, capture_ms: float) -> None:
        request_id = trigger.request_id or new_request_id()
        prompt = trigger.prompt or self._config.prompt_for(camera)
        superseded = list(trigger.superseded)
        started = time.perf_counter()
        try:
            prepared = self._backend.prepare(frame)
        except BackendError as exc:
            self._outcomes.refuse(Failure(camera.id, exc.code, str(exc), request_id, trigger.topic))
            return
        job = Job(camera.id, frame, prepared, prompt, request_id, trigger.origin, received_at=trigger.received_at,
                  event=trigger.event, superseded_ids=superseded)
        job.timings_ms["capture"] = round(capture_ms, 2)
        job.timings_ms["preprocess"] = round((time.perf_counter() - started) * 1000, 2)
        if camera.skip_unchanged:
            job.scene = scene_hash(frame.pixels)
            last = self._described.get(camera.id)
            same = last is not None and unchanged(last, job.scene, camera.unchanged_distance)
            if trigger.origin in AUTOMATIC and same:
                self._outcomes.skip(job, "the scene looks the same as the last frame described")
                return
        try:
            replaced = self._scheduler.submit(job)
        except SchedulerClosed:
            self._outcomes.refuse(Failure(camera.id, "cancelled", "the daemon is stopping", request_id, trigger.topic))
            return
        if replaced is not None:
            self._stats.count("jobs_coalesced")
            logger.debug("%s: job %s will not run (coalesced)", camera.id, replaced.request_id)

    def _camera(self, camera_id: str) -> CameraConfig:
        camera = self._config.camera(camera_id)
        if camera is None:
            known = ", ".join(c.id for c in self._config.cameras)
            raise TriggerError(f"unknown camera {camera_id!r} (configured: {known})", code="unknown_camera")
        if not camera.enabled:
            raise TriggerError(f"camera {camera_id!r} is disabled in the configuration", code="camera_disabled")
        return camera

    def _refuse(self, camera: str, error: InputError, topic: str | None, request_id: str | None = None) -> None:
        self._outcomes.refuse(Failure(camera, error.code, str(error), request_id or error.request_id, topic))
