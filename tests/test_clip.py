"""Clips through the whole daemon, from a real RTSP stream (issue 16): a trigger that asks for what
happened gets the key frames of the camera's last seconds, the object that came and went among
them, as one image."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime

import numpy as np
import pytest

from edge_vlm.frames import Frame
from edge_vlm.frames.clip import span_words
from edge_vlm.service import Service
from tests.conftest import ServerFactory, app_config
from tests.support import http_server as cam
from tests.support import images
from tests.support.backends import GatedBackend
from tests.support.broker import Mosquitto
from tests.support.frigate_api import frigate_api
from tests.support.mqtt import Recorder
from tests.test_cameras import online, rtsp_camera, watch
from tests.test_frigate import frigate_event

pytestmark = pytest.mark.mqtt

Daemon = Callable[..., Service]
Recorders = Callable[..., Recorder]
CLIP = {"seconds": 10, "fps": 4, "long_side": 640, "frames": 4}


def white_square(cell: np.ndarray) -> bool:
    """Whether the stream's bright square is in this cell of a composite (below its time label)."""
    height = int(cell.shape[0])
    white = int((cell[height // 4:] > 240).all(axis=2).sum())
    return white > (height // 6) ** 2 // 2


def cells_of(frame: Frame) -> list[np.ndarray]:
    """The pictures of a clip's composite, oldest first (the frame itself when it is one)."""
    assert frame.clip is not None
    grid = frame.clip.grid
    if grid is None:
        return [frame.pixels]
    columns, rows, count = grid
    height, width = frame.pixels.shape[0] // rows, frame.pixels.shape[1] // columns
    return [frame.pixels[r * height:(r + 1) * height, c * width:(c + 1) * width]
            for r in range(rows) for c in range(columns)][:count]


def test_a_clip_shows_the_object_that_came_and_went_before_the_trigger(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders, rtsp_server: ServerFactory) -> None:
    server = rtsp_server(fps=10)
    config = app_config(broker.port, cameras=[rtsp_camera(server.url, clip=CLIP), {"id": "porch"},  # no clip
                                              {"id": "yard", "source": {"type": "rtsp", "url": server.url,
                                                                        "mode": "on_demand"}}])
    recorder = watch(make_recorder, broker, config)
    backend = GatedBackend()
    backend.gate.set()
    make_daemon(config, backend)
    recorder.wait_for(f"{config.base_topic}/gate/stream", lambda m: m.payload == b"ON")

    # the scene: still, an object comes at 3 s and leaves at 5 s, the trigger at 8 s
    started = time.time()
    time.sleep(3)  # the scene's timeline, not a wait for the daemon
    came = time.time()
    server.start_motion()
    time.sleep(2)
    server.stop_motion()
    went = time.time()
    time.sleep(3)
    ask = {"prompt": "What happened in {span}?"}  # the placeholder says what the image covers
    recorder.publish(f"{config.base_topic}/gate/trigger", json.dumps({"id": "c1", "clip": True, **ask}))
    result = recorder.wait_json(f"{config.base_topic}/gate/result", id="c1")

    times = [datetime.fromisoformat(t).timestamp() for t in result["clip"]["frames"]]
    assert 2 <= len(times) <= 4 and times == sorted(times)
    assert times[0] >= started - 10.5  # never older than the buffer
    assert any(came <= t <= went + 0.5 for t in times)  # the object's time is among them
    frame = backend.frames[-1]
    assert frame.clip is not None and np.allclose(frame.clip.times, times, rtol=0, atol=0.002)
    cells = cells_of(frame)
    assert any(white_square(cell) for cell in cells)  # ...and the object in its picture
    assert not white_square(cells[-1])  # gone by now
    assert backend.prompts[-1].startswith(f"The image is a grid of {len(times)} frames")
    assert backend.prompts[-1].endswith(f"What happened in {span_words(frame.clip.span_s)}?")
    assert result["image_size"] == [frame.pixels.shape[1], frame.pixels.shape[0]]

    # only the seconds asked for: the object left more than 3 s ago, so a 2 s clip never shows it
    asked_at = time.time()
    recorder.publish(f"{config.base_topic}/gate/trigger", '{"id": "c0", "clip": 2}')
    short = recorder.wait_json(f"{config.base_topic}/gate/result", id="c0")["clip"]
    assert all(datetime.fromisoformat(t).timestamp() >= asked_at - 2.5 for t in short["frames"])
    assert not any(white_square(cell) for cell in cells_of(backend.frames[-1]))

    # a trigger without clip is the frame of the moment; a camera without a buffer says why not
    recorder.publish(f"{config.base_topic}/gate/trigger", json.dumps({"id": "c2", **ask}))
    assert recorder.wait_json(f"{config.base_topic}/gate/result", id="c2")["clip"] is None
    assert backend.prompts[-1] == "What happened in this moment?"
    recorder.publish(f"{config.base_topic}/porch/trigger", '{"id": "c3", "clip": 5}')
    error = recorder.wait_json(f"{config.base_topic}/porch/error", id="c3")
    assert error["error"] == "no_clip" and "set cameras[].clip to keep its last seconds" in error["message"]
    recorder.publish(f"{config.base_topic}/yard/trigger", '{"id": "c4", "clip": true}')
    error = recorder.wait_json(f"{config.base_topic}/yard/error", id="c4")
    assert error["error"] == "no_clip" and "mode on_demand keeps no stream open" in error["message"]


def clip_cells(recorder: Recorder, backend: GatedBackend, topic: str, came: float, went: float,
               request_id: str = "clip") -> list[np.ndarray]:
    """The key frames of the clip asked for as ``request_id``, from its result on ``topic``, checked
    against the scene: in time order, the object's time among them."""
    result = recorder.wait_json(topic, id=request_id)
    times = [datetime.fromisoformat(t).timestamp() for t in result["clip"]["frames"]]
    assert 2 <= len(times) <= 4 and times == sorted(times)
    assert any(came <= t <= went + 0.3 for t in times)
    frame = backend.frames[-1]
    assert frame.clip is not None and np.allclose(frame.clip.times, times, rtol=0, atol=0.002)
    return cells_of(frame)


def test_an_http_camera_is_polled_for_its_clip(broker: Mosquitto, make_daemon: Daemon,
                                               make_recorder: Recorders) -> None:
    with cam.serve() as server:
        config = app_config(broker.port, cameras=[{"id": "yard", "clip": CLIP, "source": {
            "type": "http", "url": f"{server.url}/scene.jpg"}}])
        recorder = watch(make_recorder, broker, config)
        backend = GatedBackend()
        backend.gate.set()
        make_daemon(config, backend)
        online(recorder, config)

        time.sleep(1)  # the scene's timeline: the yard, an object for 1.5 s (6 polls at 4 fps), the yard
        came = time.time()
        server.object_in_view.set()
        time.sleep(1.5)
        server.object_in_view.clear()
        went = time.time()
        time.sleep(1)
        recorder.publish(f"{config.base_topic}/yard/trigger", '{"id": "clip", "clip": true}')
        cells = clip_cells(recorder, backend, f"{config.base_topic}/yard/result", came, went)
        assert any(white_square(cell) for cell in cells) and not white_square(cells[-1])


def test_an_mqtt_camera_keeps_the_snapshots_it_received_for_its_clip(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    """A camera that publishes a frame every so often, kept and not described (describe_snapshots)."""
    config = app_config(broker.port, cameras=[{"id": "porch", "clip": {**CLIP, "fps": 10},
                                               "describe_snapshots": False}])
    recorder = watch(make_recorder, broker, config)
    backend = GatedBackend()
    backend.gate.set()
    make_daemon(config, backend)
    online(recorder, config)
    yard = images.scene(640, 360, seed=3)
    times = []
    for pixels in (yard, images.with_square(yard), yard):
        times.append(time.time())
        recorder.publish(f"{config.base_topic}/porch/snapshot", images.encode(pixels))
        time.sleep(0.2)  # the scene's timeline: snapshots in time slots of their own (1/fps), or one is not kept

    recorder.publish(f"{config.base_topic}/porch/trigger", '{"id": "clip", "clip": true}')  # after them, in order
    result = f"{config.base_topic}/porch/result"
    cells = clip_cells(recorder, backend, result, times[1], times[2])
    assert [white_square(cell) for cell in cells] == [True, False]  # the first yard looks like the last: not kept
    assert [m.json()["id"] for m in recorder.on(result)] == ["clip"]  # the snapshots were kept, not described


def square_x(cell: np.ndarray) -> float | None:
    """Where the white square is in a cell, as a share of its width (None: none there)."""
    if not white_square(cell):
        return None
    columns = np.nonzero((cell[cell.shape[0] // 4:] > 240).all(axis=2))[1]
    return float(columns.mean()) / int(cell.shape[1])


def test_a_frigate_event_is_described_with_the_seconds_before_its_snapshot(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    with cam.serve() as server, frigate_api() as api:
        prefix = f"frigate{time.monotonic_ns()}"
        camera = {"id": "front", "clip": CLIP, "source": {"type": "http", "url": f"{server.url}/scene.jpg"},
                  "frigate": {"snapshot": "http", "clip": True, "event_types": ["new", "end"]}}
        config = app_config(broker.port, frigate={"enabled": True, "topic_prefix": prefix, "api_url": api.url},
                            cameras=[camera])
        recorder = watch(make_recorder, broker, config)
        backend = GatedBackend()
        backend.gate.set()
        make_daemon(config, backend)
        online(recorder, config)
        # Frigate's picture of the person, told apart from the camera's frames by where it is
        api.snapshots.update(e1=images.encode(images.with_square(images.scene(640, 360, seed=3), at=0.2)),
                             e2=cam.OBJECT_JPEG)

        time.sleep(1)  # the scene's timeline: the yard; a person comes, Frigate's event and its snapshot
        came = time.time()
        server.object_in_view.set()
        time.sleep(1)
        recorder.publish(f"{prefix}/events", frigate_event("e1"))
        cells = clip_cells(recorder, backend, f"{config.base_topic}/front/result", came, time.time(), "e1")
        assert square_x(cells[0]) is None  # the yard before the person came...
        assert [round(square_x(cell) or 0, 1) for cell in cells[1:-1]] in ([], [0.5])  # (the camera saw them)...
        assert (square_x(cells[-1]) or 1) < 0.3  # ...and last the event's snapshot, not the camera's frame

        # an object described at its end: its snapshot alone (the seconds before the end show where it was)
        recorder.publish(f"{prefix}/events", frigate_event("e2", "end"))
        ended = recorder.wait_json(f"{config.base_topic}/front/result", id="e2")
        assert ended["clip"] is None and backend.frames[-1].clip is None
