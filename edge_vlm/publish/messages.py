"""What a result or a failure looks like on MQTT: pure functions from values to messages."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from edge_vlm.core.contracts import AUTOMATIC, Failure, Origin, Reply
from edge_vlm.core.topics import (
    ATTRIBUTES,
    DESCRIBED_IMAGE,
    DESCRIPTION,
    ERROR,
    EVENT,
    FIELDS,
    IMAGE,
    RESULT,
    STREAM,
    Outbound,
    Topics,
)
from edge_vlm.frames import Frame
from edge_vlm.frames.clip import Clip
from edge_vlm.inference.results import Result
from edge_vlm.ingest.trigger import Trigger
from edge_vlm.schedule.job import Job

# Home Assistant refuses a sensor state longer than 255 characters (core#117861).
HA_STATE_MAX = 255
ELLIPSIS = "…"
# Home Assistant's recorder drops all attributes of a state over 16 KiB; keep well under it.
ATTRIBUTE_TEXT_MAX = 8000


def shorten(text: str, limit: int = HA_STATE_MAX) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, marked with "…"."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS) + 1]
    space = cut.rfind(" ")
    # Cut at the last word boundary unless that throws away more than a fifth of the room.
    cut = cut[:space] if space > limit * 4 // 5 else cut[: limit - len(ELLIPSIS)]
    return cut.rstrip(" ,;:.-") + ELLIPSIS


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="milliseconds")


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class ResultPayload:
    """Everything about a description: the result event, and a request's answer (in this order)."""

    camera: str
    text: str
    description: str  # the text cut for Home Assistant's state
    title: Any
    fields: dict[str, Any] | None
    answers: dict[str, bool | None] | None
    alerts: list[str] | None
    id: str
    prompt: str
    backend: str
    frame_time: str | None  # None: a question without an image
    frame_age_ms: float | None
    described_at: str
    latency_ms: float
    coalesced: int
    origin: Origin
    superseded_ids: list[str]
    timings_ms: dict[str, float]
    image_size: list[int] | None
    details: dict[str, Any]
    npu: dict[str, Any] | None  # the job's NPU work over all its turns (the vlm backend)
    event: dict[str, Any] | None
    clip: dict[str, Any] | None  # a clip's key frames: their times, the span, the grid

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def attributes(self) -> dict[str, Any]:
        """The description sensor's state (``description``) and attributes, in one message so that
        they change together; under Home Assistant's recorder limit."""
        return {"description": self.description, "text": self.text[:ATTRIBUTE_TEXT_MAX], "title": self.title,
                "fields": self.fields, "id": self.id,
                "prompt": self.prompt, "backend": self.backend, "frame_time": self.frame_time,
                "frame_age_ms": self.frame_age_ms, "described_at": self.described_at, "latency_ms": self.latency_ms,
                "coalesced": self.coalesced, "origin": self.origin}

    def event_values(self) -> dict[str, Any]:
        """What a ``described`` event carries: enough for a notification, no more."""
        return {"description": self.description, "text": self.text, "title": self.title, "fields": self.fields,
                "alerts": self.alerts, "latency_ms": self.latency_ms, "frame_time": self.frame_time,
                "superseded_ids": self.superseded_ids}


def result_payload(result: Result, *, latency_ms: float, alerts: list[str] | None = None) -> ResultPayload:
    job = result.job
    text = result.text
    return ResultPayload(
        camera=job.camera, text=text, description=shorten(text) or "(no text)",
        title=(result.fields or {}).get("title"), fields=result.fields, answers=result.answers or None,
        alerts=alerts or None, id=job.request_id, prompt=job.prompt, backend=result.backend,
        frame_time=None if job.frame is None else iso_time(job.frame.captured_at),
        frame_age_ms=None if job.frame is None else round(job.frame_age_ms, 1),
        described_at=iso_time(result.finished_at), latency_ms=round(latency_ms, 1), coalesced=job.coalesced,
        origin=job.origin, superseded_ids=job.superseded_ids, timings_ms=result.timings_ms,
        image_size=None if job.frame is None else list(job.frame.source_size), details=result.description.details,
        npu=result.npu, event=job.event,
        clip=None if job.frame is None or job.frame.clip is None else clip_summary(job.frame.clip))


def clip_summary(clip: Clip) -> dict[str, Any]:
    return {"frames": [iso_time(t) for t in clip.times], "span_s": round(clip.span_s, 2),
            "grid": [clip.columns, clip.rows]}


