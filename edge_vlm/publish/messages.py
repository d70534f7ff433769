"""What a result or a failure looks like on MQTT: pure functions from values to messages."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from edge_vlm.jobs import Failure, Job, Reply, Result
from edge_vlm.schedule.scheduler import AUTOMATIC
from edge_vlm.topics import ATTRIBUTES, DESCRIPTION, ERROR, EVENT, FIELDS, IMAGE, RESULT, Outbound, Topics

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


def result_payload(result: Result, *, latency_ms: float, alerts: list[str] | None = None) -> dict[str, Any]:
    """Everything about a description: the result event, and a request's answer."""
    job = result.job
    text = result.text
    return {
        "camera": job.camera,
        "text": text,
        "description": shorten(text) or "(no text)",
        "title": (result.fields or {}).get("title"),
        "fields": result.fields,
        "answers": result.answers or None,
        "alerts": alerts or None,
        "id": job.request_id,
        "prompt": job.prompt,
        "backend": result.backend,
        "frame_time": iso_time(job.frame.captured_at),
        "frame_age_ms": round(job.frame_age_ms, 1),
        "described_at": iso_time(result.finished_at),
        "latency_ms": round(latency_ms, 1),
        "coalesced": job.coalesced,
        "origin": job.origin,
        "superseded_ids": job.superseded_ids,
        "timings_ms": result.timings_ms,
        "image_size": list(job.frame.source_size),
        "details": result.description.details,
        "event": job.event,
    }


ATTRIBUTE_KEYS = ("title", "fields", "id", "prompt", "backend", "frame_time", "frame_age_ms", "described_at",
                  "latency_ms", "coalesced", "origin")


def result_messages(payload: dict[str, Any], topics: Topics) -> list[Outbound]:
    """The description and attributes (retained), the structured fields (retained), the result.
    (The image went out when the job was accepted: ``image_message``.)"""
    camera = payload["camera"]
    attributes = {"text": payload["text"][:ATTRIBUTE_TEXT_MAX], **{k: payload[k] for k in ATTRIBUTE_KEYS}}
    messages = [
        Outbound(topics.camera(camera, DESCRIPTION), payload["description"].encode(), retain=True),
        Outbound(topics.camera(camera, ATTRIBUTES), _json(attributes), retain=True),
    ]
    if payload["fields"] is not None:
        messages.append(Outbound(topics.camera(camera, FIELDS), _json(payload["fields"]), retain=True))
    messages.append(Outbound(topics.camera(camera, RESULT), _json(payload), retain=False,
                             asked=payload["origin"] not in AUTOMATIC))
    return messages


def image_message(job: Job, image: bytes, topics: Topics) -> Outbound:
    return Outbound(topics.camera(job.camera, IMAGE), image, retain=True)


def event_message(job: Job, event_type: str, topics: Topics, **values: Any) -> Outbound:
    """A step in a description's life, for Home Assistant's event entity (never retained): pending
    at once, then described, failed or superseded, all with the same id."""
    payload = {"event_type": event_type, "id": job.request_id, "camera": job.camera, "origin": job.origin,
               "time": iso_time(time.time()), **values, "event": job.event}
    return Outbound(topics.camera(job.camera, EVENT), _json(payload), retain=False,
                    asked=job.origin not in AUTOMATIC)


def reply_message(reply: Reply, payload: dict[str, Any]) -> Outbound:
    return Outbound(reply.topic, _json(payload), retain=False, correlation=reply.correlation, asked=True)


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


def skip_message(job: Job, reason: str, topics: Topics, *, now: float | None = None) -> Outbound:
    """A result that says the frame was not described, and why (nothing else changes)."""
    payload = {
        "camera": job.camera, "id": job.request_id, "skipped": True, "reason": reason, "origin": job.origin,
        "frame_time": iso_time(job.frame.captured_at), "time": iso_time(time.time() if now is None else now),
        "event": job.event,
    }
    return Outbound(topics.camera(job.camera, RESULT), _json(payload), retain=False)
