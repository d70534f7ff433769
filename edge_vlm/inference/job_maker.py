"""A frame the gate admitted becomes a job: its question (the profile asked for, or the one Home
Assistant picked for the camera, filled in), the backend's input made of the frame, and the JPEG
to show it. CPU work, done on the thread that admitted the frame while the NPU is busy."""

from __future__ import annotations

import time
from collections.abc import Mapping

from edge_vlm.camera_state import CameraStates
from edge_vlm.config.automation import FieldSpec, ProfileConfig
from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.core.contracts import Origin
from edge_vlm.core.errors import TriggerError
from edge_vlm.frames import Frame
from edge_vlm.inference.backends import Backend
from edge_vlm.inference.prompts import ANY_JSON_INSTRUCTION, build_prompt, placeholder_values
from edge_vlm.ingest.trigger import Trigger
from edge_vlm.schedule.job import Job


class JobMaker:
    def __init__(self, config: AppConfig, states: CameraStates, backend: Backend) -> None:
        self._config = config
        self._states = states
        self._backend = backend

    def make(self, trigger: Trigger, camera: CameraConfig | None, frame: Frame | None, *, request_id: str,
             capture_ms: float, scene: int | None) -> Job:
        """The job (``frame`` None: a question without an image); InputError (an unknown profile,
        a question without an image for a backend that needs one) or BackendError (the frame will
        not do) if none."""
        profile = self._profile(camera, trigger)
        if frame is None and not self._backend.answers_text:
            raise TriggerError(f"the {self._backend.name} backend answers questions about an image only: send an "
                               "image, or use the NPU backend (vlm) for questions without one")
        started = time.perf_counter()
        prepared = None if frame is None else self._backend.prepare(frame)
        preprocess_ms = (time.perf_counter() - started) * 1000
        state = self._states[camera.id] if camera is not None else None
        clip = frame.clip if frame is not None and frame.clip is not None and frame.clip.grid is not None else None
        values = placeholder_values(camera=camera.display_name if camera else "the image",
                                    previous=state.text if state else None, language=self._config.language,
                                    event=trigger.event, span_s=clip.span_s if clip else None)
        asked = _text_profile(trigger.prompt, trigger.fields) if trigger.prompt else profile
        prompt = build_prompt(asked, values, self._config.language)
        if clip is not None:  # a grid of key frames: say how to read it
            prompt = f"{clip.reading()} {prompt}"
        if trigger.json_object and not asked.structured:
            prompt += "\n\n" + ANY_JSON_INSTRUCTION
        questions = ({rule.name: rule.question for rule in camera.alerts if rule.question is not None}
                     if camera is not None and trigger.origin != Origin.REQUEST else {})
        image = None if trigger.reply is not None or frame is None else frame.jpeg(
            self._config.limits.max_published_image_bytes)
        return Job(trigger.camera, frame, prepared, prompt, request_id, trigger.origin, received_at=trigger.received_at,
                   timings_ms={"capture": round(capture_ms, 2), "preprocess": round(preprocess_ms, 2)},
                   event=trigger.event, superseded_ids=list(trigger.superseded), reply=trigger.reply,
                   scene=scene, fields=dict(asked.fields), retry_prompt=asked.retry_prompt, questions=questions,
                   image=image, max_new_tokens=trigger.max_new_tokens, sampling=trigger.sampling,
                   json_object=trigger.json_object)

    def _profile(self, camera: CameraConfig | None, trigger: Trigger) -> ProfileConfig:
        """The trigger's profile, else Home Assistant's pick for the camera (its custom prompt first)."""
        if trigger.profile is not None:
            if trigger.profile != "default" and trigger.profile not in self._config.profiles:
                raise TriggerError(f"no profile {trigger.profile!r}; configured: {self._config.profile_names}")
            return self._config.profile_for(camera, trigger.profile)
        if camera is None:
            return self._config.profile_for(None)
        state = self._states[camera.id]
        if state.prompt:
            return _text_profile(state.prompt)
        return self._config.profile_for(camera, state.profile)


def _text_profile(prompt: str, fields: Mapping[str, FieldSpec] | None = None) -> ProfileConfig:
    """A prompt given at run time (a trigger's, Home Assistant's text), with the JSON answer its
    asker wants if any: not checked like the configuration's, since braces that are no placeholder
    stay as they are."""
    return ProfileConfig.model_construct(prompt=prompt, fields=dict(fields or {}))
