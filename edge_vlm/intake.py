"""Intake: a received snapshot or trigger becomes a job, or a failure that says what was wrong.

Runs on the dispatcher thread, never on paho's: decoding an image takes milliseconds, and it
overlaps with the backend describing the previous frame on the worker thread.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from paho.mqtt.client import topic_matches_sub

from edge_vlm.backends import Backend
from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.diagnostics import Stats
from edge_vlm.errors import BackendError, ImageError, InputError, TriggerError
from edge_vlm.frames import Frame, decode_image
from edge_vlm.jobs import Failure, Job, new_request_id
from edge_vlm.mqtt.connection import Received
from edge_vlm.mqtt.topics import SNAPSHOT, TRIGGER, Topics
from edge_vlm.scheduler import Scheduler, SchedulerClosed
from edge_vlm.sources.mqtt_snapshot import LatestSnapshot
from edge_vlm.triggers import parse_trigger

logger = logging.getLogger(__name__)


class Intake:
    def __init__(
        self,
        config: AppConfig,
        scheduler: Scheduler,
        report: Callable[[Failure], None],
        stats: Stats,
        backend: Backend,
    ) -> None:
        self._config = config
        self._topics = Topics.from_config(config)
        self._scheduler = scheduler
        self._report = report
        self._stats = stats
        self._backend = backend
        self._sources = {
            c.id: LatestSnapshot(c.id, self._topics.camera(c.id, SNAPSHOT)) for c in config.cameras
        }

    def subscriptions(self) -> list[str]:
        extra = [t for camera in self._config.cameras for t in camera.snapshot_topics]
        return [self._topics.any_camera(SNAPSHOT), self._topics.any_camera(TRIGGER), *dict.fromkeys(extra)]

    def handle(self, message: Received) -> None:
        own = self._topics.camera_of(message.topic, TRIGGER) or self._topics.camera_of(message.topic, SNAPSHOT)
        extra = [c for c in self._config.cameras if any(topic_matches_sub(f, message.topic) for f in c.snapshot_topics)]
        if message.size > len(message.payload):  # paho's thread dropped a payload over the limit
            error = ImageError(f"payload of {message.size} bytes is over the limit of "
                               f"{self._config.limits.max_payload_bytes} (limits.max_payload_bytes)",
                               code="payload_too_large")
            for camera in [own] if own else [c.id for c in extra]:
                self._refuse(camera, error, message)
        elif (camera_id := self._topics.camera_of(message.topic, TRIGGER)) is not None:
            self._trigger(camera_id, message)
        elif (camera_id := self._topics.camera_of(message.topic, SNAPSHOT)) is not None:
            self._own_snapshot(camera_id, message)
        else:
            self._snapshot(extra, message)

    def _refuse(self, camera: str, error: InputError, message: Received, request_id: str | None = None) -> None:
        self._report(Failure(camera, error.code, str(error), request_id or error.request_id, message.topic))

    def _camera(self, camera_id: str) -> CameraConfig:
        camera = self._config.camera(camera_id)
        if camera is None:
            known = ", ".join(c.id for c in self._config.cameras)
            raise TriggerError(f"unknown camera {camera_id!r} (configured: {known})", code="unknown_camera")
        if not camera.enabled:
            raise TriggerError(f"camera {camera_id!r} is disabled in the configuration", code="camera_disabled")
        return camera

    def _trigger(self, camera_id: str, message: Received) -> None:
        if message.retain:
            # A retained trigger would fire again at every start; whoever left it there should know.
            logger.warning("Ignoring a retained trigger on %s: publish triggers without retain", message.topic)
            return
        try:
            request = parse_trigger(message.payload)
        except InputError as error:
            self._refuse(camera_id, error, message)
            return
        request_id = request.id or new_request_id()
        try:
            camera = self._camera(camera_id)
            frame = self._sources[camera.id].grab()
        except InputError as error:
            self._refuse(camera_id, error, message, request_id)
            return
        self._submit(camera, frame, prompt=request.prompt or self._config.prompt_for(camera),
                     request_id=request_id, origin="trigger", message=message, capture_ms=0.0)

    def _own_snapshot(self, camera_id: str, message: Received) -> None:
        try:
            camera = self._camera(camera_id)
        except InputError as error:
            self._refuse(camera_id, error, message)
            return
        self._snapshot([camera], message)

    def _snapshot(self, cameras: list[CameraConfig], message: Received) -> None:
        cameras = [c for c in cameras if c.enabled and (c.accept_retained or not message.retain)]
        if not cameras:
            logger.debug("Skipping snapshot on %s (retained, or no enabled camera takes it)", message.topic)
            return
        start = time.perf_counter()
        try:
            frame = decode_image(
                message.payload, camera=cameras[0].id, captured_at=message.wall_time,
                max_bytes=self._config.limits.max_payload_bytes,
                max_pixels=self._config.limits.max_image_pixels,
                min_long_side=self._backend.min_long_side,
            )
        except InputError as error:
            for camera in cameras:
                self._refuse(camera.id, error, message)
            return
        capture_ms = (time.perf_counter() - start) * 1000
        for camera in cameras:
            camera_frame = dataclasses.replace(frame, camera=camera.id)
            self._sources[camera.id].update(camera_frame)
            self._submit(camera, camera_frame, prompt=self._config.prompt_for(camera),
                         request_id=new_request_id(), origin="snapshot", message=message, capture_ms=capture_ms)

    def _submit(self, camera: CameraConfig, frame: Frame, *, prompt: str, request_id: str, origin: str,
                message: Received, capture_ms: float) -> None:
        start = time.perf_counter()
        try:
            prepared = self._backend.prepare(frame)
        except BackendError as exc:
            self._report(Failure(camera.id, exc.code, str(exc), request_id, message.topic))
            return
        job = Job(camera.id, frame, prepared, prompt, request_id, origin, received_at=message.received_at)
        job.timings_ms["capture"] = round(capture_ms, 2)
        job.timings_ms["preprocess"] = round((time.perf_counter() - start) * 1000, 2)
        try:
            replaced = self._scheduler.submit(job)
        except SchedulerClosed:
            self._report(Failure(camera.id, "cancelled", "the daemon is stopping", request_id, message.topic))
            return
        if replaced is not None:
            self._stats.count("jobs_coalesced")
            logger.debug("%s: job %s replaced the waiting job %s", camera.id, request_id, replaced.request_id)
