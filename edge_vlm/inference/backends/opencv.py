"""The built-in ``opencv`` backend: a factual sentence from classic computer vision, no model files.

People come from OpenCV's HOG pedestrian detector, faces from the Haar cascade that ships inside
opencv-python, light level from the mean luma, and motion from the difference with the previous
frame of the same camera. It ignores the prompt: it answers the same questions for every frame.
It runs on any CPU, is the default when no NPU model is configured, and is a useful gate.

The detectors are native code that a frame can crash (OpenCV's HOG aborts on frames smaller than
its window), so they run in a supervised worker process like the vlm backend's runtimes:
``OpencvBackend`` is the daemon's side (it scales the frame, overlapping the worker's current
job), ``OpencvAnalyzer`` the worker's. Every frame is analysed at ``analysis_size`` on its long
side, scaled up or down, so that a scene gets the same answer whatever the camera's resolution,
and padded to at least the people detector's window.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_vlm.config.models import OpencvBackendConfig
from edge_vlm.core.errors import BackendError
from edge_vlm.frames import Frame
from edge_vlm.inference.backends import Chat, one_by_one
from edge_vlm.inference.vision.preprocess import centred_on_grey
from edge_vlm.inference.worker.messages import JobDone, RunJob
from edge_vlm.inference.worker.supervisor import WorkerBackend
from edge_vlm.ingest.motion import changed_share, small_grey

logger = logging.getLogger(__name__)

FACE_CASCADE = "haarcascade_frontalface_default.xml"
# The HOG people detector's window (width, height); a smaller image crashes detectMultiScale.
HOG_WINDOW = (64, 128)
# The face cascade's last-stage weight below which a face is not counted: real faces in the samples
# score 3.7-4.5 at every scale, the false ones that come and go with resampling 0.7-0.9.
MIN_FACE_WEIGHT = 2.0
# Mean luma thresholds (0-255) between night, dusk and day.
DUSK_LUMA = 35.0
DAY_LUMA = 90.0
# Motion: the share of pixels that moved (edge_vlm.ingest.motion) grades it.
SOME_MOTION = 0.005
STRONG_MOTION = 0.05


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _light(luma: float) -> str:
    return "day" if luma >= DAY_LUMA else "dusk" if luma >= DUSK_LUMA else "night"


def _motion(fraction: float) -> str:
    return "strong" if fraction >= STRONG_MOTION else "some" if fraction >= SOME_MOTION else "none"


def _inside(point: tuple[float, float], box: Sequence[int]) -> bool:
    x, y, w, h = (float(v) for v in box)
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def sentence(people: int, faces: int, light: str, motion: str | None) -> str:
    parts = ["no people" if people == 0 else _count(people, "person", "people")]
    if faces:
        parts.append(_count(faces, "face", "faces") + " visible")
    parts.append({"day": "daylight", "dusk": "dusk light", "night": "dark scene"}[light])
    if motion is not None:
        parts.append("no motion" if motion == "none" else f"{motion} motion")
    text = "; ".join(parts)
    return text[0].upper() + text[1:]


def sequence(people: list[int]) -> str:
    """What the people counts of a clip's frames (oldest first) say happened."""
    most = max(people)
    who = _count(most, "person", "people") if most else ""
    if not most:
        return f"No people in any of the {len(people)} frames"
    if people[0] == 0 and people[-1] == 0:
        return f"{who} came and left"
    if people[0] == 0:
        return f"{who} came and {'is' if most == 1 else 'are'} still there"
    if people[-1] == 0:
        return f"{who} {'was' if most == 1 else 'were'} there and left"
    return f"{who} throughout the {len(people)} frames"


class OpencvBackend(WorkerBackend):
    """The daemon's side: frames are scaled here, analysed in the worker."""

    config: OpencvBackendConfig

    def __init__(self, config: OpencvBackendConfig, log_level: str = "INFO") -> None:
        super().__init__(config, log_level, config.analysis_size)
        self.name = "opencv"
        self.min_long_side = config.analysis_size

    def prepare(self, frame: Frame) -> np.ndarray:
        """The frame scaled to ``analysis_size`` on its long side, up or down (a clip's grid: each cell)."""
        across = 1 if frame.clip is None else frame.clip.columns
        return analysis_input(frame.pixels, self.config.analysis_size * across)

    def conversation(self, prepared: np.ndarray | None, frame: Frame | None) -> AbstractContextManager[Chat]:
        return one_by_one(self, prepared, frame)  # the analysis keeps nothing a question could reuse


def analysis_input(rgb: np.ndarray, size: int) -> np.ndarray:
    """``rgb`` scaled to ``size`` pixels on its long side (at least 1 on the short one)."""
    height, width = rgb.shape[:2]
    scale = size / max(width, height)
    if scale == 1:
        return rgb
    scaled = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, scaled, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


