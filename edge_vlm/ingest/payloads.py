"""The payloads of the trigger, request and snapshot topics, checked.

``<base>/<camera>/trigger``: an empty payload asks for a description of the camera's current frame
with its usual prompt; a JSON object may add ``prompt`` or ``profile`` (for this one description)
and ``id`` (echoed in the result, so the requester can find its answer).

``<base>/request`` ("ask anything"): a JSON object with the image (``camera``, base64 ``image`` or
``image_topic``, exactly one), the question (``prompt`` or ``profile``) and an ``id``; the answer goes
to the MQTT 5 response topic, or ``reply_to`` for MQTT 3.1.1 clients (where either may point, and which
image topics may be read, is checked in edge_vlm.ingest.requests).

Any payload over ``limits.max_payload_bytes`` was dropped by paho's thread on arrival (``oversized``).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge_vlm.config.base import ID_PATTERN
from edge_vlm.core.errors import ErrorCode, ImageError, TriggerError
from edge_vlm.mqtt.inbox import Received

MAX_ID_LENGTH = 128
MAX_TRIGGER_BYTES = 16_384
MAX_REQUEST_BYTES = 16_000_000  # a request may carry an image, base64
MAX_REPLY_TO = 1024
MAX_CLIP_S = 60


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str | None = Field(None, min_length=1, max_length=4000, description="The question, this once.")
    profile: str | None = Field(None, pattern=ID_PATTERN, description="A profile to use, this once.")
    id: str | None = Field(None, min_length=1, max_length=MAX_ID_LENGTH, description="Request id.")
    clip: bool | float | None = Field(None, description="Describe what happened in the camera's last seconds "
                                      "(true: its clip.seconds; a number: that many), not only its current frame.")

    @field_validator("clip")
    @classmethod
    def _clip_seconds(cls, value: bool | float | None) -> bool | float | None:
        if not isinstance(value, bool) and value is not None and not 0 < value <= MAX_CLIP_S:
            raise ValueError(f"clip: {value:g} seconds is not between 0 and {MAX_CLIP_S}")
        return value

    @field_validator("id", mode="before")
    @classmethod
    def _number_id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class TriggerRequest(_Payload):
    pass


class AskRequest(_Payload):
    camera: str | None = Field(None, pattern=ID_PATTERN, description="Ask about this camera's current frame.")
    image: str | None = Field(None, min_length=4, description="...or about this image (base64 JPEG or PNG).")
    image_topic: str | None = Field(None, min_length=1, max_length=1024,
                                    description="...or about the retained image on this topic: a camera's snapshot "
                                    "topic or one under mqtt.image_topics.")
    reply_to: str | None = Field(None, min_length=1, max_length=MAX_REPLY_TO,
                                 description="Where to answer (MQTT 3.1.1), under mqtt.reply_topics; MQTT 5 clients "
                                 "set a response topic.")

    @model_validator(mode="after")
    def _one_image(self) -> AskRequest:
        if sum(x is not None for x in (self.camera, self.image, self.image_topic)) != 1:
            raise ValueError("give exactly one of camera, image and image_topic")
        if self.clip and self.camera is None:
            raise ValueError("clip needs a camera: an image brought along has no seconds before it")
        return self


Model = TypeVar("Model", bound=_Payload)


def _request_id_in(data: object) -> str | None:
    """The id of a request that failed validation, so the error can still carry it."""
    if isinstance(data, dict):
        value = data.get("id")
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)[:MAX_ID_LENGTH]
    return None


def _parse(payload: bytes, model: type[Model], what: str, limit: int) -> Model:
    if len(payload) > limit:
        raise TriggerError(f"{what} payload of {len(payload)} bytes is over the limit of {limit}")
    try:
        data: Any = json.loads(payload.decode("utf-8")) if payload.strip() else {}
    except UnicodeDecodeError:
        raise TriggerError(f"{what} payload is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise TriggerError(f"{what} payload is not JSON: {exc.msg} at character {exc.pos}") from None
    except (RecursionError, ValueError) as exc:  # nesting too deep, an integer too long
        raise TriggerError(f"{what} payload refused by the JSON parser: {exc}") from None
    if not isinstance(data, dict):
        raise TriggerError(f"{what} payload must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise TriggerError(f"{what} payload refused: {problems}", request_id=_request_id_in(data)) from None


def parse_trigger(payload: bytes) -> TriggerRequest:
    return _parse(payload, TriggerRequest, "trigger", MAX_TRIGGER_BYTES)


def parse_request(payload: bytes) -> AskRequest:
    return _parse(payload, AskRequest, "request", MAX_REQUEST_BYTES)


def oversized(message: Received, limit: int) -> ImageError | None:
    """The error for a message whose payload paho's thread dropped as over ``limit``, if it was."""
    if message.size <= len(message.payload):
        return None
    return ImageError(f"payload of {message.size} bytes is over the limit of {limit} (limits.max_payload_bytes)",
                      code=ErrorCode.PAYLOAD_TOO_LARGE)
