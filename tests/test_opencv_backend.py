"""The built-in opencv backend on real photographs."""

from __future__ import annotations

import numpy as np
import pytest

from edge_vlm.backends.opencv import OpencvBackend, sentence
from edge_vlm.config.automation import OPENCV_DETAILS
from edge_vlm.config.models import OpencvBackendConfig
from edge_vlm.errors import BackendError
from edge_vlm.frames import Frame, decode_image
from edge_vlm.jobs import Description
from tests.support import images


@pytest.fixture(scope="module")
def backend() -> OpencvBackend:
    backend = OpencvBackend(OpencvBackendConfig())
    backend.load()
    return backend


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
