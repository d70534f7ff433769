"""What becomes of each job and input on MQTT, in order, without a broker (a fake connection)."""

from __future__ import annotations

import json
import threading

import numpy as np

from edge_vlm.config.models import AppConfig
from edge_vlm.core.contracts import Failure, Origin, Reply
from edge_vlm.core.errors import ErrorCode
from edge_vlm.core.stats import Stats
from edge_vlm.core.topics import Topics
from edge_vlm.frames import Frame
from edge_vlm.inference.results import Description, Result
from edge_vlm.publish.alerts import Alerts
from edge_vlm.publish.outcomes import Outcomes
from edge_vlm.publish.publisher import Publisher
from edge_vlm.schedule.job import Job
from tests.support.fake_connection import FakeConnection

CONFIG = AppConfig.model_validate({"cameras": [{"id": "porch", "alerts": [{"name": "cat", "keywords": ["cat"]}]}]})
TOPICS = Topics.from_config(CONFIG)
FRAME = Frame("porch", np.zeros((2, 2, 3), np.uint8), (2, 2), b"jpeg", "JPEG", 1_700_000_000.0)


def job(request_id: str, origin: Origin = Origin.SNAPSHOT, reply: Reply | None = None) -> Job:
    return Job("porch", FRAME, FRAME.pixels, "What is there?", request_id, origin, received_at=0.0, reply=reply,
               image=None if reply else FRAME.encoded, timings_ms={"capture": 1.0, "preprocess": 2.0})


def outcomes() -> tuple[FakeConnection, Outcomes, Stats, threading.Event]:
    connection = FakeConnection()
    publisher = Publisher(connection, 10)
    stats, due = Stats("test"), threading.Event()
    outcome = Outcomes(TOPICS, publisher, stats, Alerts(CONFIG, TOPICS, publisher), cameras=["porch"],
                       counters_changed=due.set)
    return connection, outcome, stats, due


def sent(connection: FakeConnection) -> list[tuple[str, str]]:
    """(topic leaf, event_type or payload) of each message published."""
    out = []
    for message in connection.published:
        leaf = message.topic.removeprefix(f"{CONFIG.base_topic}/porch/")
        body = json.loads(message.payload) if message.payload.startswith(b"{") else message.payload.decode()
        out.append((leaf, body.get("event_type", "") if isinstance(body, dict) else body))
    return out


def test_a_job_is_pending_with_its_image_then_described_with_its_alerts() -> None:
    connection, outcome, stats, due = outcomes()
    first = job("j1")
    outcome.accepted(first, None)
    outcome.described(first, Result(first, Description("a cat on the step", {"analyze": 5.0}), "opencv", 0.0,
                                    queued_ms=3.0))
    # The described frame on its own entity, the description, then the alerts it fired.
    assert sent(connection) == [("image", "jpeg"), ("event", "pending"), ("described_image", "jpeg"),
                                ("description", "a cat on the step"), ("attributes", ""), ("result", ""),
                                ("event", "described"), ("alert/cat", ""), ("alerts", "cat")]
    result = json.loads(connection.on(TOPICS.camera("porch", "result"))[0])
    assert (result["alerts"], result["origin"]) == (["cat"], "snapshot")
    assert list(result["timings_ms"]) == ["capture", "preprocess", "queued", "analyze"]
    assert stats.values()["jobs_done"] == 1 and due.is_set()


def test_a_replaced_job_is_superseded_and_the_later_frame_is_not_shown_twice() -> None:
    connection, outcome, _, _ = outcomes()
    older, newer = job("j1"), job("j2")
    outcome.accepted(older, None)
    newer.superseded_ids, older.superseded_by = ["j1"], "j2"
    outcome.accepted(newer, older)
    outcome.described(newer, Result(newer, Description("a dog", {}), "opencv", 0.0))
    assert sent(connection) == [("image", "jpeg"), ("event", "pending"), ("event", "superseded"), ("image", "jpeg"),
                                ("event", "pending"), ("described_image", "jpeg"), ("description", "a dog"),
                                ("attributes", ""), ("result", ""), ("event", "described")]


def test_a_request_is_answered_on_its_reply_topic_only() -> None:
    connection, outcome, _, _ = outcomes()
    asked = job("q1", Origin.REQUEST, Reply("me/answers", b"c1"))
    outcome.accepted(asked, None)
    outcome.described(asked, Result(asked, Description("a cat", {}), "opencv", 0.0))
    outcome.failed(asked, ErrorCode.TIMED_OUT, "too slow")
    assert [(m.topic, m.correlation) for m in connection.published] == [("me/answers", b"c1")] * 2
    assert json.loads(connection.published[1].payload)["error"] == "timed_out"


def test_a_refusal_is_counted_at_once_and_published_unless_held() -> None:
    connection, outcome, stats, _ = outcomes()
    failure = Failure("porch", ErrorCode.BAD_IMAGE, "not a JPEG", "r1", TOPICS.camera("porch", "snapshot"))
    outcome.refuse(failure, held=True)
    assert (connection.published, stats.values()["inputs_refused"]) == ([], 1)
    outcome.refuse(failure)
    assert sent(connection) == [("error", "")]  # a snapshot's: nobody waits for it, no event
    assert json.loads(connection.published[0].payload)["error"] == "bad_image"


def test_a_refused_button_press_is_a_failed_event_and_an_unknown_camera_has_none() -> None:
    connection, outcome, _, _ = outcomes()
    outcome.refuse(Failure("porch", ErrorCode.CAMERA_DISABLED, "camera 'porch' is switched off in Home Assistant",
                           "b1", TOPICS.camera("porch", "trigger"), origin=Origin.TRIGGER))
    outcome.refuse(Failure("porch", ErrorCode.NO_FRAME, "no frame yet", "i1", None, origin=Origin.INTERVAL))
    outcome.refuse(Failure("garage", ErrorCode.UNKNOWN_CAMERA, "unknown camera 'garage'", "b2",
                           f"{CONFIG.base_topic}/garage/trigger", origin=Origin.TRIGGER))
    assert [m.topic for m in connection.published] == [
        TOPICS.camera("porch", "error"), TOPICS.camera("porch", "event"), TOPICS.camera("porch", "error"),
        f"{CONFIG.base_topic}/garage/error"]
    event = json.loads(connection.published[1].payload)
    assert (event["event_type"], event["origin"], event["error"]) == ("failed", "trigger", "camera_disabled")
    assert connection.published[1].asked  # someone pressed the button: dropped last
