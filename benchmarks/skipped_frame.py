"""What a frame the gate skips costs in CPU: now (the gate before any work) against before (the
backend's input and the prompt made first, then the gate: the order of the daemon up to ba8db2f).

A 1920x1080 JPEG snapshot of a camera within its cooldown, and one of a camera whose scene did not
change, go through the daemon's real admission path (``Admission.own_snapshot``: decode, gate,
skip result) N times; "before" runs the same frames through the job maker (the backend's
``prepare`` and the filled prompt) ahead of the same gate, as the daemon did. CPU is the process's
(``time.process_time``), so a noisy machine's waiting does not count; after a warm-up, the two ways
alternate in five rounds and each one's median is kept; the ratio is the figure.

Run: .venv/bin/python -m benchmarks.skipped_frame [FRAMES]   (default 200)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from benchmarks import count_argument
from edge_vlm.camera_state import CameraStates
from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.core.contracts import Failure, Origin
from edge_vlm.core.stats import Stats
from edge_vlm.core.topics import Topics
from edge_vlm.frames import Frame
from edge_vlm.frames.grab import FrameGrabber
from edge_vlm.frames.sources import create_source
from edge_vlm.frames.sources.retained import RetainedImages
from edge_vlm.gate import Gate, scene_hash
from edge_vlm.inference.backends import create_backend
from edge_vlm.inference.job_maker import JobMaker
from edge_vlm.ingest.trigger import Trigger
from edge_vlm.mqtt.inbox import Received
from edge_vlm.schedule.admission import Admission
from edge_vlm.schedule.job import Job
from edge_vlm.schedule.scheduler import Scheduler
from tests.support import images

WIDTH, HEIGHT = 1920, 1080
WARM_UP = 20
ROUNDS = 5


@dataclass
class Skips:
    reasons: list[str] = field(default_factory=list)

    def refuse(self, failure: Failure, *, held: bool = False) -> None:
        raise AssertionError(f"refused: {failure}")

    def skip(self, trigger: Trigger, frame: Frame, reason: str) -> None:
        self.reasons.append(reason)


def _never_accepted(job: Job, dropped: Job | None) -> None:
    raise AssertionError(f"a skipped frame was queued: {job.request_id}")


def _cpu_ms_each(run: Callable[[], None], frames: int) -> float:
    started = time.process_time()
    for _ in range(frames):
        run()
    return (time.process_time() - started) * 1000 / frames


def main(frames: int) -> None:
    config = AppConfig.model_validate({"cameras": [
        {"id": "cooling", "cooldown_s": 3600, "skip_unchanged": False},
        {"id": "still", "cooldown_s": 0, "skip_unchanged": True},
    ]})
    backend = create_backend(config.backend)  # the built-in opencv backend; prepare() runs in this process
    stats = Stats(backend.name)
    states = CameraStates(config)
    for camera in config.cameras:
        states.update(camera.id, settled=True)
    gate = Gate(config, states)
    sources = {c.id: create_source(c, config, {}) for c in config.cameras}
    grabber = FrameGrabber(config, sources, retained=RetainedImages(print, print), min_long_side=backend.min_long_side)
    maker = JobMaker(config, states, backend)
    skips = Skips()
    admission = Admission(config, Topics.from_config(config), gate, grabber,
                          scheduler=Scheduler(stats, _never_accepted), stats=stats, make_job=maker.make,
                          not_admitted=skips)
    jpeg = images.jpeg(WIDTH, HEIGHT, seed=3, quality=90)
    still = grabber.decode(jpeg, "still", time.time())
    states.described("cooling", None, "a quiet street")
    states.described("still", scene_hash(still.pixels), "a quiet street")

    print(f"A skipped {WIDTH}x{HEIGHT} JPEG snapshot ({len(jpeg) // 1000} kB), {frames} frames each, "
          f"backend {backend.name}: CPU ms per frame")
    for camera_id in ("cooling", "still"):
        message = Received(f"{config.base_topic}/{camera_id}/snapshot", jpeg, retain=False,
                           received_at=time.monotonic(), wall_time=time.time(), size=len(jpeg))
        found = config.camera(camera_id)
        assert found is not None

        def before(camera_id: str = camera_id, cam: CameraConfig = found) -> None:
            frame = grabber.decode(jpeg, camera_id, time.time())
            trigger = Trigger(camera_id, Origin.SNAPSHOT, request_id="x")
            maker.make(trigger, cam, frame, request_id="x", capture_ms=0.0, scene=None)
            verdict = gate.frame(cam, Origin.SNAPSHOT, frame)
            assert verdict.skip is not None
            skips.skip(trigger, frame, verdict.skip)

        def now(message: Received = message) -> None:
            admission.own_snapshot(message)

        _cpu_ms_each(before, WARM_UP)
        _cpu_ms_each(now, WARM_UP)
        skips.reasons.clear()
        # Alternating rounds, the median of each: neither way gets the warmer caches or the quieter moment.
        rounds = [(_cpu_ms_each(before, frames // ROUNDS), _cpu_ms_each(now, frames // ROUNDS)) for _ in range(ROUNDS)]
        before_ms = statistics.median(r[0] for r in rounds)
        now_ms = statistics.median(r[1] for r in rounds)
        assert len(skips.reasons) == 2 * ROUNDS * (frames // ROUNDS), skips.reasons[:3]
        print(f"  {camera_id:8} ({skips.reasons[-1]}): before {before_ms:.2f} ms, now {now_ms:.2f} ms, "
              f"saved {before_ms - now_ms:.2f} ms ({before_ms / now_ms:.2f}x)")


if __name__ == "__main__":
    main(count_argument(__doc__, 200))
