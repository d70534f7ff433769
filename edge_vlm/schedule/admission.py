"""Admission: a trigger or a snapshot becomes a job on the scheduler, or a refusal that says why.

Every trigger (an MQTT trigger, Home Assistant's button, motion, an interval, a Frigate event, a
request) takes one path: the gate checks its camera, its frame is grabbed (on the capture pool
unless the source has it in memory: it may block), the gate checks the frame, and only then is
the job made (its prompt, the backend's input) and queued. A snapshot is a frame already in hand:
it is decoded once, for every camera that takes it, and goes through the same gate.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Protocol

from paho.mqtt.client import topic_matches_sub

from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.core.contracts import AUTOMATIC, UNASKED, Failure, Origin, new_request_id
from edge_vlm.core.errors import BackendError, ErrorCode, InputError
from edge_vlm.core.stats import Stats
from edge_vlm.core.topics import SNAPSHOT, Topics
from edge_vlm.frames import Frame
from edge_vlm.frames.capture import CapturePool
from edge_vlm.frames.grab import FrameGrabber
from edge_vlm.gate import Gate
from edge_vlm.ingest.payloads import oversized
from edge_vlm.ingest.trigger import IMAGE_REQUESTS, Trigger
from edge_vlm.mqtt.inbox import Received
from edge_vlm.schedule.job import Job
from edge_vlm.schedule.scheduler import Scheduler

logger = logging.getLogger(__name__)


class MakeJob(Protocol):
    def __call__(self, trigger: Trigger, camera: CameraConfig | None, frame: Frame | None, *, request_id: str,
                 capture_ms: float, scene: int | None) -> Job: ...


class NotAdmitted(Protocol):
    """Where what does not become a job is said: refused or skipped (edge_vlm.publish.outcomes)."""

    def refuse(self, failure: Failure, *, held: bool = False) -> None:
        """``held``: a request's refusal, answered after the camera's earlier requests."""
        ...

    def skip(self, trigger: Trigger, frame: Frame, reason: str) -> None: ...


class Admission:
    def __init__(self, config: AppConfig, topics: Topics, gate: Gate, grabber: FrameGrabber, *, scheduler: Scheduler,
                 stats: Stats, make_job: MakeJob, not_admitted: NotAdmitted) -> None:
        self._config = config
        self._topics = topics
        self._gate = gate
        self._grabber = grabber
        self._scheduler = scheduler
        self._make_job = make_job
        self._not_admitted = not_admitted
        # A thread for each source whose grab may block, and one for requests that bring their own image.
        self._capture = CapturePool(1 + grabber.blocking_sources, self._grab_and_admit, self._not_captured, stats)

    def close(self) -> None:
        """No more captures: triggers still waiting for one are answered ``cancelled``."""
        self._capture.close()

    # Triggers (any thread)

    def submit(self, trigger: Trigger) -> None:
        """Describe the trigger's frame: grab it (on the capture pool if that may block), then admit it."""
        trigger = dataclasses.replace(trigger, request_id=trigger.request_id or new_request_id())
        if trigger.no_image:  # a question without an image: no camera, nothing to grab
            self._ask_without_image(trigger)
            return
        if trigger.brings_image:  # a request's own image: no camera to check
            self._capture.submit(IMAGE_REQUESTS, trigger)
            return
        if trigger.origin in AUTOMATIC and not self._gate.settled(trigger.camera):  # e.g. the broker is down
            logger.debug("%s: %s trigger ignored: Home Assistant's settings not read back yet", trigger.camera,
                         trigger.origin)
            return
        try:
            self._gate.camera(trigger.camera)
        except InputError as error:
            if error.code == ErrorCode.CAMERA_DISABLED and trigger.origin in UNASKED:  # nobody waits for it
                logger.debug("%s: %s trigger ignored: %s", trigger.camera, trigger.origin, error)
            else:
                self._refuse(trigger, error)
            return
        if self._grabber.instant(trigger):
            self._grab_and_admit(trigger)
        else:
            self._capture.submit(trigger.camera, trigger)

    def _grab_and_admit(self, trigger: Trigger) -> None:
        started = time.perf_counter()
        try:
            frame = self._grabber.grab(trigger)
        except InputError as error:
            self._refuse(trigger, error)
            return
        except Exception:  # a capture thread must report, never die silently
            logger.exception("Grabbing a frame for %s failed", trigger.camera or "a request")
            self._refuse(trigger, InputError("the camera's source failed unexpectedly; see the log",
                                             code=ErrorCode.CAMERA_UNAVAILABLE))
            return
        try:
            self.admit(trigger, self._config.camera(trigger.camera), frame, (time.perf_counter() - started) * 1000)
        except Exception:  # whoever asked still gets an answer
            logger.exception("Submitting a job for %s failed", trigger.camera or "a request")
            self._refuse(trigger, InputError("unexpected error; see the log", code=ErrorCode.INTERNAL_ERROR))

    def _ask_without_image(self, trigger: Trigger) -> None:
        """The language model alone (the HTTP API's plain chat): no gate, a job at once."""
        try:
            self._scheduler.submit(self._make_job(trigger, None, None, request_id=str(trigger.request_id),
                                                  capture_ms=0.0, scene=None))
        except (InputError, BackendError) as error:
            self._refuse(trigger, error)
        except Exception:  # whoever asked still gets an answer
            logger.exception("Submitting a question without an image failed")
            self._refuse(trigger, InputError("unexpected error; see the log", code=ErrorCode.INTERNAL_ERROR))

    def _not_captured(self, trigger: Trigger, error: InputError) -> None:
        self._refuse(trigger, error)

    # Snapshots (dispatcher thread)

    def own_snapshot(self, message: Received) -> None:
        """An image on ``<base>/<camera>/snapshot``."""
        camera_id = self._topics.camera_of(message.topic, SNAPSHOT)
        if camera_id is None:  # <base>//snapshot: no camera to describe it for
            logger.debug("Ignoring a snapshot on %s: no camera in the topic", message.topic)
            return
        if self._too_large(message, [camera_id]):
            return
        try:
            camera = self._gate.camera(camera_id)
        except InputError as error:
            if error.code == ErrorCode.CAMERA_DISABLED:  # a snapshot is no question: nobody waits for an answer
                logger.debug("Skipping snapshot on %s: %s", message.topic, error)
            else:
                self._refuse_message(camera_id, message, error)
            return
        self._decode_and_admit([camera], message)

    def snapshot(self, message: Received) -> None:
        """An image on a topic of some cameras' ``snapshot_topics``."""
        cameras = [c for c in self._config.cameras
                   if any(topic_matches_sub(f, message.topic) for f in c.snapshot_topics)]
        if not self._too_large(message, [c.id for c in cameras]):
            self._decode_and_admit([c for c in cameras if self._switched_on(c)], message)

    def _too_large(self, message: Received, cameras: list[str]) -> bool:
        if (error := oversized(message, self._config.limits.max_payload_bytes)) is None:
            return False
        for camera in cameras:
            self._refuse_message(camera, message, error)
        return True

    def _switched_on(self, camera: CameraConfig) -> bool:
        try:
            self._gate.camera(camera.id)
        except InputError:
            return False
        return True

    def _decode_and_admit(self, cameras: list[CameraConfig], message: Received) -> None:
        """Decode once, for every camera (switched on) that takes the snapshot."""
        cameras = [c for c in cameras if c.accept_retained or not message.retain]
        if not cameras:
            logger.debug("Skipping snapshot on %s (retained, or no camera switched on takes it)", message.topic)
            return
        started = time.perf_counter()
        try:
            frame = self._grabber.decode(message.payload, cameras[0].id, message.wall_time)
        except InputError as error:
            for camera in cameras:
                self._refuse_message(camera.id, message, error)
            return
        capture_ms = (time.perf_counter() - started) * 1000
        for camera in cameras:
            camera_frame = dataclasses.replace(frame, camera=camera.id)
            self._grabber.arrived(camera_frame)
            if not camera.describe_snapshots:  # kept as its latest frame (and for clips) only
                continue
            trigger = Trigger(camera.id, Origin.SNAPSHOT, topic=message.topic, received_at=message.received_at,
                              wall_time=message.wall_time, request_id=new_request_id())
            self.admit(trigger, camera, camera_frame, capture_ms)

    # A frame in hand (any thread)

    def admit(self, trigger: Trigger, camera: CameraConfig | None, frame: Frame, capture_ms: float) -> None:
        """The gate, then the job made and queued; or a refusal or a skip that says why."""
        request_id = str(trigger.request_id)
        revises = request_id if trigger.revision else None
        verdict = None if camera is None else self._gate.frame(camera, trigger.origin, frame, revises=revises)
        if verdict is not None and verdict.skip is not None:
            self._not_admitted.skip(trigger, frame, verdict.skip)
            return
        try:
            job = self._make_job(trigger, camera, frame, request_id=request_id, capture_ms=capture_ms,
                                 scene=verdict.scene if verdict else None)
            self._scheduler.submit(job)
        except (InputError, BackendError) as error:
            self._refuse(trigger, error)
            return
        if camera is not None and trigger.origin == Origin.FRIGATE:
            self._gate.admitted(camera.id, request_id)

    def refuse(self, failure: Failure) -> None:
        """An input that will not become a job; a request's refusal is held until the camera's
        earlier requests are answered."""
        # An MQTT request's refusal waits for the camera's earlier requests; an HTTP client's goes at
        # once (its asker waits on a connection of its own: no order to keep with the others').
        held = failure.reply is not None and failure.reply.answer is None and self._scheduler.hold(failure)
        self._not_admitted.refuse(failure, held=held)

    def _refuse(self, trigger: Trigger, error: InputError | BackendError) -> None:
        origin = Origin.REQUEST if trigger.reply is not None else trigger.origin
        request_id = trigger.request_id or (error.request_id if isinstance(error, InputError) else None)
        self.refuse(Failure(trigger.camera, error.code, str(error), request_id, trigger.topic, trigger.reply, origin))

    def _refuse_message(self, camera: str, message: Received, error: InputError) -> None:
        self.refuse(Failure(camera, error.code, str(error), error.request_id, message.topic, origin=Origin.SNAPSHOT))

