"""Ask anything, end to end against a real mosquitto: ``<base>/request`` in, the answer on its reply topic.

The answer goes to the MQTT 5 response topic (with the correlation data echoed), else to the
request's ``reply_to`` (MQTT 3.1.1 clients), else to ``<base>/response``. Absence is proved by
order, never by waiting: the daemon publishes in order on one connection, so once a later message
of it arrived, an earlier one that was never seen was never sent.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import edge_vlm.frames.sources.retained
from edge_vlm.config.models import AppConfig
from edge_vlm.core.contracts import Origin
from edge_vlm.core.slots import MAX_REQUESTS
from edge_vlm.core.stats import Stats
from edge_vlm.frames.capture import CapturePool
from edge_vlm.ingest.trigger import Trigger
from edge_vlm.mqtt.inbox import Inbox, Received
from edge_vlm.service import Service
from tests.conftest import app_config
from tests.support import images
from tests.support.backends import GatedBackend
from tests.support.broker import Mosquitto
from tests.support.mqtt import Message, Recorder

pytestmark = pytest.mark.mqtt

Daemon = Callable[..., Service]
Recorders = Callable[..., Recorder]

PERSON = "1 person; 1 face visible; daylight"  # what the opencv backend says of the front_door sample
# (and "; no motion" after it when it saw a frame of that camera before)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def topic(config: AppConfig, camera: str, leaf: str) -> str:
    return f"{config.base_topic}/{camera}/{leaf}"


def request_topic(config: AppConfig) -> str:
    return f"{config.base_topic}/request"


def default_response(config: AppConfig) -> str:
    return f"{config.base_topic}/response"


def replies(config: AppConfig) -> str:
    """A prefix for this test's reply topics: under ``<base>/response/``, where replies may go by default."""
    return f"{config.base_topic}/response/{config.node_id}"


def pictures(config: AppConfig) -> str:
    """A prefix for this test's image topics: under ``<base>/images/``, where requests may read images by default."""
    return f"{config.base_topic}/images"


def watch(make_recorder: Recorders, broker: Mosquitto, config: AppConfig, protocol: str = "5") -> Recorder:
    filters = [f"{config.base_topic}/#", f"{config.discovery.prefix}/#"]  # replies(config) and pictures(config) too
    return make_recorder(broker.port, filters, protocol=protocol)


def started(recorder: Recorder, config: AppConfig) -> None:
    """Wait until the daemon announced itself: connected, subscribed (before "online"), discovery sent."""
    recorder.wait_for(f"{config.base_topic}/{config.node_id}/status", lambda m: m.payload == b"online")
    recorder.wait_for(f"{config.discovery.prefix}/device/edge_vlm_{config.node_id}/{config.cameras[-1].id}/config")


def ask(recorder: Recorder, config: AppConfig, request: dict[str, Any] | str, **properties: Any) -> None:
    """Publish a request (a dict as JSON; a str as it is); ``properties``: response_topic, correlation."""
    payload = request if isinstance(request, str) else json.dumps(request)
    recorder.publish(request_topic(config), payload, **properties)


