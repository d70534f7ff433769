"""What results and failures look like on MQTT."""

from __future__ import annotations

import json

import numpy as np

from edge_vlm.core.contracts import Failure, Origin, Reply
from edge_vlm.core.errors import ErrorCode
from edge_vlm.core.topics import Topics
from edge_vlm.frames import Frame
from edge_vlm.inference.results import Description, Result
from edge_vlm.mqtt.connection import MqttConnection
from edge_vlm.mqtt.inbox import Inbox
from edge_vlm.publish.messages import (
    HA_STATE_MAX,
    event_message,
    failure_message,
    result_messages,
    result_payload,
    shorten,
)
from edge_vlm.publish.publisher import Publisher
from edge_vlm.schedule.job import Job
from tests.conftest import app_config
from tests.support.broker import free_port

TOPICS = Topics("edge_vlm", "board", "homeassistant")


def test_short_text_is_kept_whole() -> None:
    assert shorten("A person at the door.") == "A person at the door."
    assert shorten("  two\n spaces  ") == "two spaces"


def test_long_text_is_cut_at_a_word_with_an_ellipsis() -> None:
    text = "A delivery driver in a red jacket " * 20
    short = shorten(text)
    assert len(short) <= HA_STATE_MAX
    assert short.endswith("…")
    assert text.startswith(short[:-1])
    assert text[len(short) - 1] == " "  # the cut fell between two words
    assert len(short) > HA_STATE_MAX - 20


def test_one_endless_word_is_cut_hard() -> None:
    short = shorten("x" * 1000)
    assert short == "x" * (HA_STATE_MAX - 1) + "…"


def test_result_messages() -> None:
    frame = Frame("porch", np.zeros((4, 6, 3), np.uint8), (1920, 1080), b"jpeg", "JPEG", 1_700_000_000.0)
    job = Job("porch", frame, frame.pixels, "What is there?", "id-1", Origin.TRIGGER, received_at=0.0,
              event={"source": "frigate", "id": "ev1"}, accepted_wall=1_700_000_000.25)
    job.timings_ms.update(capture=2.0, queued=1.0)
    job.superseded_ids = ["id-0"]
    long_text = "word " * 100
    result = Result(job, Description(long_text, {"analyze": 40.0}, {"people": 2}), "opencv", 1_700_000_001.5)

    description, attributes, event = result_messages(result_payload(result, latency_ms=45.04), TOPICS)

    assert description.topic == "edge_vlm/porch/description" and description.retain
    assert description.payload.decode() == shorten(long_text)
    common = {"title": None, "fields": None, "id": "id-1", "prompt": "What is there?", "backend": "opencv",
              "frame_time": "2023-11-14T22:13:20.000+00:00", "frame_age_ms": 250.0,
              "described_at": "2023-11-14T22:13:21.500+00:00",
              "latency_ms": 45.0, "coalesced": 1, "origin": "trigger"}
    assert attributes.topic == "edge_vlm/porch/attributes" and attributes.retain
    # The sensor's state and attributes come from this one message: they change together.
    assert json.loads(attributes.payload) == {"description": description.payload.decode(),
                                              "text": long_text.strip(), **common}
    assert event.topic == "edge_vlm/porch/result" and not event.retain
    assert json.loads(event.payload) == {
        "camera": "porch", "text": long_text.strip(), "description": shorten(long_text), **common,
        "answers": None, "alerts": None, "superseded_ids": ["id-0"],
        "timings_ms": {"capture": 2.0, "queued": 1.0, "analyze": 40.0},
        "image_size": [1920, 1080], "details": {"people": 2}, "npu": None,
        "event": {"source": "frigate", "id": "ev1"}, "clip": None,
    }


def test_a_result_says_what_all_its_turns_cost_the_npu() -> None:
    """Issue 13, point 6: the description, a retry and the questions, by the runtime's own figures."""
    frame = Frame("porch", np.zeros((4, 6, 3), np.uint8), (6, 4), b"jpeg", "JPEG", 1_700_000_000.0)
    job = Job("porch", frame, frame.pixels, "Describe", "id-3", Origin.TRIGGER, received_at=0.0,
              timings_ms={"capture": 2.0})

    def turn(text: str, encoder: float, prefill: float, decode: float, tokens: tuple[int, int, int]) -> Description:
        passes, prefilled, generated = tokens
        return Description(text, {"encoder": encoder, "prefill": prefill, "decode": decode},
                           {"encoder_passes": passes, "prefill_tokens": prefilled, "generated_tokens": generated})

    first = turn("A courier", 3280.0, 640.0, 2100.0, (1, 240, 35))
    question = turn("Yes.", 0.0, 40.0, 60.0, (0, 12, 1))
    result = Result(job, first, "qwen2-vl-2b", 1_700_000_001.0, answers={"parcel": True},
                    extra_ms={"questions": 110.0}, turns=(first, question))

    assert result.npu == {"turns": 2, "encoder_passes": 1, "encoder_ms": 3280.0, "prefill_ms": 680.0,
                          "decode_ms": 2160.0, "prefill_tokens": 252, "generated_tokens": 36, "seconds": 6.12}
    assert result.timings_ms == {"capture": 2.0, "encoder": 3280.0, "prefill": 680.0, "decode": 2160.0,
                                 "questions": 110.0}
    assert json.loads(result_messages(result_payload(result, latency_ms=6200.0), TOPICS)[-1].payload)["npu"] == \
        result.npu