class OpencvAnalyzer:
    """The detectors, loaded once in the worker process."""

    def __init__(self, config: OpencvBackendConfig) -> None:
        self.config = config
        self.input_size = config.analysis_size
        self._hog: cv2.HOGDescriptor | None = None
        self._faces: cv2.CascadeClassifier | None = None
        self._previous: dict[str, np.ndarray] = {}  # camera -> small blurred grey frame

    def load(self) -> str:
        hog = cv2.HOGDescriptor()
        hog.setSVMDetector(np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), dtype=np.float32))
        self._hog = hog
        if self.config.detect_faces:
            path = Path(cv2.data.haarcascades) / FACE_CASCADE  # type: ignore[attr-defined]  # stubs omit cv2.data
            faces = cv2.CascadeClassifier(str(path))
            if faces.empty():
                raise BackendError(f"OpenCV's face cascade could not be loaded from {path}")
            self._faces = faces
        return f"OpenCV {cv2.__version__}, analysis size {self.input_size} px"

    def close(self) -> None:
        self._hog = None
        self._faces = None
        self._previous.clear()

    def abort(self) -> None:
        pass  # a frame takes a fraction of a second; a stuck one is killed by the supervisor

    def end_conversation(self, conversation: int) -> None:
        pass  # every frame is analysed afresh

    def run(self, job: RunJob, aborted: Callable[[], bool], told: Callable[[str], None] | None) -> JobDone:
        """A frame's sentence, told whole (``told`` unused: it is not written word by word)."""
        started = time.monotonic()
        if job.pixels is None:  # the daemon sends none (answers_text is False); a bug if it did
            raise BackendError("the opencv backend answers questions about an image only")
        if job.grid is None:
            text, timings, details = self.analyze(job.pixels, job.camera)
        else:
            text, timings, details = self.analyze_clip(job.pixels, job.camera, job.grid, numbered=job.numbered)
        return JobDone(job.job_id, text, timings, details, started=started, finished=time.monotonic())

    def analyze_clip(self, rgb: np.ndarray, camera: str, grid: tuple[int, int, int], *,
                     numbered: bool = False) -> tuple[str, dict[str, float], dict[str, Any]]:
        """A clip's grid, cell by cell, oldest first: who came and went, then the newest frame's
        sentence; or (``numbered``: pictures a request sent) each picture's sentence by its number."""
        columns, rows, count = grid
        height, width = rgb.shape[0] // rows, rgb.shape[1] // columns
        timings: dict[str, float] = {}
        people: list[int] = []
        texts: list[str] = []
        for index in range(count):
            top, left = (index // columns) * height, (index % columns) * width
            # the cells' own motion baseline: the camera's is its live frames' (none between pictures sent)
            text, cell_timings, details = self.analyze(rgb[top:top + height, left:left + width], f"{camera} clip")
            if numbered:
                self._previous.pop(f"{camera} clip", None)
            people.append(int(details["people"]))
            texts.append(f"{index + 1}: {text}")
            for stage, ms in cell_timings.items():
                timings[stage] = round(timings.get(stage, 0.0) + ms, 2)
        self._previous.pop(f"{camera} clip", None)
        described = "; ".join(texts) if numbered else f"{sequence(people)}; now: {text}"
        return described, timings, {**details, "people_per_frame": people}

    def analyze(self, rgb: np.ndarray, camera: str) -> tuple[str, dict[str, float], dict[str, Any]]:
        """The sentence, stage timings and details for one prepared frame of ``camera``."""
        if self._hog is None:
            raise BackendError("the opencv backend is not loaded")
        timings: dict[str, float] = {}
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)

        start = time.perf_counter()
        detected = centred_on_grey(rgb, *HOG_WINDOW)  # thin and tiny frames
        bodies, weights = self._hog.detectMultiScale(detected, winStride=(8, 8), padding=(8, 8), scale=1.05)
        minimum = self.config.people_min_confidence
        confident = [box for box, w in zip(bodies, np.ravel(weights), strict=True) if w >= minimum]
        timings["people"] = _ms_since(start)

        faces: list[Sequence[int]] = []
        if self._faces is not None:
            start = time.perf_counter()
            found, _, weights = self._faces.detectMultiScale3(
                grey, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24), outputRejectLevels=True)
            faces = [face for face, weight in zip(found, np.ravel(weights), strict=True) if weight >= MIN_FACE_WEIGHT]
            timings["faces"] = _ms_since(start)
        # A face outside every detected body is one more person (HOG needs the whole figure).
        lone_faces = [f for f in faces if not any(_inside((f[0] + f[2] / 2, f[1] + f[3] / 2), b) for b in confident)]
        people = len(confident) + len(lone_faces)

        start = time.perf_counter()
        luma = float(grey.mean())
        motion_fraction = self._motion_fraction(camera, grey)
        timings["light_motion"] = _ms_since(start)

        light = _light(luma)
        motion = None if motion_fraction is None else _motion(motion_fraction)
        return sentence(people, len(faces), light, motion), timings, {
            "people": people,
            "faces": len(faces),
            "light": light,
            "brightness": round(luma, 1),
            "motion": motion,
            "motion_fraction": None if motion_fraction is None else round(motion_fraction, 4),
        }

    def _motion_fraction(self, camera: str, grey: np.ndarray) -> float | None:
        small = small_grey(grey)
        previous, self._previous[camera] = self._previous.get(camera), small
        return None if previous is None else changed_share(previous, small)


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)