def answer_on(recorder: Recorder, reply_topic: str, request_id: str | None) -> Message:
    return recorder.wait_for(reply_topic, lambda m: m.json().get("id") == request_id)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_mqtt5_request_is_answered_on_its_response_topic_with_its_correlation_data(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    config = app_config(broker.port, profiles={"gate": {"prompt": "Is the gate of {camera} open?"}})
    recorder = watch(make_recorder, broker, config)
    backend = GatedBackend()
    backend.gate.set()
    make_daemon(config, backend)
    started(recorder, config)
    recorder.publish(topic(config, "front_door", "snapshot"), images.sample("front_door"))
    snapshot = recorder.wait_for(topic(config, "front_door", "result")).json()
    mine = f"{replies(config)}/mine"
    correlation = bytes(range(256)) + b"\x00"  # every byte value, and a trailing NUL

    ask(recorder, config, {"camera": "front_door", "prompt": "Is anyone at the door?", "id": "q-1"},
        response_topic=mine, correlation=correlation)

    message = answer_on(recorder, mine, "q-1")
    assert message.correlation == correlation
    answer = message.json()
    assert "error" not in answer
    assert (answer["camera"], answer["origin"], answer["text"]) == ("front_door", "request", f"{PERSON}; no motion")
    assert answer["prompt"] == "Is anyone at the door?" == backend.prompts[-1]
    assert answer["frame_time"] == snapshot["frame_time"]  # the camera's current frame

    # A profile instead of a prompt; the response topic wins over reply_to; a number id comes back as text.
    ask(recorder, config, {"camera": "front_door", "profile": "gate", "id": 42, "reply_to": f"{replies(config)}/v3"},
        response_topic=mine, correlation=b"second")
    message = answer_on(recorder, mine, "42")
    assert message.correlation == b"second"
    assert message.json()["prompt"] == "Is the gate of Front door open?" == backend.prompts[-1]

    # A trigger after them proves, by order, that the answers went nowhere else.
    recorder.publish(topic(config, "front_door", "trigger"), json.dumps({"id": "after"}))
    recorder.wait_json(topic(config, "front_door", "result"), id="after")
    assert recorder.on(default_response(config)) == []
    assert recorder.on(f"{replies(config)}/v3") == []
    elsewhere = [m for m in recorder.messages if m.topic not in (mine, request_topic(config)) and b'"q-1"' in m.payload]
    assert elsewhere == []  # no result, event or image of the camera for a request
    assert [m.json()["id"] for m in recorder.on(topic(config, "front_door", "result"))] == [snapshot["id"], "after"]


@pytest.mark.parametrize("daemon_protocol", ["5", "3.1.1"])
def test_mqtt311_request_is_answered_on_reply_to_else_on_the_default_response_topic(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders, daemon_protocol: str) -> None:
    config = app_config(broker.port, mqtt={"port": broker.port, "protocol": daemon_protocol})
    recorder = watch(make_recorder, broker, config, protocol="3.1.1")
    make_daemon(config)
    started(recorder, config)
    recorder.publish(topic(config, "front_door", "snapshot"), images.sample("front_door"))
    recorder.wait_for(topic(config, "front_door", "result"))
    mine = f"{replies(config)}/v3"

    ask(recorder, config, {"camera": "front_door", "prompt": "Who is there?", "id": "v3-1", "reply_to": mine})
    ask(recorder, config, {"camera": "front_door", "prompt": "And now?", "id": "v3-2"})

    answer = answer_on(recorder, mine, "v3-1")
    assert answer.correlation is None
    assert answer.json()["text"].startswith(PERSON)
    assert answer.json()["prompt"] == "Who is there?"
    fallback = answer_on(recorder, default_response(config), "v3-2").json()
    assert fallback["text"].startswith(PERSON)
    assert fallback["prompt"] == "And now?"
    # Each went to one place only (the second was answered after the first: same camera, in order).
    assert [m.json()["id"] for m in recorder.on(mine)] == ["v3-1"]
    assert [m.json()["id"] for m in recorder.on(default_response(config))] == ["v3-2"]


def test_mqtt5_request_to_an_mqtt311_daemon_falls_back_to_reply_to(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    """An MQTT 3.1.1 daemon never sees the response topic (the broker drops properties): reply_to counts."""
    config = app_config(broker.port, mqtt={"port": broker.port, "protocol": "3.1.1"})
    recorder = watch(make_recorder, broker, config)
    make_daemon(config)
    started(recorder, config)

    ask(recorder, config, {"image": b64(images.sample("front_door")), "id": "x-1", "reply_to": f"{replies(config)}/b"},
        response_topic=f"{replies(config)}/a", correlation=b"lost")

    answer = answer_on(recorder, f"{replies(config)}/b", "x-1")
    assert answer.json()["text"] == PERSON
    assert answer.correlation is None
    assert recorder.on(f"{replies(config)}/a") == []


def test_requests_about_images_and_what_is_wrong_with_them(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders, monkeypatch: pytest.MonkeyPatch) -> None:
    wait_s = 1.0
    monkeypatch.setattr(edge_vlm.frames.sources.retained, "IMAGE_TOPIC_WAIT_S", wait_s)
    config = app_config(broker.port, limits={"max_payload_bytes": 200_000})
    recorder = watch(make_recorder, broker, config)
    make_daemon(config)
    started(recorder, config)
    mine = f"{replies(config)}/images"
    picture = f"{pictures(config)}/driveway"
    recorder.publish(picture, images.jpeg(320, 200, seed=3), retain=True)
    big = images.jpeg(1600, 1200, seed=5, quality=95)  # over limits.max_payload_bytes
    big_picture = f"{pictures(config)}/big"
    recorder.publish(big_picture, big, retain=True)

    ask(recorder, config, {"image": b64(images.sample("front_door")), "prompt": "Who?", "id": "i-1"},
        response_topic=mine, correlation=b"i-1")
    ask(recorder, config, {"image_topic": picture, "id": "i-2"}, response_topic=mine, correlation=b"i-2")

    inline = answer_on(recorder, mine, "i-1")
    assert inline.correlation == b"i-1"
    assert (inline.json()["text"], inline.json()["image_size"], inline.json()["prompt"]) == (PERSON, [512, 512], "Who?")
    retained = answer_on(recorder, mine, "i-2")
    assert retained.correlation == b"i-2"
    assert "error" not in retained.json()
    assert retained.json()["image_size"] == [320, 200]
    assert retained.json()["prompt"] == config.prompt  # no prompt, no profile: the default question

    # An image topic with nothing retained: no_frame once the wait is over, not before.
    asked = time.monotonic()
    ask(recorder, config, {"image_topic": f"{pictures(config)}/none", "id": "i-3"},
        response_topic=mine, correlation=b"i-3")
    empty = answer_on(recorder, mine, "i-3")
    assert time.monotonic() - asked >= wait_s
    assert (empty.json()["error"], empty.correlation) == ("no_frame", b"i-3")

    # (case, request, error code, the id the error carries: none when the request could not be read)
    bad: list[tuple[str, dict[str, Any] | str, str, str | None]] = [
        ("bad base64", {"image": "not base64 at all!", "id": "e-1"}, "bad_image", "e-1"),
        ("not an image", {"image": b64(b"hello, I am not a JPEG"), "id": "e-2"}, "bad_image", "e-2"),
        ("truncated JPEG", {"image": b64(images.jpeg()[:4000]), "id": "e-3"}, "bad_image", "e-3"),
        ("unknown camera", {"camera": "garage", "id": "e-4"}, "unknown_camera", "e-4"),
        ("no frame yet", {"camera": "driveway", "id": "e-5"}, "no_frame", "e-5"),
        ("unknown profile", {"image": b64(images.jpeg()), "profile": "nope", "id": "e-6"}, "bad_trigger", "e-6"),
        ("two images", {"camera": "front_door", "image_topic": picture, "id": "e-7"}, "bad_trigger", "e-7"),
        ("unknown key", {"camera": "front_door", "colour": "red", "id": "e-8"}, "bad_trigger", "e-8"),
        ("wildcard image topic", {"image_topic": f"{pictures(config)}/+", "id": "e-9"}, "bad_image_topic", "e-9"),
        ("control character in the image topic", {"image_topic": f"{pictures(config)}/\u0001", "id": "e-10"},
         "bad_image_topic", "e-10"),
        ("retained image over the limit", {"image_topic": big_picture, "id": "e-11"}, "payload_too_large", "e-11"),
        ("request over the limit", {"image": b64(big), "id": "e-12"}, "payload_too_large", None),  # dropped unread
        ("malformed JSON", '{"camera": "front_door", "id": "e-13", ', "bad_trigger", None),
        ("not an object", '["front_door"]', "bad_trigger", None),
    ]
    for case, request, _, _ in bad:
        ask(recorder, config, request, response_topic=mine, correlation=case.encode())
    for case, _, code, request_id in bad:
        error = recorder.wait_for(mine, lambda m, c=case: m.correlation == c.encode()).json()  # type: ignore[misc]
        assert (error["error"], error["id"]) == (code, request_id), (case, error)
        assert error["topic"] == request_topic(config), case
        assert error["message"], case
    assert recorder.on(default_response(config)) == []
    for image_topic in (picture, big_picture):
        recorder.publish(image_topic, b"", retain=True)


def test_malformed_requests_are_answered_where_their_sender_listens(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    config = app_config(broker.port)
    recorder = watch(make_recorder, broker, config, protocol="3.1.1")
    make_daemon(config)
    started(recorder, config)
    mine = f"{replies(config)}/v3"

    recorder.publish(request_topic(config), '{"camera": "front_door", "id": "m-1", ')  # cut short
    # Valid JSON with a reply_to, refused all the same: its error goes to its reply_to.
    ask(recorder, config, {"camera": "front_door", "image": "AAAA", "id": "m-2", "reply_to": mine})
    ask(recorder, config, {"camera": "front_door", "colour": "red", "id": "m-3", "reply_to": mine})

    first = recorder.wait_for(default_response(config)).json()
    assert (first["error"], first["id"]) == ("bad_trigger", None)
    errors = [m.json() for m in recorder.count(mine, 2)]
    assert [(e["error"], e["id"]) for e in errors] == [("bad_trigger", "m-2"), ("bad_trigger", "m-3")]
    assert "colour" in errors[1]["message"]


def test_replies_to_the_daemons_own_topics_go_to_the_default_response_topic(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    config = app_config(broker.port)
    recorder = watch(make_recorder, broker, config)
    service = make_daemon(config)
    started(recorder, config)
    recorder.publish(topic(config, "front_door", "snapshot"), images.sample("front_door"))
    recorder.wait_for(topic(config, "front_door", "result"))
    forbidden = [
        topic(config, "front_door", "trigger"),
        topic(config, "driveway", "snapshot"),
        topic(config, "front_door", "enabled/set"),
        request_topic(config),
        f"{config.discovery.prefix}/sensor/x/config",
        f"{replies(config)}/+/wild",
        # Topics the broker refuses, and would drop the daemon's connection over.
        f"{replies(config)}/nul\u0000", f"{replies(config)}/del\u007f", f"{replies(config)}/\ufffe",
        f"{replies(config)}/\ud800",
    ]
    seen = len(recorder.messages)

    for n, reply_to in enumerate(forbidden):
        ask(recorder, config, {"camera": "front_door", "id": f"f-{n}", "reply_to": reply_to})
    ask(recorder, config, {"camera": "front_door", "id": "f-v5"}, response_topic=forbidden[0], correlation=b"x")
    ask(recorder, config, {"camera": "front_door", "id": "ok", "reply_to": f"{replies(config)}/ok"})

    # Requests of one camera are answered in order: once "ok" is, the others were refused, each
    # answered on the default response topic instead of where it asked.
    assert recorder.wait_for(f"{replies(config)}/ok").json()["id"] == "ok"
    later = [m for m in recorder.messages[seen:] if m.topic != request_topic(config)]
    assert [m.topic for m in later if m.topic in forbidden or m.topic.startswith(replies(config))] == [
        f"{replies(config)}/ok"]
    refused = [m for m in later if m.topic == default_response(config)]
    # A lone surrogate is refused by the request's own validation first (bad_trigger).
    assert [(m.json()["id"], m.json()["error"]) for m in refused] == [
        *((f"f-{n}", "bad_trigger" if "\ud800" in reply_to else "bad_reply_topic")
          for n, reply_to in enumerate(forbidden)),
        ("f-v5", "bad_reply_topic")]
    assert "will not answer on" in refused[0].json()["message"] and refused[-1].correlation == b"x"
    assert not any(m.topic.endswith(("/error", "/result")) for m in later)
    assert [m.payload for m in recorder.on(f"{config.base_topic}/{config.node_id}/status")] == [b"online"]
    assert service.connection.connected


@pytest.mark.parametrize("asked_with", ["response_topic", "reply_to"])
def test_a_reply_topic_no_answer_may_go_to_is_refused_and_nothing_is_published_there(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders, caplog: pytest.LogCaptureFixture,
        asked_with: str) -> None:
    """Issue 10, 5 and 8: our state topics, another integration's command topic, $SYS. The daemon
    publishes with its own broker rights: the answer went there (the status topic held JSON), and a
    $SYS one was logged as the broker's ACL denial although it was ours to refuse."""
    caplog.set_level(logging.INFO, logger="edge_vlm")
    config = app_config(broker.port)
    status = f"{config.base_topic}/{config.node_id}/status"
    lock = f"zigbee2mqtt/{config.node_id}/front_door_lock/set"  # another integration's command topic
    abused = [status, topic(config, "front_door", "alerts"), topic(config, "front_door", "enabled"),
              topic(config, "driveway", "description"), lock, "$SYS/x", f"elsewhere/{config.node_id}/answers"]
    # Subscribed before anything is asked: whatever the daemon publishes there, this recorder sees.
    recorder = make_recorder(broker.port, [f"{config.base_topic}/#", f"{config.discovery.prefix}/#",
                                           f"zigbee2mqtt/{config.node_id}/#", "$SYS/x",
                                           f"elsewhere/{config.node_id}/#"],
                             protocol="5" if asked_with == "response_topic" else "3.1.1")
    make_daemon(config)
    started(recorder, config)
    recorder.publish(topic(config, "front_door", "snapshot"), images.sample("front_door"))
    recorder.wait_for(topic(config, "front_door", "result"))  # the camera has a frame: requests about it work
    seen = len(recorder.messages)

    for n, reply_topic in enumerate(abused):
        request = {"camera": "front_door", "id": f"a-{n}"}
        if asked_with == "response_topic":
            ask(recorder, config, request, response_topic=reply_topic, correlation=f"a-{n}".encode())
        else:
            ask(recorder, config, {**request, "reply_to": reply_topic})
    ask(recorder, config, {"camera": "front_door", "id": "sync"})

    # The camera's requests are answered in order on one connection, each QoS 1: once the last one's
    # answer arrived, an answer of an earlier one published anywhere would have arrived before it.
    answer_on(recorder, default_response(config), "sync")
    later = recorder.messages[seen:]
    assert [m for m in later if m.topic in abused] == []
    refused = [m for m in later if m.topic == default_response(config) and m.json()["id"] != "sync"]
    assert [(m.json()["id"], m.json()["error"]) for m in refused] == [
        (f"a-{n}", "bad_reply_topic") for n in range(len(abused))]
    if asked_with == "response_topic":
        assert [m.correlation for m in refused] == [f"a-{n}".encode() for n in range(len(abused))]
    assert all("will not answer on" in m.json()["message"] for m in refused)
    assert "it is a $ topic" in refused[abused.index("$SYS/x")].json()["message"]
    assert "not under the reply topics" in refused[abused.index(lock)].json()["message"]
    # Logged as our refusal, once each (the answer went out after it), never as the broker's denial.
    logged = [r.getMessage() for r in caplog.records]
    assert [line for line in logged if "broker denied" in line] == []
    assert [line for line in logged if "refused" in line and "bad_reply_topic" in line and "'$SYS/x'" in line]
    assert [m.payload for m in recorder.on(status)] == [b"online"]


def test_image_topic_is_read_only_from_snapshot_and_image_topics(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    """Issue 10, 6: the daemon read any retained topic it could (another application's secret
    state, zigbee2mqtt's bridge config, $SYS) and its error showed the bytes."""
    config = app_config(broker.port)
    recorder = watch(make_recorder, broker, config)
    secret = f"other_app/{config.node_id}/secret_state"
    bridge = f"zigbee2mqtt/{config.node_id}/bridge/config"
    mine = f"{replies(config)}/images"
    retained = {secret: b"PASSWORD=correct horse battery staple", bridge: b'{"network_key": [1, 2, 3]}',
                f"{pictures(config)}/door": images.sample("front_door"),
                topic(config, "front_door", "snapshot"): images.sample("front_door")}
    for name, payload in retained.items():
        recorder.publish(name, payload, retain=True)
    try:
        make_daemon(config)
        started(recorder, config)
        refused = [secret, bridge, "$SYS/broker/version", f"{config.base_topic}/{config.node_id}/status",
                   topic(config, "front_door", "attributes")]
        for n, image_topic in enumerate(refused):
            ask(recorder, config, {"image_topic": image_topic, "id": f"r-{n}"}, response_topic=mine)
        for n, image_topic in enumerate(refused):
            error = answer_on(recorder, mine, f"r-{n}").json()
            assert error["error"] == "bad_image_topic", (image_topic, error)
            assert "not an image topic requests may use" in error["message"]
            assert "PASSWORD" not in error["message"] and "50 41 53 53" not in error["message"]

        # The default: <base>/images/... and the cameras' snapshot topics.
        for n, image_topic in enumerate([f"{pictures(config)}/door", topic(config, "front_door", "snapshot")]):
            ask(recorder, config, {"image_topic": image_topic, "id": f"ok-{n}"}, response_topic=mine)
            assert "error" not in answer_on(recorder, mine, f"ok-{n}").json()
    finally:
        for name in retained:
            recorder.publish(name, b"", retain=True)


def test_the_allowed_reply_and_image_topics_are_configurable(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    n = broker.port
    config = app_config(broker.port, mqtt={"port": broker.port, "reply_topics": [f"answers/{n}/#"],
                                           "image_topics": [f"pictures/{n}/+/latest"]})
    recorder = make_recorder(broker.port, [f"{config.base_topic}/#", f"{config.discovery.prefix}/#", f"answers/{n}/#"],
                             protocol="3.1.1")
    make_daemon(config)
    started(recorder, config)
    picture = f"pictures/{n}/{config.node_id}/latest"
    recorder.publish(picture, images.sample("front_door"), retain=True)
    try:
        ask(recorder, config, {"image_topic": picture, "id": "c-1", "reply_to": f"answers/{n}/{config.node_id}"})
        assert "error" not in answer_on(recorder, f"answers/{n}/{config.node_id}", "c-1").json()
        # The default subtrees are no longer allowed: only <base>/response itself, where refusals go.
        ask(recorder, config, {"image_topic": f"{pictures(config)}/x", "id": "c-2",
                               "reply_to": f"answers/{n}/{config.node_id}"})
        assert answer_on(recorder, f"answers/{n}/{config.node_id}", "c-2").json()["error"] == "bad_image_topic"
        ask(recorder, config, {"image_topic": picture, "id": "c-3", "reply_to": f"{replies(config)}/x"})
        assert answer_on(recorder, default_response(config), "c-3").json()["error"] == "bad_reply_topic"
    finally:
        recorder.publish(picture, b"", retain=True)


def test_answers_come_in_request_order_per_camera(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    config = app_config(broker.port)
    recorder = watch(make_recorder, broker, config)
    backend = GatedBackend()
    service = make_daemon(config, backend)
    started(recorder, config)
    recorder.publish(topic(config, "front_door", "snapshot"), images.jpeg(seed=1))
    assert backend.entered.wait(10)  # the snapshot's job holds the worker
    recorder.publish(topic(config, "driveway", "snapshot"), images.jpeg(seed=2))
    mine = f"{replies(config)}/ordered"
    sent: list[tuple[str, str]] = []
    for n in range(6):
        for camera in ("front_door", "driveway") if n % 2 else ("front_door",):
            request_id = f"{camera}-{n}"
            # One is refused once its frame is grabbed: its error waits its turn like an answer.
            question = {"profile": "nope"} if request_id == "front_door-3" else {"prompt": f"question {n}"}
            ask(recorder, config, {"camera": camera, "id": request_id, **question},
                response_topic=mine, correlation=request_id.encode())
            sent.append((camera, request_id))
    wait_until(lambda: service.scheduler.depth == len(sent) - 1 + 1)  # all but the refused one, and a snapshot

    backend.gate.set()

    answers = recorder.count(mine, len(sent))
    assert all(m.correlation == m.json()["id"].encode() for m in answers)
    for camera in ("front_door", "driveway"):
        assert [m.json()["id"] for m in answers if m.json()["camera"] == camera] == [
            i for c, i in sent if c == camera]
    assert [m.json().get("prompt", m.json().get("error")) for m in answers if m.json()["camera"] == "front_door"] == [
        "bad_trigger" if n == 3 else f"question {n}" for n in range(6)]
    assert all(m.json()["coalesced"] == 0 for m in answers if "error" not in m.json())


def test_several_boards_share_the_requests_each_answered_once(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    first = app_config(broker.port, mqtt={"port": broker.port, "shared_group": "boards"})
    second = app_config(broker.port, base_topic=first.base_topic, discovery=first.discovery.model_dump(),
                        mqtt={"port": broker.port, "shared_group": "boards"})
    recorder = watch(make_recorder, broker, first)
    boards = [make_daemon(first), make_daemon(second)]
    for config in (first, second):
        started(recorder, config)
    cameras = ("front_door", "driveway")
    for camera in cameras:  # both boards take it: snapshots are not shared
        recorder.publish(topic(first, camera, "snapshot"), images.sample("front_door"))
    wait_until(lambda: all(board.stats.values()["jobs_done"] == 2 for board in boards))
    mine = f"{replies(first)}/shared"
    ids = [f"s-{n}" for n in range(40)]

    for n, request_id in enumerate(ids):
        ask(recorder, first, {"camera": cameras[n % 2], "id": request_id}, response_topic=mine,
            correlation=request_id.encode())
    # Then a trigger per camera, which every board takes: each board answers it after the requests
    # it took before (per camera, requests first), so once both boards' results for it arrived,
    # every answer either board ever sent has arrived too.
    for camera in cameras:
        recorder.publish(topic(first, camera, "trigger"), json.dumps({"id": f"marker-{camera}"}))
    for camera in cameras:
        recorder.count(topic(first, camera, "result"), 2 + 2)  # the snapshot's and the marker's, per board
        markers = [m.json() for m in recorder.on(topic(first, camera, "result"))
                   if m.json()["id"] == f"marker-{camera}"]
        assert len(markers) == 2, camera

    answers = recorder.on(mine)
    assert all("error" not in m.json() for m in answers)
    assert all(m.correlation == m.json()["id"].encode() for m in answers)
    counts = Counter(m.json()["id"] for m in answers)
    assert sorted(counts) == sorted(ids), "some requests were not answered"
    assert [i for i, n in counts.items() if n > 1] == [], "some requests were answered twice"
    wait_until(lambda: sum(board.stats.values()["jobs_done"] for board in boards) == 2 * (2 + 2) + len(ids))
    answered = [board.stats.values()["jobs_done"] - 2 - 2 for board in boards]
    assert sum(answered) == len(ids)
    # Mosquitto takes the boards of a group in turn (20 and 20); leave room for another broker's ways.
    assert min(answered) >= len(ids) // 4, f"the broker hardly shared the requests: {answered}"


def test_a_retained_request_is_not_asked_again_at_each_start(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    config = app_config(broker.port)
    recorder = watch(make_recorder, broker, config)
    mine = f"{replies(config)}/mine"
    recorder.publish(request_topic(config), json.dumps({"camera": "front_door", "id": "old", "reply_to": mine}),
                     retain=True)
    try:
        make_daemon(config)
        started(recorder, config)
        ask(recorder, config, {"camera": "front_door", "id": "new", "reply_to": mine})
        answer_on(recorder, mine, "new")
        # Requests are handled in order: the retained one, replayed first, would have been answered first.
        assert [m.json()["id"] for m in recorder.on(mine)] == ["new"]
    finally:
        recorder.publish(request_topic(config), b"", retain=True)


def received(topic: str, size: int = 10) -> Received:
    return Received(topic, b"x" * size, False, time.monotonic(), time.time(), size)


def test_a_flooded_inbox_drops_snapshots_before_requests() -> None:
    inbox = Inbox(max_messages=3, max_bytes=10_000, precious={"edge_vlm/request"}.__contains__)
    for topic_name in ["cam/snapshot", "edge_vlm/request", "cam/snapshot", "cam/snapshot", "edge_vlm/request"]:
        inbox.put(received(topic_name))
    kept = [event.topic for event in iter(lambda: inbox.get(0), None) if isinstance(event, Received)]
    assert kept == ["edge_vlm/request", "cam/snapshot", "edge_vlm/request"]
    assert inbox.dropped == 2
    # Only requests left: the oldest goes, the bound holds.
    for _ in range(4):
        inbox.put(received("edge_vlm/request"))
    assert inbox.dropped == 3


def test_requests_waiting_for_a_capture_are_bounded() -> None:
    running, release = threading.Event(), threading.Event()
    refused: list[tuple[str | None, str]] = []

    def capture(trigger: Trigger) -> None:
        running.set()
        release.wait(10)

    pool = CapturePool(1, capture, lambda t, e: refused.append((t.request_id, e.code)), Stats("test"))
    try:
        pool.submit("cam", Trigger("cam", Origin.REQUEST, request_id="r0"))
        assert running.wait(10)  # r0 is being captured for, held
        for n in range(1, MAX_REQUESTS + 2):  # MAX_REQUESTS wait, one is too many
            pool.submit("cam", Trigger("cam", Origin.REQUEST, request_id=f"r{n}"))
        assert refused == [(f"r{MAX_REQUESTS + 1}", "busy")]
    finally:
        release.set()
        pool.close()


def test_a_newer_snapshot_replaces_the_one_waiting_on_its_topic_and_triggers_are_kept(
        caplog: pytest.LogCaptureFixture) -> None:
    snapshot = {"cam/snapshot", "other/snapshot"}.__contains__
    inbox = Inbox(max_messages=8, max_bytes=10_000, precious="cam/trigger".__eq__, latest_wins=snapshot)
    for topic_name, size in [("cam/snapshot", 1), ("cam/snapshot", 2), ("cam/trigger", 3), ("cam/snapshot", 4),
                             ("other/snapshot", 5), ("cam/trigger", 6), ("cam/snapshot", 7)]:
        inbox.put(received(topic_name, size))
    kept = [(e.topic, e.size) for e in iter(lambda: inbox.get(0), None) if isinstance(e, Received)]
    # Until 2 (a quarter of 8) wait, each is kept; from then on a snapshot replaces its topic's.
    assert kept == [("cam/trigger", 3), ("other/snapshot", 5), ("cam/trigger", 6), ("cam/snapshot", 7)]
    assert (inbox.replaced, inbox.dropped) == (3, 0)
    # Shedding is never logged by paho's thread; the dispatcher's summary says it once a minute.
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="edge_vlm.mqtt.inbox"):
        inbox.summary(now=1000.0)
        for _ in range(3):
            inbox.put(received("cam/snapshot"))
        inbox.summary(now=1030.0)  # within the minute: nothing
        inbox.summary(now=1061.0)
    assert [r.getMessage().split(": ")[1].split(" snapshot")[0] for r in caplog.records] == ["3", "2"]
