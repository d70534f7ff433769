"""Motion: how much of a frame changed since the previous one, and when that makes an episode.

Frames are compared small (160 px wide, grey, blurred), so it stays cheap: about a millisecond a
frame. An episode starts when at least ``min_area`` of the frame has been changing for
``min_duration_s``; it asks for one description, unless the camera's last one was less than
``cooldown_s`` ago; it ends after ``quiet_s`` without motion.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from edge_vlm.camera_state import CameraState, CameraStates
from edge_vlm.config.models import AppConfig
from edge_vlm.config.sources import MotionConfig
from edge_vlm.core.contracts import Origin
from edge_vlm.ingest.trigger import Trigger

WIDTH = 160
PIXEL_DELTA = 25  # grey levels a pixel must change by to count as moved


def small_grey(image: np.ndarray, *, colour: str = "BGR") -> np.ndarray:
    """``image`` (BGR, RGB or grey) as a small blurred grey picture for comparing."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if colour == "BGR"
                                                             else cv2.COLOR_RGB2GRAY)
    height, width = grey.shape[:2]
    small = cv2.resize(grey, (WIDTH, max(1, round(height * WIDTH / width))), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(small, (5, 5), 0)


def changed_share(previous: np.ndarray, current: np.ndarray, watched: np.ndarray | None = None) -> float | None:
    """The share of (watched) pixels that changed, or None when the two cannot be compared."""
    if previous.shape != current.shape:
        return None
    moved = cv2.absdiff(previous, current) > PIXEL_DELTA
    if watched is None:
        return float(np.count_nonzero(moved)) / moved.size
    return float(np.count_nonzero(moved & watched)) / max(1, int(np.count_nonzero(watched)))


def watched_area(shape: tuple[int, ...], ignore: list[tuple[float, float, float, float]]) -> np.ndarray | None:
    """True where change counts as motion: everything but the ignored areas."""
    if not ignore:
        return None
    height, width = shape[:2]
    watched = np.ones((height, width), dtype=bool)
    for left, top, right, bottom in ignore:
        watched[round(top * height):round(bottom * height), round(left * width):round(right * width)] = False
    return watched


class MotionDetector:
    """Calls ``on_episode`` once per motion episode of the frames it is fed.

    A stream's reader thread ``offer()``s frames and goes straight back to reading; the detector's
    own thread compares the newest one (older ones it had no time for are dropped), so motion
    detection can never make the reader fall behind the stream.
    """

    def __init__(self, config: MotionConfig, on_episode: Callable[[], None]) -> None:
        self.config = config
        self._enabled = config.enabled
        self.on_episode = on_episode
        self.episodes = 0
        self.suppressed = 0  # episodes within the cooldown
        self.cpu_s = 0.0  # CPU time spent comparing frames
        self._previous: np.ndarray | None = None
        self._watched: np.ndarray | None = None
        self._moving_since: float | None = None
        self._last_motion = float("-inf")
        self._in_episode = False
        self._last_trigger = float("-inf")
        self._offered: tuple[np.ndarray, float] | None = None
        self._offers = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, on: bool) -> None:
        if on and not self._enabled:  # a fresh start: no episode carried over from before
            self._previous, self._moving_since, self._in_episode = None, None, False
        self._enabled = on

    def follow(self, state: CameraState) -> None:
        """Run while the camera is switched on and its motion detection too."""
        self.enabled = state.watches_motion

    def start(self, name: str) -> None:
        self._thread = threading.Thread(target=self._run, name=f"edge_vlm-motion-{name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._offers:
            self._stopping = True
            self._offers.notify()
        if self._thread is not None:
            self._thread.join()

    def offer(self, bgr: np.ndarray) -> None:
        """A frame of the stream, now; returns at once."""
        with self._offers:
            self._offered = (bgr, time.monotonic())
            self._offers.notify()

    def _run(self) -> None:
        while True:
            with self._offers:
                self._offers.wait_for(lambda: self._offered is not None or self._stopping)
                if self._stopping:
                    return
                assert self._offered is not None
                (bgr, at), self._offered = self._offered, None
            self.feed(bgr, at)

    def feed(self, bgr: np.ndarray, now: float) -> None:
        """One frame of the stream at ``now`` (time.monotonic())."""
        if not self._enabled:
            self._previous = None
            return
        started = time.thread_time()
        small = small_grey(bgr)
        previous, self._previous = self._previous, small
        if self._watched is None or self._watched.shape != small.shape:
            self._watched = watched_area(small.shape, self.config.ignore)
        share = None if previous is None else changed_share(previous, small, self._watched)
        self.cpu_s += time.thread_time() - started
        if share is not None:
            self._update(share >= self.config.min_area, now)

    def _update(self, moving: bool, now: float) -> None:
        config = self.config
        if not moving:
            self._moving_since = None
            if self._in_episode and now - self._last_motion >= config.quiet_s:
                self._in_episode = False
            return
        self._last_motion = now
        if self._moving_since is None:
            self._moving_since = now
        if self._in_episode or now - self._moving_since < config.min_duration_s:
            return
        self._in_episode = True
        if now - self._last_trigger < config.cooldown_s:
            self.suppressed += 1
            return
        self._last_trigger = now
        self.episodes += 1
        self.on_episode()


@runtime_checkable
class SampledStream(Protocol):
    """A source that hands a sample of its frames (BGR) to a listener: a persistent RTSP stream."""

    on_frame: Callable[[np.ndarray], None] | None
    sample_interval_s: float


def watch_streams(config: AppConfig, sources: Mapping[str, object],
                  submit: Callable[[Trigger], None]) -> dict[str, MotionDetector]:
    """A detector for each camera that watches its stream, fed the stream's sampled frames and asking
    for a description once per episode."""
    detectors = {}
    for camera in config.cameras:
        source = sources[camera.id]
        if camera.watches_stream and isinstance(source, SampledStream):
            detector = MotionDetector(camera.motion, functools.partial(_episode, submit, camera.id))
            source.on_frame, source.sample_interval_s = detector.offer, 1 / camera.motion.sample_fps
            detectors[camera.id] = detector
    return detectors


def _episode(submit: Callable[[Trigger], None], camera: str) -> None:
    submit(Trigger(camera, Origin.MOTION))


def follow_states(detectors: Mapping[str, MotionDetector], states: CameraStates) -> None:
    """Each detector runs while its camera is switched on and its motion detection too."""
    for camera, detector in detectors.items():
        detector.follow(states[camera])

    def follow(camera: str, state: CameraState) -> None:
        if camera in detectors:
            detectors[camera].follow(state)

    states.listen(follow)
