"""Cameras through the whole daemon: RTSP and HTTP sources, motion, intervals (Frigate: test_frigate.py)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edge_vlm.config.models import AppConfig
from edge_vlm.service import Service
from tests.conftest import ServerFactory, app_config
from tests.support import images
from tests.support.broker import Mosquitto
from tests.support.http_server import PASSWORD, USER, serve
from tests.support.mqtt import Recorder
from tests.test_daemon import wait_until
from tests.test_rtsp_source import age_ms

pytestmark = pytest.mark.mqtt

Daemon = Callable[..., Service]
Recorders = Callable[..., Recorder]


def watch(make_recorder: Recorders, broker: Mosquitto, config: AppConfig) -> Recorder:
    return make_recorder(broker.port, [f"{config.base_topic}/#", f"{config.discovery.prefix}/#"])


def online(recorder: Recorder, config: AppConfig) -> None:
    recorder.wait_for(f"{config.base_topic}/{config.node_id}/status", lambda m: m.payload == b"online")


def rtsp_camera(url: str, **extra: Any) -> dict[str, Any]:
    return {"id": "gate", "source": {"type": "rtsp", "url": url, "read_timeout_s": 1, "reconnect_max_delay_s": 1},
            **extra}


def test_an_rtsp_camera_is_described_from_the_live_edge_and_its_outage_is_an_error(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders, rtsp_server: ServerFactory) -> None:
    server = rtsp_server(fps=15)
    config = app_config(broker.port, cameras=[rtsp_camera(server.url)])
    recorder = watch(make_recorder, broker, config)
    make_daemon(config)
    stream = f"{config.base_topic}/gate/stream"
    recorder.wait_for(stream, lambda m: m.payload == b"ON")

    time.sleep(2)  # idle: a plain capture would now return a frame 2 s old
    recorder.publish(f"{config.base_topic}/gate/trigger", '{"id": "t1"}')

    result = recorder.wait_json(f"{config.base_topic}/gate/result", id="t1")
    assert result["origin"] == "trigger" and result["image_size"] == [640, 360]
    image = np.asarray(Image.open(io.BytesIO(recorder.wait_for(f"{config.base_topic}/gate/image").payload)))
    grabbed = datetime.fromisoformat(result["frame_time"]).timestamp()
    # The described frame carries the server's clock: it was at most a few frames old when grabbed.
    assert age_ms(image, grabbed) < 500

    server.kill()
    off = recorder.wait_for(stream, lambda m: m.payload == b"OFF")
    recorder.publish(f"{config.base_topic}/gate/trigger", '{"id": "t2"}')
    error = recorder.wait_json(f"{config.base_topic}/gate/error", id="t2")
    assert error["error"] == "camera_unavailable"
    server.restart()
    recorder.wait_for(stream, lambda m: m.index > off.index and m.payload == b"ON")
    recorder.publish(f"{config.base_topic}/gate/trigger", '{"id": "t3"}')
    assert recorder.wait_json(f"{config.base_topic}/gate/result", id="t3")["frame_age_ms"] < 500


def test_an_http_camera_with_basic_auth(broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    with serve() as http:
        source = {"type": "http", "url": f"{http.url}/basic.jpg", "auth": "basic", "username": USER,
                  "password_env": "PORCH_PASSWORD"}
        config = app_config(broker.port, cameras=[{"id": "porch", "source": source},
                                                  {"id": "shed", "source": {**source, "password_env": "WRONG"}}])
        recorder = watch(make_recorder, broker, config)
        service = Service(config, password=None, environ={"PORCH_PASSWORD": PASSWORD, "WRONG": "nope"})
        service.start()
        try:
            online(recorder, config)
            recorder.publish(f"{config.base_topic}/porch/trigger", '{"id": "h1"}')
            recorder.publish(f"{config.base_topic}/shed/trigger", '{"id": "h2"}')
            assert recorder.wait_json(f"{config.base_topic}/porch/result", id="h1")["camera"] == "porch"
            error = recorder.wait_json(f"{config.base_topic}/shed/error", id="h2")
        finally:
            service.stop()
    assert error["error"] == "auth_failed"
    assert "$WRONG" in error["message"] and "nope" not in error["message"]


def test_motion_describes_once_per_episode_within_the_cooldown(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders, rtsp_server: ServerFactory) -> None:
    server = rtsp_server(fps=15)
    motion = {"enabled": True, "min_area": 0.01, "min_duration_s": 0.3, "quiet_s": 0.5, "cooldown_s": 600,
              "ignore": [[0, 0, 1, 0.15]]}  # the test stream's time blocks change in every frame
    config = app_config(broker.port, cameras=[rtsp_camera(server.url, motion=motion)])
    recorder = watch(make_recorder, broker, config)
    service = make_daemon(config)
    recorder.wait_for(f"{config.base_topic}/gate/stream", lambda m: m.payload == b"ON")
    detector = service.detectors["gate"]

    server.start_motion()
    result = recorder.wait_for(f"{config.base_topic}/gate/result").json()
    assert result["origin"] == "motion"
    server.stop_motion()
    wait_until(lambda: not detector._in_episode, timeout=10)
    server.start_motion()  # a second episode, within the cooldown
    wait_until(lambda: detector.suppressed == 1, timeout=10)

    assert detector.episodes == 1
    assert len(recorder.on(f"{config.base_topic}/gate/result")) == 1
    assert detector.cpu_s > 0


def test_the_motion_switch_and_its_state_survive_a_restart(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders, rtsp_server: ServerFactory) -> None:
    server = rtsp_server(fps=15)
    config = app_config(broker.port, cameras=[rtsp_camera(server.url, motion={"enabled": True})])
    recorder = watch(make_recorder, broker, config)
    state = f"{config.base_topic}/gate/motion"
    first = make_daemon(config)
    recorder.wait_for(state, lambda m: m.payload == b"ON")
    device = recorder.wait_for(f"{config.discovery.prefix}/device/edge_vlm_{config.node_id}/gate/config").json()
    assert device["cmps"]["motion"]["command_topic"] == f"{state}/set"

    recorder.publish(f"{state}/set", "OFF")
    recorder.wait_for(state, lambda m: m.payload == b"OFF")
    assert first.detectors["gate"].enabled is False
    first.stop()

    restarted = len(recorder.messages)
    second = make_daemon(config)  # configured on, but Home Assistant switched it off
    recorder.wait_for(f"{config.base_topic}/{config.node_id}/sync", recorder.since(restarted))
    wait_until(lambda: recorder.on(state)[-1].index >= restarted)
    assert second.detectors["gate"].enabled is False
    assert [m.payload for m in recorder.on(state) if m.index >= restarted] == [b"OFF"]  # never flipped on
    recorder.publish(state, b"", retain=True)


def test_an_interval_camera_skips_an_unchanged_scene(broker: Mosquitto, make_daemon: Daemon,
                                                     make_recorder: Recorders) -> None:
    config = app_config(broker.port, cameras=[{"id": "yard", "interval_s": 1, "skip_unchanged": True}])
    recorder = watch(make_recorder, broker, config)
    make_daemon(config)
    online(recorder, config)
    recorder.publish(f"{config.base_topic}/yard/snapshot", images.sample("driveway"))

    results = [m.json() for m in recorder.count(f"{config.base_topic}/yard/result", 3)]

    assert results[0]["origin"] == "snapshot"
    assert [(r["origin"], r.get("skipped")) for r in results[1:]] == [("interval", True), ("interval", True)]
    assert results[1]["reason"] == "the scene looks the same as the last frame described"
    recorder.publish(f"{config.base_topic}/yard/snapshot", images.sample("front_door"))  # a new scene
    later = recorder.wait_for(f"{config.base_topic}/yard/result", lambda m: m.json()["origin"] == "snapshot"
                              and m.index > recorder.on(m.topic)[0].index)
    assert later.json()["text"] == "1 person; 1 face visible; daylight"  # described, not skipped


