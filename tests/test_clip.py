"""Clips through the whole daemon, from a real RTSP stream (issue 16): a trigger that asks for what
happened gets the key frames of the camera's last seconds, the object that came and went among
them, as one image."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import numpy as np
import pytest

from edge_vlm.frames import Frame
from edge_vlm.service import Service
from tests.conftest import ServerFactory, app_config
from tests.support.backends import GatedBackend
from tests.support.broker import Mosquitto
from tests.support.mqtt import Recorder
from tests.test_cameras import rtsp_camera, watch

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
    config = app_config(broker.port, cameras=[rtsp_camera(server.url, clip=CLIP),
                                              {"id": "porch"}])  # an mqtt camera: no buffer
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
    ask = '"prompt": "What happened in {span}?"'  # the placeholder says what the image covers
    recorder.publish(f"{config.base_topic}/gate/trigger", '{"id": "c1", "clip": true, %s}' % ask)
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
    assert backend.prompts[-1].endswith(f"What happened in the last {max(1, round(times[-1] - times[0]))} seconds?")
    assert result["image_size"] == [frame.pixels.shape[1], frame.pixels.shape[0]]

    # only the seconds asked for: the object left more than 3 s ago, so a 2 s clip never shows it
    asked_at = time.time()
    recorder.publish(f"{config.base_topic}/gate/trigger", '{"id": "c0", "clip": 2}')
    short = recorder.wait_json(f"{config.base_topic}/gate/result", id="c0")["clip"]
    assert all(datetime.fromisoformat(t).timestamp() >= asked_at - 2.5 for t in short["frames"])
    assert not any(white_square(cell) for cell in cells_of(backend.frames[-1]))

    # a trigger without clip is the frame of the moment; a camera without a buffer says why not
    recorder.publish(f"{config.base_topic}/gate/trigger", '{"id": "c2", %s}' % ask)
    assert recorder.wait_json(f"{config.base_topic}/gate/result", id="c2")["clip"] is None
    assert backend.prompts[-1] == "What happened in this moment?"
    recorder.publish(f"{config.base_topic}/porch/trigger", '{"id": "c3", "clip": 5}')
    error = recorder.wait_json(f"{config.base_topic}/porch/error", id="c3")
    assert error["error"] == "no_clip" and "only a camera with a persistent rtsp source" in error["message"]
