"""The trigger and request topics without a broker: what becomes a trigger, what is refused and
what is ignored; and a service that is stopped before it started."""

from __future__ import annotations

import json

import pytest

from edge_vlm.config.models import AppConfig
from edge_vlm.core.contracts import Failure, Origin
from edge_vlm.core.errors import ErrorCode, InputError
from edge_vlm.core.topics import Topics
from edge_vlm.frames.grab import FrameGrabber
from edge_vlm.frames.sources import create_source
from edge_vlm.frames.sources.retained import RetainedImages
from edge_vlm.ingest.requests import RequestTopics
from edge_vlm.ingest.trigger import Trigger
from edge_vlm.ingest.trigger_topics import TriggerTopics
from edge_vlm.mqtt.inbox import Received
from edge_vlm.service import Service

CONFIG = AppConfig.model_validate({"mqtt": {"port": 1}, "cameras": [{"id": "porch"}]})
TOPICS = Topics.from_config(CONFIG)
LIMIT = CONFIG.limits.max_payload_bytes


def received(topic: str, payload: bytes, *, retain: bool = False, size: int | None = None) -> Received:
    return Received(topic, payload, retain=retain, received_at=0.0, wall_time=0.0,
                    size=len(payload) if size is None else size)


def trigger_topics() -> tuple[TriggerTopics, list[Trigger], list[Failure]]:
    triggers: list[Trigger] = []
    refused: list[Failure] = []
    topics = TriggerTopics(TOPICS, RequestTopics.from_config(CONFIG, TOPICS), LIMIT, submit=triggers.append,
                           refuse=refused.append)
    return topics, triggers, refused


def test_triggers_become_triggers_and_bad_ones_are_refused_or_ignored() -> None:
    topics, triggers, refused = trigger_topics()
    topics.trigger(received("edge_vlm/porch/trigger", b'{"id": "t1", "prompt": "Who?"}'))
    topics.trigger(received("edge_vlm/porch/trigger", b"{not json"))
    topics.trigger(received("edge_vlm/porch/trigger", b"", size=LIMIT + 1))  # dropped by paho's thread
    topics.trigger(received("edge_vlm/porch/trigger", b"", retain=True, size=LIMIT + 1))  # too large first
    topics.trigger(received("edge_vlm/porch/trigger", b"{}", retain=True))  # would fire at every start
    topics.trigger(received("edge_vlm//trigger", b"{}"))  # no camera to answer for
    assert [(t.camera, t.origin, t.request_id, t.prompt) for t in triggers] == [
        ("porch", Origin.TRIGGER, "t1", "Who?")]
    assert [(f.camera, f.code) for f in refused] == [("porch", ErrorCode.BAD_TRIGGER),
                                                     ("porch", ErrorCode.PAYLOAD_TOO_LARGE),
                                                     ("porch", ErrorCode.PAYLOAD_TOO_LARGE)]


def test_a_request_keeps_its_base64_image_for_the_capture_thread_to_decode() -> None:
    topics, triggers, refused = trigger_topics()
    payload = json.dumps({"image": "not base64!", "prompt": "What?", "reply_to": "edge_vlm/response/me"})
    topics.request(received("edge_vlm/request", payload.encode()))
    assert refused == []
    request = triggers[0]
    assert (request.camera, request.brings_image, request.request_id is not None) == ("", True, True)
    grabber = FrameGrabber(CONFIG, {c.id: create_source(c, CONFIG, {}) for c in CONFIG.cameras},
                           retained=RetainedImages(print, print), min_long_side=None)
    with pytest.raises(InputError, match=r"^image is not valid base64$") as error:
        grabber.grab(request)
    assert error.value.code == ErrorCode.BAD_IMAGE


def test_a_service_stopped_before_it_started_stops_at_once() -> None:
    service = Service(CONFIG, password=None)
    service.stop(grace=1)
    assert service.stopped
