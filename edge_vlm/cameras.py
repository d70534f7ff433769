"""The cameras' own machinery: their sources, motion detectors and interval timers, and the
stream-connected state that goes with them. (Home Assistant's switches: edge_vlm.ingest.controls.)"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping

from edge_vlm.config.models import AppConfig
from edge_vlm.frames.sources import Source, create_source
from edge_vlm.frames.sources.rtsp import RtspSource
from edge_vlm.ingest.motion import MotionDetector
from edge_vlm.ingest.triggers import Trigger
from edge_vlm.intake import Intake
from edge_vlm.publish.publisher import Publisher
from edge_vlm.topics import STREAM, Outbound, Topics

logger = logging.getLogger(__name__)

ON, OFF = b"ON", b"OFF"


class Cameras:
    def __init__(self, config: AppConfig, environ: Mapping[str, str], publisher: Publisher,
                 min_long_side: int | None) -> None:
        self._config = config
        self._topics = Topics.from_config(config)
        self._publisher = publisher
        self._intake: Intake | None = None
        self.sources: dict[str, Source] = {
            c.id: create_source(c, config, environ, min_long_side=min_long_side,
                                on_state=functools.partial(self._stream_state, c.id))
            for c in config.cameras
        }
        self.detectors: dict[str, MotionDetector] = {}
        for camera in config.cameras:
            source = self.sources[camera.id]
            if camera.watches_stream and isinstance(source, RtspSource):
                detector = MotionDetector(camera.motion, functools.partial(self._motion, camera.id))
                source.on_frame = detector.offer
                source.sample_interval_s = 1 / camera.motion.sample_fps
                self.detectors[camera.id] = detector
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def attach(self, intake: Intake) -> None:
        self._intake = intake

    def _stream_state(self, camera: str, connected: bool, reason: str) -> None:
        self._publisher.send(Outbound(self._topics.camera(camera, STREAM), ON if connected else OFF, True))

    # Triggers from inside: motion and intervals

    def _motion(self, camera: str) -> None:
        if self._intake is not None:
            self._intake.trigger(Trigger(camera, "motion"))

    def start(self) -> None:
        for camera, detector in self.detectors.items():
            detector.start(camera)
        for source in self.sources.values():
            source.start()
        intervals = {c.id: c.interval_s for c in self._config.cameras if c.interval_s and c.enabled}
        if intervals:
            self._ticker = threading.Thread(target=self._tick, args=(intervals,), name="edge_vlm-interval",
                                            daemon=True)
            self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        for source in self.sources.values():  # all at once: a hung camera must not hold up the rest
            if isinstance(source, RtspSource):
                source.request_stop()
        for source in self.sources.values():
            source.stop()
        for detector in self.detectors.values():
            detector.stop()

    def _tick(self, intervals: dict[str, float]) -> None:
        due = {camera: time.monotonic() + every for camera, every in intervals.items()}
        while not self._stop.wait(max(0.0, min(due.values()) - time.monotonic())):
            now = time.monotonic()
            for camera, when in due.items():
                if when <= now:
                    due[camera] = now + intervals[camera]
                    if self._intake is not None:
                        self._intake.trigger(Trigger(camera, "interval"))

    def motion_cpu(self) -> dict[str, float]:
        """CPU seconds each camera's motion detection has used."""
        return {camera: round(detector.cpu_s, 3) for camera, detector in self.detectors.items()}