def test_a_structured_result_publishes_its_fields_and_summary() -> None:
    frame = Frame("porch", np.zeros((4, 6, 3), np.uint8), (6, 4), b"jpeg", "JPEG", 1_700_000_000.0)
    job = Job("porch", frame, frame.pixels, "JSON please", "id-2", Origin.MOTION, received_at=0.0)
    fields = {"title": "Parcel", "summary": "A courier leaves a parcel.", "people": 1}
    answer = '{"title": "Parcel", "summary": "A courier leaves a parcel.", "people": 1}'
    result = Result(job, Description(answer, {"generate": 900.0}), "rkllm", 1_700_000_001.0, fields,
                    {"package": True}, {"questions": 300.0})

    payload = result_payload(result, latency_ms=1234.5, alerts=["package"])
    description, attributes, fields_message, event = result_messages(payload, TOPICS)

    assert description.payload == b"A courier leaves a parcel."
    assert json.loads(attributes.payload)["title"] == "Parcel"
    assert (fields_message.topic, fields_message.retain) == ("edge_vlm/porch/fields", True)
    assert json.loads(fields_message.payload) == fields
    sent = json.loads(event.payload)
    assert (sent["answers"], sent["alerts"], sent["fields"]) == ({"package": True}, ["package"], fields)
    assert sent["timings_ms"] == {"generate": 900.0, "questions": 300.0}


def test_event_messages_share_the_id_and_are_never_retained() -> None:
    frame = Frame("porch", np.zeros((4, 6, 3), np.uint8), (6, 4), b"jpeg", "JPEG", 1_700_000_000.0)
    job = Job("porch", frame, frame.pixels, "?", "id-3", Origin.MOTION, received_at=0.0)
    pending = event_message(job, "pending", TOPICS, image_topic="edge_vlm/porch/image")
    failed = event_message(job, "failed", TOPICS, error="backend_timeout", message="too slow")
    assert pending.topic == failed.topic == "edge_vlm/porch/event"
    assert not pending.retain and not failed.retain
    first, last = json.loads(pending.payload), json.loads(failed.payload)
    assert (first["event_type"], first["id"], first["image_topic"]) == ("pending", "id-3", "edge_vlm/porch/image")
    assert (last["event_type"], last["id"], last["error"]) == ("failed", "id-3", "backend_timeout")


def test_a_reply_carries_the_correlation_data() -> None:
    failure = Failure("", ErrorCode.BAD_IMAGE, "not an image", "q1", "edge_vlm/request", Reply("me/answers", b"\x01c"))
    message = failure_message(failure, TOPICS)
    assert (message.topic, message.retain, message.correlation) == ("me/answers", False, b"\x01c")
    assert json.loads(message.payload)["error"] == "bad_image"


def test_failure_message() -> None:
    message = failure_message(Failure("porch", ErrorCode.BAD_IMAGE, "not a JPEG", "r1", "edge_vlm/porch/snapshot"),
                              TOPICS, now=1_700_000_000.0)
    assert (message.topic, message.retain) == ("edge_vlm/porch/error", False)
    assert json.loads(message.payload) == {
        "camera": "porch", "id": "r1", "error": "bad_image", "message": "not a JPEG",
        "topic": "edge_vlm/porch/snapshot", "time": "2023-11-14T22:13:20.000+00:00",
    }


def test_events_someone_asked_for_are_the_last_the_outbox_drops() -> None:
    # A connection that never connected: every event waits, as while the broker does not acknowledge.
    config = app_config(free_port())
    topics = Topics.from_config(config)
    publisher = Publisher(MqttConnection(config, None, Inbox(10, 10_000), status_topic=topics.status),
                          max_waiting_events=3)
    frame = Frame("cam", np.zeros((2, 2, 3), np.uint8), (2, 2), b"", "JPEG", 0.0)
    jobs = {origin: Job("cam", frame, frame.pixels, "p", origin, Origin(origin), received_at=0.0)
            for origin in ("trigger", "request")}
    snapshots = [Job("cam", frame, frame.pixels, "p", f"s{n}", Origin.SNAPSHOT, received_at=0.0) for n in range(3)]
    for job in [snapshots[0], jobs["trigger"], snapshots[1], jobs["request"], snapshots[2]]:
        publisher.send(event_message(job, "pending", topics))
    kept = [json.loads(m.payload)["id"] for m in publisher._waiting]
    assert kept == ["trigger", "request", "s2"]  # the snapshots' oldest went first
    assert publisher.dropped == 2
