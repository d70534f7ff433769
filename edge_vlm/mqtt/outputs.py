"""What a result or a failure looks like on MQTT: pure functions from values to messages."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from edge_vlm.jobs import Failure, Job, Result
from edge_vlm.mqtt.topics import ATTRIBUTES, DESCRIPTION, ERROR, IMAGE, RESULT, Outbound, Topics

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


def result_messages(
    result: Result, topics: Topics, *, latency_ms: float, image: bytes,
) -> list[Outbound]:
    """The description (retained), its attributes (retained), the result event and the image."""
    job, description = result.job, result.description
    text = description.text.strip()
    short = shorten(text) or "(no text)"
    common = {
        "id": job.request_id,
        "prompt": job.prompt,
        "backend": result.backend,
        "frame_time": iso_time(job.frame.captured_at),
        "frame_age_ms": round(job.frame_age_ms, 1),
        "described_at": iso_time(result.finished_at),
        "latency_ms": round(latency_ms, 1),
        "coalesced": job.coalesced,
    }
    attributes = {"text": text[:ATTRIBUTE_TEXT_MAX], **common}
    event = {
        "camera": job.camera,
        "text": text,
        "description": short,
        **common,
        "origin": job.origin,
        "superseded_ids": job.superseded_ids,
        "timings_ms": result.timings_ms,
        "image_size": list(job.frame.source_size),
        "details": description.details,
        "event": job.event,
    }
    camera = job.camera
    return [
        Outbound(topics.camera(camera, IMAGE), image, retain=True),
        Outbound(topics.camera(camera, DESCRIPTION), short.encode(), retain=True),
        Outbound(topics.camera(camera, ATTRIBUTES), _json(attributes), retain=True),
        Outbound(topics.camera(camera, RESULT), _json(event), retain=False),
    ]


def failure_message(failure: Failure, topics: Topics, *, now: float | None = None) -> Outbound:
    payload = {
        "camera": failure.camera,
        "id": failure.request_id,
        "error": failure.code,
        "message": failure.message,
        "topic": failure.topic,
        "time": iso_time(time.time() if now is None else now),
    }
    return Outbound(topics.camera(failure.camera, ERROR), _json(payload), retain=False)


def skip_message(job: Job, reason: str, topics: Topics, *, now: float | None = None) -> Outbound:
    """A result that says the frame was not described, and why (nothing else changes)."""
    payload = {
        "camera": job.camera, "id": job.request_id, "skipped": True, "reason": reason, "origin": job.origin,
        "frame_time": iso_time(job.frame.captured_at), "time": iso_time(time.time() if now is None else now),
        "event": job.event,
    }
    return Outbound(topics.camera(job.camera, RESULT), _json(payload), retain=False)
