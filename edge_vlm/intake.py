"""Intake: a snapshot, a trigger or a request becomes a job, or a failure that says what was wrong.

Every trigger (an MQTT trigger, Home Assistant's button, motion, an interval, a Frigate event, a
request) takes one path: ``trigger()`` checks the camera, grabs a frame from its source on the
capture pool (never the dispatcher thread: it may block), and submits a job with its question:
the profile asked for, or the one Home Assistant picked for the camera, filled in.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from paho.mqtt.client import topic_matches_sub

from edge_vlm.config.automation import ProfileConfig
from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.errors import BackendError, ImageError, InputError, TriggerError
from edge_vlm.frames import Frame, decode_image
from edge_vlm.frames.capture import CapturePool
from edge_vlm.frames.sources import Source
from edge_vlm.frames.sources.mqtt_snapshot import LatestSnapshot
from edge_vlm.gate import scene_hash, unchanged
from edge_vlm.inference.backends import Backend
from edge_vlm.inference.prompts import build_prompt, placeholder_values
from edge_vlm.ingest.controls import Controls
from edge_vlm.ingest.requests import IMAGE_REQUESTS, RequestTopics, RetainedImages, read_request
from edge_vlm.ingest.triggers import Trigger, parse_trigger
from edge_vlm.jobs import Failure, Job, Reply, new_request_id
from edge_vlm.mqtt.inbox import Received
from edge_vlm.publish.outcomes import Outcomes
from edge_vlm.schedule.scheduler import AUTOMATIC, REQUEST, Scheduler, SchedulerClosed, SchedulerFull
from edge_vlm.stats import Stats
from edge_vlm.topics import SNAPSHOT, TRIGGER, Topics

logger = logging.getLogger(__name__)

UNASKED = AUTOMATIC | {"frigate"}  # triggers nobody waits for: a camera's cooldown holds them back


class Intake:
    def __init__(self, config: AppConfig, scheduler: Scheduler, outcomes: Outcomes, stats: Stats, *,
                 backend: Backend, sources: dict[str, Source], controls: Controls,
                 questions: Callable[[str], dict[str, str]], images: RetainedImages) -> None:
        self._config = config
        self._topics = Topics.from_config(config)
        self._scheduler = scheduler
        self._outcomes = outcomes
        self._stats = stats
        self._backend = backend
        self._sources = sources
        self._controls = controls
        self._questions = questions
        self.images = images
        self._request_topics = RequestTopics.from_config(config)
        self._capture = CapturePool(1 + sum(not s.instant for s in sources.values()), self._grab_and_submit,
                                    self._not_captured, stats)
        self._described: dict[str, tuple[float, int | None, str]] = {}  # camera -> (when, scene, text)

    def subscriptions(self) -> list[str]:
        extra = [t for camera in self._config.cameras for t in camera.snapshot_topics]
        return [self._topics.any_camera(SNAPSHOT), self._topics.any_camera(TRIGGER), *dict.fromkeys(extra)]

    def close(self) -> None:
        """No more captures: triggers still waiting for one are answered ``cancelled``."""
        self._capture.close()

    def described(self, job: Job, text: str) -> None:
        """``job`` was described: its frame and text are now the camera's last ones."""
        self._described[job.camera] = (time.monotonic(), job.scene, text)

    # MQTT messages (dispatcher thread)

    def handle(self, message: Received) -> None:
        own = self._topics.camera_of(message.topic, TRIGGER) or self._topics.camera_of(message.topic, SNAPSHOT)
        extra = [c for c in self._config.cameras if any(topic_matches_sub(f, message.topic) for f in c.snapshot_topics)]
        if message.topic == self._topics.request:
            self._request(message)
        elif message.size > len(message.payload):  # paho's thread dropped a payload over the limit
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
        self.trigger(Trigger(camera_id, "trigger", request.prompt, request.id, message.topic, message.received_at,
                             profile=request.profile))

    def _request(self, message: Received) -> None:
        if message.retain:  # it would be asked again at every start and reconnect
            logger.warning("Ignoring a retained request on %s: publish requests without retain", message.topic)
            return
        outcome = read_request(message, topics=self._request_topics, images=self.images, decode=self.decode)
        if isinstance(outcome, Failure):
            self._outcomes.refuse(outcome)
        elif outcome.grab is None:
            self.trigger(outcome)
        else:
            self._capture.submit(IMAGE_REQUESTS, outcome)

    def _own_snapshot(self, camera_id: str, message: Received) -> None:
        try:
            camera = self._camera(camera_id)
        except InputError as error:
            if error.code == "camera_disabled":  # a snapshot is no question: nobody waits for an answer
                logger.debug("Skipping snapshot on %s: %s", message.topic, error)
            else:
                self._refuse(camera_id, error, message.topic)
            return
        self._snapshot([camera], message)

    def _snapshot(self, cameras: list[CameraConfig], message: Received) -> None:
        cameras = [c for c in cameras if c.enabled and self._controls.value(c.id, "enabled")
                   and (c.accept_retained or not message.retain)]
        if not cameras:
            logger.debug("Skipping snapshot on %s (retained, or no camera switched on takes it)", message.topic)
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
            snapshot = Trigger(camera.id, "snapshot", topic=message.topic, received_at=message.received_at,
                               request_id=new_request_id())
            self._submit(camera, snapshot, camera_frame, capture_ms)

    def decode(self, data: bytes, camera: str, captured_at: float) -> Frame:
        limits = self._config.limits
        return decode_image(data, camera=camera, captured_at=captured_at, max_bytes=limits.max_payload_bytes,
                            max_pixels=limits.max_image_pixels, min_long_side=self._backend.min_long_side)

    # Triggers (any thread)

    def trigger(self, trigger: Trigger) -> None:
        """Describe the camera's current frame: grab it from its source, then submit a job."""
        trigger = dataclasses.replace(trigger, request_id=trigger.request_id or new_request_id())
        if trigger.origin in AUTOMATIC and not self._controls.settled(trigger.camera):  # e.g. the broker is down
            logger.debug("%s: %s trigger ignored: Home Assistant's settings not read back yet", trigger.camera,
                         trigger.origin)
            return
        try:
            camera = self._camera(trigger.camera)
        except InputError as error:
            if error.code == "camera_disabled" and trigger.origin in UNASKED:  # nobody waits for it
                logger.debug("%s: %s trigger ignored: %s", trigger.camera, trigger.origin, error)
            else:
                self._refuse(trigger.camera, error, trigger.topic, trigger.request_id, trigger.reply)
            return
        if trigger.grab is None and self._sources[camera.id].instant:
            self._grab_and_submit(trigger)
        else:
            self._capture.submit(camera.id, trigger)

    def _grab_and_submit(self, trigger: Trigger) -> None:
        camera = self._config.camera(trigger.camera)
        started = time.perf_counter()
        try:
            frame = (trigger.grab or self._sources[trigger.camera].grab)()
        except InputError as error:
            self._refuse(trigger.camera, error, trigger.topic, trigger.request_id, trigger.reply)
            return
        except Exception:  # a capture thread must report, never die silently
            logger.exception("Grabbing a frame for %s failed", trigger.camera or "a request")
            self._refuse(trigger.camera, InputError("the camera's source failed unexpectedly; see the log",
                                                    code="camera_unavailable"),
                         trigger.topic, trigger.request_id, trigger.reply)
            return
        try:
            self._submit(camera, trigger, frame, (time.perf_counter() - started) * 1000)
        except Exception:  # whoever asked still gets an answer
            logger.exception("Submitting a job for %s failed", trigger.camera or "a request")
            self._refuse(trigger.camera, InputError("unexpected error; see the log", code="internal_error"),
                         trigger.topic, trigger.request_id, trigger.reply)

    def _profile(self, camera: CameraConfig | None, trigger: Trigger) -> ProfileConfig:
        """The trigger's profile, else Home Assistant's pick for the camera (its custom prompt first)."""
        if trigger.profile is not None:
            if trigger.profile != "default" and trigger.profile not in self._config.profiles:
                raise TriggerError(f"no profile {trigger.profile!r}; configured: {self._config.profile_names}")
            return self._config.profile_for(camera, trigger.profile)
        if camera is None:
            return self._config.profile_for(None)
        custom = self._controls.value(camera.id, "prompt")
        if custom:
            return _text_profile(custom)
        return self._config.profile_for(camera, self._controls.value(camera.id, "profile"))

    def _submit(self, camera: CameraConfig | None, trigger: Trigger, frame: Frame, capture_ms: float) -> None:
        request_id = str(trigger.request_id)
        try:
            profile = self._profile(camera, trigger)
            started = time.perf_counter()
            prepared = self._backend.prepare(frame)
        except (InputError, BackendError) as exc:
            self._refuse(trigger.camera, exc, trigger.topic, request_id, trigger.reply)  # type: ignore[arg-type]
            return
        last = self._described.get(trigger.camera)
        values = placeholder_values(camera=camera.display_name if camera else "the image",
                                    previous=last[2] if last else None, language=self._config.language,
                                    event=trigger.event)
        prompt = (build_prompt(_text_profile(trigger.prompt), values, self._config.language)
                  if trigger.prompt else build_prompt(profile, values, self._config.language))
        job = Job(trigger.camera, frame, prepared, prompt, request_id, trigger.origin, received_at=trigger.received_at,
                  event=trigger.event, superseded_ids=list(trigger.superseded), reply=trigger.reply,
                  fields=dict(profile.fields) if not trigger.prompt else {},
                  retry_prompt=profile.retry_prompt,
                  questions=self._questions(trigger.camera) if trigger.origin != REQUEST else {})
        job.timings_ms["capture"] = round(capture_ms, 2)
        job.timings_ms["preprocess"] = round((time.perf_counter() - started) * 1000, 2)
        if camera is not None and trigger.origin in UNASKED and (reason := self._not_worth_it(camera, job, last)):
            self._outcomes.skip(job, reason)
            return
        try:
            replaced = self._scheduler.submit(job)
        except SchedulerClosed:
            self._refuse(trigger.camera, InputError("the daemon is stopping", code="cancelled"), trigger.topic,
                         request_id, trigger.reply)
            return
        except SchedulerFull:
            self._refuse(trigger.camera, InputError("too many requests wait for this camera", code="busy"),
                         trigger.topic, request_id, trigger.reply)
            return
        if replaced is not None:
            self._stats.count("jobs_coalesced")
        self._outcomes.accepted(job, replaced)

    def _not_worth_it(self, camera: CameraConfig, job: Job, last: tuple[float, int | None, str] | None) -> str | None:
        """Why a job that came by itself need not run: the camera's cooldown, or an unchanged scene."""
        cooldown = float(self._controls.value(camera.id, "cooldown"))
        if last is not None and time.monotonic() - last[0] < cooldown:
            return f"within the camera's cooldown of {cooldown:g} s"
        if camera.skip_unchanged and job.origin in AUTOMATIC:
            job.scene = scene_hash(job.frame.pixels)
            if last is not None and last[1] is not None and unchanged(last[1], job.scene, camera.unchanged_distance):
                return "the scene looks the same as the last frame described"
        return None

    def _camera(self, camera_id: str) -> CameraConfig:
        camera = self._config.camera(camera_id)
        if camera is None:
            known = ", ".join(c.id for c in self._config.cameras)
            raise TriggerError(f"unknown camera {camera_id!r} (configured: {known})", code="unknown_camera")
        if not camera.enabled:
            raise TriggerError(f"camera {camera_id!r} is disabled in the configuration", code="camera_disabled")
        if not self._controls.value(camera.id, "enabled"):
            raise TriggerError(f"camera {camera_id!r} is switched off in Home Assistant", code="camera_disabled")
        return camera

    def _not_captured(self, trigger: Trigger, error: InputError) -> None:
        self._refuse(trigger.camera, error, trigger.topic, trigger.request_id, trigger.reply)

    def _refuse(self, camera: str, error: InputError, topic: str | None, request_id: str | None = None,
                reply: Reply | None = None) -> None:
        origin = REQUEST if reply is not None else None
        self._outcomes.refuse(Failure(camera, error.code, str(error), request_id or error.request_id, topic,
                                      reply, origin))


def _text_profile(prompt: str) -> ProfileConfig:
    """A prompt given at run time (a trigger's, Home Assistant's text): not checked like the
    configuration's, since braces that are no placeholder stay as they are."""
    return ProfileConfig.model_construct(prompt=prompt)
