"""The built-in opencv backend on real photographs."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from edge_vlm.config.automation import OPENCV_DETAILS
from edge_vlm.config.models import OpencvBackendConfig
from edge_vlm.core.errors import BackendError
from edge_vlm.frames import Frame, decode_image
from edge_vlm.inference.backends.opencv import OpencvBackend, sentence
from edge_vlm.inference.results import Description
from tests.support import images


@pytest.fixture(scope="module")
def backend() -> Iterator[OpencvBackend]:
    backend = OpencvBackend(OpencvBackendConfig())
    backend.load()
    yield backend
    backend.close()


def frame(data: bytes, camera: str = "cam") -> Frame:
    return decode_image(data, camera=camera, captured_at=0.0, max_bytes=10**8, max_pixels=10**8,
                        min_long_side=640)


def describe(backend: OpencvBackend, frame: Frame, prompt: str) -> Description:
    return backend.describe(backend.prepare(frame), frame, prompt)


def test_a_person_with_a_face_in_daylight(backend: OpencvBackend) -> None:
    described = describe(backend, frame(images.sample("front_door"), "porch"), "ignored")
    assert described.text == "1 person; 1 face visible; daylight"
    assert described.details == {"people": 1, "faces": 1, "light": "day", "brightness": 115.4,
                                 "motion": None, "motion_fraction": None}
    assert set(described.timings_ms) == {"people", "faces", "light_motion"}
    assert set(described.details) == set(OPENCV_DETAILS)  # what field alert rules may name


def test_no_people_at_night(backend: OpencvBackend) -> None:
    described = describe(backend, frame(images.sample("garden_night"), "garden"), "ignored")
    assert described.text == "No people; dark scene"
    assert described.details["light"] == "night"


def test_motion_is_measured_against_the_previous_frame_of_the_same_camera(backend: OpencvBackend) -> None:
    still = images.jpeg(640, 360, seed=5)
    moved = images.jpeg(640, 360, seed=6)
    assert describe(backend, frame(still, "m"), "").details["motion"] is None  # nothing to compare with
    assert describe(backend, frame(still, "m"), "").text.endswith("; no motion")
    assert describe(backend, frame(still, "other"), "").details["motion"] is None  # per camera
    changed = describe(backend, frame(moved, "m"), "")
    assert changed.text.endswith("; strong motion")
    assert changed.details["motion_fraction"] > 0.05


def test_a_small_change_is_some_motion(backend: OpencvBackend) -> None:
    pixels = images.scene(640, 360, seed=7)
    patched = pixels.copy()
    patched[100:160, 200:300] = 255 - patched[100:160, 200:300]  # ~2.6 % of the frame changes
    describe(backend, frame(images.encode(pixels), "p"), "")
    described = describe(backend, frame(images.encode(patched), "p"), "")
    assert described.details["motion"] == "some"


def test_light_levels_follow_brightness(backend: OpencvBackend) -> None:
    for level, light in ((10, "night"), (60, "dusk"), (200, "day")):
        flat = np.full((120, 160, 3), level, dtype=np.uint8)
        assert describe(backend, frame(images.encode(flat), f"l{level}"), "").details["light"] == light


def test_sentence_wording() -> None:
    assert sentence(2, 1, "night", "strong") == "2 people; 1 face visible; dark scene; strong motion"
    assert sentence(0, 0, "dusk", None) == "No people; dusk light"
    assert sentence(1, 3, "day", "none") == "1 person; 3 faces visible; daylight; no motion"


def test_describe_before_load_is_an_error() -> None:
    with pytest.raises(BackendError, match="not loaded"):
        describe(OpencvBackend(OpencvBackendConfig()), frame(images.jpeg()), "")


# Valid frames that crashed OpenCV's HOG (a glibc abort inside detectMultiScale) when it ran in the
# daemon: smaller than the detector's 64x128 window, or thin enough to become so when scaled.
SMALL_AND_THIN = [(1, 1), (2, 2), (8, 8), (50, 50), (128, 64), (1600, 200), (1920, 200), (1, 10000), (10000, 1)]


@pytest.mark.parametrize(("width", "height"), SMALL_AND_THIN)
def test_small_and_thin_frames_are_described(backend: OpencvBackend, width: int, height: int) -> None:
    worker = backend.worker_pid
    described = describe(backend, frame(images.encode(images.scene(width, height)), f"thin{width}x{height}"), "")
    assert described.details["people"] >= 0 and described.text.endswith(("daylight", "dusk light", "dark scene"))
    assert backend.worker_pid == worker  # described by the same worker: nothing crashed


@pytest.mark.parametrize("name", ["front_door", "driveway", "garden_night"])
def test_the_same_scene_gets_the_same_answer_at_any_resolution(backend: OpencvBackend, name: str) -> None:
    original = images.sample(name)
    expected = describe(backend, frame(original, f"{name}-original"), "").text
    source = frame(original, "").pixels
    for long_side, fmt in [(320, "JPEG"), (1280, "JPEG"), (4000, "JPEG"), (4000, "PNG")]:
        height, width = source.shape[:2]
        scale = long_side / max(width, height)
        resized = cv2.resize(source, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_CUBIC)
        text = describe(backend, frame(images.encode(resized, fmt), f"{name}-{long_side}-{fmt}"), "").text
        assert text == expected, f"{name} at {long_side} px ({fmt})"


def test_a_crash_in_the_analyzer_takes_down_its_worker_only_and_the_worker_comes_back() -> None:
    backend = OpencvBackend(OpencvBackendConfig(restart_max_delay_s=1))
    availability: list[tuple[bool, str]] = []
    lost = threading.Event()

    def listener(available: bool, reason: str) -> None:
        availability.append((available, reason))
        if not available:
            lost.set()

    backend.on_availability(listener)
    backend.load()
    try:
        first = backend.worker_pid
        assert first is not None
        os.kill(first, signal.SIGSEGV)  # what OpenCV did on a 1x1 frame, done by hand
        assert lost.wait(30)
        # The next job waits for the restarted worker (bounded by job_timeout_s) and is described.
        described = describe(backend, frame(images.sample("front_door")), "")
        assert described.text == "1 person; 1 face visible; daylight"
        assert backend.worker_pid not in (None, first)
        assert availability == [(True, "ready"), (False, "worker was killed by SIGSEGV"), (True, "ready")]
    finally:
        backend.close()