def result_messages(payload: ResultPayload, topics: Topics) -> list[Outbound]:
    """The description and attributes (retained), the structured fields (retained), the result.
    (The image went out when the job was accepted: ``image_message``.)"""
    camera = payload.camera
    messages = [
        Outbound(topics.camera(camera, DESCRIPTION), payload.description.encode(), retain=True),
        Outbound(topics.camera(camera, ATTRIBUTES), _json(payload.attributes()), retain=True),
    ]
    if payload.fields is not None:
        messages.append(Outbound(topics.camera(camera, FIELDS), _json(payload.fields), retain=True))
    messages.append(Outbound(topics.camera(camera, RESULT), _json(payload.as_dict()), retain=False,
                             asked=payload.origin not in AUTOMATIC))
    return messages


def image_message(job: Job, image: bytes, topics: Topics) -> Outbound:
    return Outbound(topics.camera(job.camera, IMAGE), image, retain=True)


def described_image_message(job: Job, image: bytes, topics: Topics) -> Outbound:
    """The frame of the camera's last description, retained: what a notification of it shows."""
    return Outbound(topics.camera(job.camera, DESCRIBED_IMAGE), image, retain=True)


def event_message(job: Job, event_type: str, topics: Topics, **values: Any) -> Outbound:
    """A step in a description's life, for Home Assistant's event entity (never retained): pending
    at once, then described, failed or superseded, all with the same id."""
    return _step(event_type, topics, camera=job.camera, request_id=job.request_id, origin=job.origin,
                 event=job.event, values=values)


def _step(event_type: str, topics: Topics, *, camera: str, request_id: str | None, origin: Origin | None,
          event: dict[str, Any] | None, values: dict[str, Any], now: float | None = None) -> Outbound:
    payload = {"event_type": event_type, "id": request_id, "camera": camera, "origin": origin,
               "time": iso_time(time.time() if now is None else now), **values, "event": event}
    return Outbound(topics.camera(camera, EVENT), _json(payload), retain=False,
                    asked=origin is not None and origin not in AUTOMATIC)


def reply_message(reply: Reply, payload: ResultPayload | dict[str, Any]) -> Outbound:
    body = payload.as_dict() if isinstance(payload, ResultPayload) else payload
    return Outbound(reply.topic, _json(body), retain=False, correlation=reply.correlation, asked=True)


def failure_payload(failure: Failure, *, now: float | None = None) -> dict[str, Any]:
    return {
        "camera": failure.camera,
        "id": failure.request_id,
        "error": failure.code,
        "message": failure.message,
        "topic": failure.topic,
        "time": iso_time(time.time() if now is None else now),
    }


def failure_message(failure: Failure, topics: Topics, *, now: float | None = None) -> Outbound:
    if failure.reply is not None:
        return reply_message(failure.reply, failure_payload(failure, now=now))
    return Outbound(topics.camera(failure.camera, ERROR), _json(failure_payload(failure, now=now)), retain=False,
                    asked=failure.origin is not None and failure.origin not in AUTOMATIC)


def failure_event(failure: Failure, topics: Topics, *, now: float | None = None) -> Outbound:
    """The ``failed`` step for an input refused before it became a job, on the camera's event
    entity: Home Assistant shows a refused "Describe now" as it shows a failed description."""
    return _step("failed", topics, camera=failure.camera, request_id=failure.request_id, origin=failure.origin,
                 event=None, values={"error": failure.code, "message": failure.message}, now=now)


def skip_message(trigger: Trigger, frame: Frame, reason: str, topics: Topics, *,
                 now: float | None = None) -> Outbound:
    """A result that says the frame was not described, and why (nothing else changes)."""
    payload = {
        "camera": trigger.camera, "id": trigger.request_id, "skipped": True, "reason": reason,
        "origin": trigger.origin, "frame_time": iso_time(frame.captured_at),
        "time": iso_time(time.time() if now is None else now), "event": trigger.event,
    }
    return Outbound(topics.camera(trigger.camera, RESULT), _json(payload), retain=False)


def stream_message(camera: str, connected: bool, topics: Topics) -> Outbound:
    """Whether the camera's stream is connected (retained)."""
    return Outbound(topics.camera(camera, STREAM), b"ON" if connected else b"OFF", retain=True)
