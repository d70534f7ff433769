"""The gate: a trigger's camera checked before its frame is grabbed, a frame that came by itself
checked before anything is made of it; and admission never makes a job of a skipped frame."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edge_vlm import gate as gate_module
from edge_vlm.camera_state import CameraStates
from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.core.contracts import Failure, Origin
from edge_vlm.core.errors import ErrorCode, InputError
from edge_vlm.core.stats import Stats
from edge_vlm.core.topics import Topics
from edge_vlm.frames import Frame
from edge_vlm.frames.grab import FrameGrabber
from edge_vlm.frames.sources import create_source
from edge_vlm.frames.sources.retained import RetainedImages
from edge_vlm.gate import Gate, scene_hash
from edge_vlm.ingest.trigger import Trigger
from edge_vlm.mqtt.inbox import Received
from edge_vlm.schedule.admission import Admission
from edge_vlm.schedule.job import Job
from edge_vlm.schedule.scheduler import Scheduler
from tests.support import images

CONFIG = AppConfig.model_validate({"cameras": [
    {"id": "porch", "cooldown_s": 60},
    {"id": "yard", "skip_unchanged": True},
    {"id": "off", "enabled": False},
]})


def camera(camera_id: str) -> CameraConfig:
    found = CONFIG.camera(camera_id)
    assert found is not None
    return found


def frame(camera_id: str, seed: int = 0) -> Frame:
    return Frame(camera_id, images.scene(64, 48, seed), (64, 48), b"", "JPEG", time.time())


def test_a_trigger_for_an_unknown_or_switched_off_camera_is_refused() -> None:
    states = CameraStates(CONFIG)
    gate = Gate(CONFIG, states)
    states.update("porch", enabled=False)
    refused = {}
    for camera_id in ("nowhere", "off", "porch"):
        with pytest.raises(InputError) as error:
            gate.camera(camera_id)
        refused[camera_id] = error.value.code
    assert refused == {"nowhere": ErrorCode.UNKNOWN_CAMERA, "off": ErrorCode.CAMERA_DISABLED,
                       "porch": ErrorCode.CAMERA_DISABLED}
    assert gate.camera("yard") == camera("yard")


def test_the_cooldown_holds_back_what_nobody_asked_for_only() -> None:
    states = CameraStates(CONFIG)
    gate = Gate(CONFIG, states)
    assert gate.frame(camera("porch"), Origin.SNAPSHOT, frame("porch")).skip is None  # nothing described yet
    states.described("porch", None, "a cat")
    for origin in (Origin.SNAPSHOT, Origin.MOTION, Origin.INTERVAL, Origin.FRIGATE):
        assert gate.frame(camera("porch"), origin, frame("porch")).skip == "within the camera's cooldown of 60 s"
    for origin in (Origin.TRIGGER, Origin.REQUEST):
        assert gate.frame(camera("porch"), origin, frame("porch")).skip is None


def test_an_update_of_an_admitted_description_passes_the_cooldown_and_only_that() -> None:
    states = CameraStates(CONFIG)
    gate = Gate(CONFIG, states)
    gate.admitted("porch", "event-1")  # a Frigate event, queued before its name came
    states.described("porch", None, "another event, described meanwhile")
    assert gate.frame(camera("porch"), Origin.FRIGATE, frame("porch"), revises="event-1").skip is None
    # one whose first description never went out (held back itself) is a new one: held back again
    assert gate.frame(camera("porch"), Origin.FRIGATE, frame("porch"), revises="event-0").skip is not None
    for n in range(gate_module.KEPT_IDS):
        gate.admitted("porch", f"later-{n}")
    assert gate.frame(camera("porch"), Origin.FRIGATE, frame("porch"), revises="event-1").skip is not None


def test_an_unchanged_scene_is_skipped_and_a_changed_one_carries_its_hash() -> None:
    states = CameraStates(CONFIG)
    gate = Gate(CONFIG, states)
    first = frame("yard", seed=1)
    states.described("yard", scene_hash(first.pixels), "a quiet yard")
    same = gate.frame(camera("yard"), Origin.SNAPSHOT, first)
    assert same.skip == "the scene looks the same as the last frame described"
    changed = frame("yard", seed=2)
    admitted = gate.frame(camera("yard"), Origin.INTERVAL, changed)
    assert (admitted.skip, admitted.scene) == (None, scene_hash(changed.pixels))
    assert gate.frame(camera("yard"), Origin.FRIGATE, first).skip is None  # an event is no unchanged scene


class Counting:
    def __init__(self) -> None:
        self.made: list[str] = []
        self.skipped: list[str] = []
        self.refused: list[Failure] = []

    def make(self, trigger: Trigger, camera: CameraConfig | None, frame: Frame | None, *, request_id: str,
             capture_ms: float, scene: int | None) -> Job:
        self.made.append(request_id)
        return Job(trigger.camera, frame, np.zeros(1), "p", request_id, trigger.origin, received_at=0.0)

    def refuse(self, failure: Failure, *, held: bool = False) -> None:
        self.refused.append(failure)

    def skip(self, trigger: Trigger, frame: Frame, reason: str) -> None:
        self.skipped.append(reason)


def test_admission_makes_no_job_of_a_skipped_snapshot() -> None:
    states = CameraStates(CONFIG)
    for c in CONFIG.cameras:
        states.update(c.id, settled=True)
    counting = Counting()
    accepted: list[str] = []
    sources = {c.id: create_source(c, CONFIG, {}) for c in CONFIG.cameras}
    grabber = FrameGrabber(CONFIG, sources, retained=RetainedImages(print, print), min_long_side=None)
    scheduler = Scheduler(Stats("test"), lambda job, dropped: accepted.append(job.request_id))
    admission = Admission(CONFIG, Topics.from_config(CONFIG), Gate(CONFIG, states), grabber, scheduler=scheduler,
                          stats=Stats("test"), make_job=counting.make, not_admitted=counting)
    jpeg = images.jpeg(320, 180, seed=4)

    def snapshot() -> None:
        admission.own_snapshot(Received(f"{CONFIG.base_topic}/porch/snapshot", jpeg, retain=False,
                                        received_at=time.monotonic(), wall_time=time.time(), size=len(jpeg)))

    snapshot()
    assert (len(counting.made), len(accepted)) == (1, 1)
    states.described("porch", None, "a cat")
    snapshot()
    snapshot()
    assert (len(counting.made), len(accepted), counting.skipped) == (1, 1, ["within the camera's cooldown of 60 s"] * 2)
    admission.submit(Trigger("porch", Origin.TRIGGER))  # asked for: past the cooldown, from the camera's last snapshot
    assert (len(counting.made), len(accepted), counting.refused) == (2, 2, [])
    admission.close()
