"""The daemon end to end against a real mosquitto: snapshots in, descriptions out."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from edge_vlm.config.models import AppConfig
from edge_vlm.service import Service
from tests.conftest import app_config
from tests.support import images
from tests.support.backends import FailingBackend, GatedBackend
from tests.support.broker import Mosquitto
from tests.support.mqtt import Recorder

pytestmark = pytest.mark.mqtt

Daemon = Callable[..., Service]
Recorders = Callable[..., Recorder]


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds; ``timeout`` bounds the wait (generous: CI may be busy)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def watch(make_recorder: Recorders, broker: Mosquitto, config: AppConfig, **options: object) -> Recorder:
    return make_recorder(broker.port, [f"{config.base_topic}/#", f"{config.discovery.prefix}/#"], **options)


def topic(config: AppConfig, camera: str, leaf: str) -> str:
    return f"{config.base_topic}/{camera}/{leaf}"


def started(recorder: Recorder, config: AppConfig) -> None:
    """Wait until the daemon announced itself: connected, subscribed, discovery sent."""
    recorder.wait_for(f"{config.base_topic}/{config.node_id}/status", lambda m: m.payload == b"online")
    recorder.wait_for(f"{config.discovery.prefix}/device/edge_vlm_{config.node_id}/{config.cameras[-1].id}/config")


def test_snapshot_is_described_with_result_and_image(broker: Mosquitto, make_daemon: Daemon,
                                                     make_recorder: Recorders) -> None:
    config = app_config(broker.port)
    recorder = watch(make_recorder, broker, config)
    make_daemon(config)
    started(recorder, config)
    snapshot = images.sample("front_door")

    recorder.publish(topic(config, "front_door", "snapshot"), snapshot)

    result = recorder.wait_for(topic(config, "front_door", "result")).json()
    assert result["text"] == "1 person; 1 face visible; daylight"
    assert result["description"] == result["text"]
    assert result["camera"] == "front_door"
    assert result["origin"] == "snapshot"
    assert result["backend"] == "opencv"
    assert result["prompt"] == config.prompt
    assert result["coalesced"] == 0
    assert result["image_size"] == [512, 512]
    assert {"capture", "preprocess", "queued", "people", "faces"} <= set(result["timings_ms"])
    assert result["details"]["people"] == 1
    description = recorder.wait_for(topic(config, "front_door", "description"))
    assert description.payload.decode() == result["text"]
    assert recorder.wait_for(topic(config, "front_door", "image")).payload == snapshot
    attributes = recorder.wait_for(topic(config, "front_door", "attributes")).json()
    assert attributes["id"] == result["id"]
    assert attributes["text"] == result["text"]


def test_trigger_describes_latest_snapshot_with_its_prompt_and_id(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    config = app_config(broker.port)
    recorder = watch(make_recorder, broker, config)
    backend = GatedBackend()
    backend.gate.set()
    make_daemon(config, backend)
    started(recorder, config)
    recorder.publish(topic(config, "driveway", "snapshot"), images.sample("driveway"))
    first = recorder.wait_for(topic(config, "driveway", "result")).json()

    recorder.publish(topic(config, "driveway", "trigger"), json.dumps({"id": "req-7", "prompt": "Is the gate open?"}))

    result = recorder.wait_json(topic(config, "driveway", "result"), id="req-7")
    assert result["origin"] == "trigger"
    assert result["prompt"] == "Is the gate open?"
    assert result["frame_time"] == first["frame_time"]  # the same frame, described again
    assert backend.prompts == [config.prompt, "Is the gate open?"]
    # HA's "Describe now" button sends "{}"; an empty payload works too.
    recorder.publish(topic(config, "driveway", "trigger"), "{}")
    recorder.count(topic(config, "driveway", "result"), 3)  # else the next one could replace it
    recorder.publish(topic(config, "driveway", "trigger"), b"")
    results = [m.json() for m in recorder.count(topic(config, "driveway", "result"), 4)]
    assert [r["origin"] for r in results] == ["snapshot", "trigger", "trigger", "trigger"]
    assert [r["prompt"] for r in results[2:]] == [config.prompt, config.prompt]


def test_waiting_jobs_of_a_camera_coalesce_and_cameras_keep_their_turn(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    config = app_config(broker.port)
    recorder = watch(make_recorder, broker, config)
    backend = GatedBackend()
    service = make_daemon(config, backend)
    started(recorder, config)
    recorder.publish(topic(config, "front_door", "snapshot"), images.jpeg(seed=1))
    assert backend.entered.wait(10)  # job 1 is in flight
    recorder.publish(topic(config, "driveway", "snapshot"), images.jpeg(seed=2))
    for n in range(3):
        recorder.publish(topic(config, "front_door", "trigger"), json.dumps({"id": f"t{n}"}))
    wait_until(lambda: service.stats.values()["jobs_coalesced"] == 2 and service.scheduler.depth == 2)

    backend.gate.set()

    front = recorder.count(topic(config, "front_door", "result"), 2)
    driveway = recorder.count(topic(config, "driveway", "result"), 1)
    second = front[1].json()
    assert (second["id"], second["coalesced"], second["superseded_ids"]) == ("t2", 2, ["t0", "t1"])
    # The driveway's job was waiting before the front door's second one, and ran first.
    assert driveway[0].index < front[1].index
    assert service.scheduler.depth == 0


@pytest.mark.parametrize(("case", "payload_or_topic", "code"), [
    ("not an image", b"hello, I am not a JPEG", "bad_image"),
    ("truncated JPEG", images.jpeg()[:4000], "bad_image"),
    ("empty payload", b"", "bad_image"),
    ("too many pixels", images.png_header_only(20000, 10000), "image_too_large"),
])
def test_bad_snapshot_gets_an_error_and_the_next_good_one_is_described(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders,
        case: str, payload_or_topic: bytes, code: str) -> None:
    config = app_config(broker.port, limits={"max_image_pixels": 40_000_000})
    recorder = watch(make_recorder, broker, config)
    make_daemon(config)
    started(recorder, config)

    recorder.publish(topic(config, "front_door", "snapshot"), payload_or_topic)

    error = recorder.wait_for(topic(config, "front_door", "error")).json()
    assert error["error"] == code, case
    assert error["camera"] == "front_door"
    assert error["topic"] == topic(config, "front_door", "snapshot")
    recorder.publish(topic(config, "front_door", "snapshot"), images.sample("front_door"))
    assert recorder.wait_for(topic(config, "front_door", "result")).json()["details"]["people"] == 1


def test_bad_triggers_get_errors_and_the_daemon_keeps_serving(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    config = app_config(broker.port, cameras=[{"id": "front_door"}, {"id": "attic", "enabled": False}])
    recorder = watch(make_recorder, broker, config)
    make_daemon(config)
    started(recorder, config)
    front_trigger = topic(config, "front_door", "trigger")

    recorder.publish(front_trigger, '{"id": "a1", "prompt": ')
    recorder.publish(front_trigger, '["not", "an", "object"]')
    recorder.publish(front_trigger, json.dumps({"id": "a2", "prompt": "x", "colour": "red"}))
    recorder.publish(front_trigger, json.dumps({"id": "a3"}))  # no snapshot received yet
    recorder.publish(topic(config, "garage", "trigger"), json.dumps({"id": "a4"}))
    recorder.publish(topic(config, "attic", "trigger"), json.dumps({"id": "a5"}))

    front = [m.json() for m in recorder.count(topic(config, "front_door", "error"), 4)]
    errors = [recorder.wait_for(topic(config, camera, "error")).json() for camera in ("garage", "attic")]
    assert [(e["error"], e["id"]) for e in front] == [
        ("bad_trigger", None), ("bad_trigger", None), ("bad_trigger", "a2"), ("no_frame", "a3"),
    ]
    assert "colour" in front[2]["message"]
    assert (errors[0]["error"], errors[0]["id"]) == ("unknown_camera", "a4")
    assert (errors[1]["error"], errors[1]["id"]) == ("camera_disabled", "a5")
    recorder.publish(topic(config, "front_door", "snapshot"), images.sample("front_door"))
    recorder.publish(front_trigger, json.dumps({"id": "a6"}))
    assert recorder.wait_json(topic(config, "front_door", "result"), id="a6")["camera"] == "front_door"


def test_backend_failure_is_reported_and_other_cameras_go_on(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    config = app_config(broker.port)
    recorder = watch(make_recorder, broker, config)
    make_daemon(config, FailingBackend("front_door"))
    started(recorder, config)

    recorder.publish(topic(config, "front_door", "snapshot"), images.jpeg())
    recorder.publish(topic(config, "driveway", "snapshot"), images.jpeg())

    error = recorder.wait_for(topic(config, "front_door", "error")).json()
    assert (error["error"], error["message"]) == ("backend_failed", "model crashed")
    assert error["id"]
    recorder.wait_for(topic(config, "driveway", "result"))


def test_retained_snapshots_are_skipped_unless_the_camera_accepts_them(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    n = time.monotonic_ns()
    frigate = f"frigate{n}"
    config = app_config(broker.port, cameras=[
        {"id": "front_door", "snapshot_topics": [f"{frigate}/front_door/+/snapshot"]},
        {"id": "driveway", "snapshot_topics": [f"{frigate}/driveway/car/snapshot"], "accept_retained": True},
    ])
    recorder = watch(make_recorder, broker, config)
    # Frigate left retained snapshots on the broker before the daemon started.
    recorder.publish(f"{frigate}/front_door/person/snapshot", images.jpeg(seed=3), retain=True)
    recorder.publish(f"{frigate}/driveway/car/snapshot", images.jpeg(seed=4), retain=True)
    make_daemon(config)
    started(recorder, config)

    recorder.wait_for(topic(config, "driveway", "result"))
    # A live snapshot on the front door's Frigate topic is described; the retained one was not.
    recorder.publish(f"{frigate}/front_door/person/snapshot", images.sample("front_door"))
    result = recorder.wait_for(topic(config, "front_door", "result")).json()
    assert result["details"]["people"] == 1
    assert len(recorder.on(topic(config, "front_door", "result"))) == 1
    for retained in (f"{frigate}/front_door/person/snapshot", f"{frigate}/driveway/car/snapshot"):
        recorder.publish(retained, b"", retain=True)


def test_broker_restart_while_a_job_runs_delivers_result_and_announces_again(
        restartable_broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    broker = restartable_broker
    config = app_config(broker.port)
    # A persistent session: what the daemon publishes while this client is away is kept for it.
    recorder = watch(make_recorder, broker, config, client_id="restart-watcher", persistent=True)
    backend = GatedBackend()
    service = make_daemon(config, backend)
    started(recorder, config)
    recorder.publish(topic(config, "front_door", "snapshot"), images.sample("front_door"))
    assert backend.entered.wait(10)
    before = len(recorder.messages)

    broker.stop()
    wait_until(lambda: not service.connection.connected)
    backend.gate.set()  # the job finishes while the broker is down
    broker.start()

    after_restart = recorder.since(before)
    result = recorder.wait_for(topic(config, "front_door", "result"), after_restart).json()
    assert result["text"] == "1 person; 1 face visible; daylight"
    recorder.wait_for(f"{config.discovery.prefix}/device/edge_vlm_{config.node_id}/front_door/config", after_restart)
    recorder.wait_for(f"{config.discovery.prefix}/device/edge_vlm_{config.node_id}/config", after_restart)
    recorder.wait_for(topic(config, "front_door", "description"), after_restart)
    recorder.wait_for(f"{config.base_topic}/{config.node_id}/status",
                      lambda m: after_restart(m) and m.payload == b"online")


def test_oversized_payloads_are_refused_on_arrival(broker: Mosquitto, make_daemon: Daemon,
                                                   make_recorder: Recorders) -> None:
    config = app_config(broker.port, limits={"max_payload_bytes": 20_000})
    recorder = watch(make_recorder, broker, config)
    make_daemon(config)
    started(recorder, config)
    big = images.jpeg(1280, 720, seed=9)
    assert len(big) > 20_000

    recorder.publish(topic(config, "front_door", "snapshot"), big)
    recorder.publish(topic(config, "front_door", "trigger"), b" " * 30_000)

    errors = [m.json() for m in recorder.count(topic(config, "front_door", "error"), 2)]
    assert [e["error"] for e in errors] == ["payload_too_large", "payload_too_large"]
    assert f"payload of {len(big)} bytes is over the limit of 20000" in errors[0]["message"]
    recorder.publish(topic(config, "front_door", "snapshot"), images.sample("garden_night"))
    assert recorder.wait_for(topic(config, "front_door", "description")).payload == b"No people; dark scene"


def test_own_discovery_messages_do_not_fill_the_inbox(broker: Mosquitto, make_daemon: Daemon,
                                                      make_recorder: Recorders) -> None:
    cameras = [{"id": f"cam{i}"} for i in range(12)]
    config = app_config(broker.port, cameras=cameras, limits={"inbound_queue": 4})
    recorder = watch(make_recorder, broker, config)
    service = make_daemon(config)
    started(recorder, config)
    recorder.publish(config.discovery.ha_status_topic, "online")  # a second announcement
    recorder.wait_for(f"{config.discovery.prefix}/device/edge_vlm_{config.node_id}/cam11/config",
                      lambda m: len(recorder.on(m.topic)) == 2)

    # In order: once the daemon answers this, it has received every echo of its 26 discovery messages.
    recorder.publish(topic(config, "nowhere", "trigger"), "{}")
    recorder.wait_for(topic(config, "nowhere", "error"))

    assert service.inbox.dropped == 0


def test_results_from_a_long_outage_are_bounded_and_status_comes_back(
        restartable_broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    broker = restartable_broker
    cameras = [{"id": f"cam{i}"} for i in range(12)]
    config = app_config(broker.port, cameras=cameras, mqtt={"port": broker.port, "reconnect_min_delay": 1,
                                                            "reconnect_max_delay": 1, "max_queued_messages": 20})
    # Each job done in the outage leaves two events: its result and its "described" event.
    recorder = watch(make_recorder, broker, config, client_id="outage-watcher", persistent=True)
    backend = GatedBackend()
    service = make_daemon(config, backend)
    started(recorder, config)
    for camera in cameras:
        recorder.publish(topic(config, camera["id"], "snapshot"), images.jpeg(seed=len(camera["id"])))
    wait_until(lambda: service.scheduler.depth == 11)  # one in flight, eleven waiting
    before = len(recorder.messages)

    broker.stop()
    wait_until(lambda: not service.connection.connected)
    backend.gate.set()  # twelve results while the broker is down: ten may wait
    # All twelve done: 24 events, 20 kept. (Restarted at the first drop, the broker came back before
    # the last jobs ended when they were slow, and fewer were dropped.)
    wait_until(lambda: service.publisher.dropped == 4)
    broker.start()

    after = recorder.since(before)
    recorder.wait_for(f"{config.base_topic}/{config.node_id}/status", lambda m: after(m) and m.payload == b"online")
    for camera in cameras:
        recorder.wait_for(f"{config.discovery.prefix}/device/edge_vlm_{config.node_id}/{camera['id']}/config", after)
        recorder.wait_for(topic(config, camera["id"], "description"), after)
    # Events are handled in order: once this error is out, every waiting result was sent before it.
    recorder.publish(topic(config, "nowhere", "trigger"), "{}")
    recorder.wait_for(topic(config, "nowhere", "error"), after)
    results = [m.json()["camera"] for m in recorder.messages[before:] if m.topic.endswith("/result")]
    assert sorted(results) == sorted(f"cam{i}" for i in range(2, 12))  # the two oldest were dropped
