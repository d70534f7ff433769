"""Admit or skip, before any work is done for a frame.

A trigger is checked before its frame is grabbed: the camera exists, is on (in the file and in
Home Assistant), and its settings were read back from the broker (an automatic trigger only: until
then Home Assistant may have switched it off, unknown to us). A frame that came by itself is then
checked before anything is made of it: the camera's cooldown, and whether the scene changed since
the last description (a 64-bit difference hash of the frame, compared bit by bit: robust to JPEG
noise and small light changes, cheap, and blind to what a person would not call a change).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from edge_vlm.camera_state import CameraStates
from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.core.contracts import AUTOMATIC, UNASKED, Origin
from edge_vlm.core.errors import ErrorCode, TriggerError
from edge_vlm.frames import Frame


def scene_hash(rgb: np.ndarray) -> int:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    thumb = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (thumb[:, 1:] > thumb[:, :-1]).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def unchanged(previous: int, current: int, max_distance: int) -> bool:
    """Whether at most ``max_distance`` of the 64 bits differ."""
    return (previous ^ current).bit_count() <= max_distance


@dataclass(frozen=True)
class Verdict:
    skip: str | None  # why the frame is not worth describing; None: describe it
    scene: int | None = None  # the frame's scene hash, when the camera skips unchanged scenes


KEPT_IDS = 64  # Frigate ids admitted per camera, whose later revisions pass the cooldown


class Gate:
    def __init__(self, config: AppConfig, states: CameraStates) -> None:
        self._config = config
        self._states = states
        self._admitted: dict[str, deque[str]] = {c.id: deque(maxlen=KEPT_IDS) for c in config.cameras}

    def camera(self, camera_id: str) -> CameraConfig:
        """The camera a trigger is for; TriggerError when it is unknown or switched off."""
        camera = self._config.camera(camera_id)
        if camera is None:
            known = ", ".join(c.id for c in self._config.cameras)
            raise TriggerError(f"unknown camera {camera_id!r} (configured: {known})", code=ErrorCode.UNKNOWN_CAMERA)
        if not camera.enabled:
            raise TriggerError(f"camera {camera_id!r} is disabled in the configuration",
                               code=ErrorCode.CAMERA_DISABLED)
        if not self._states[camera.id].enabled:
            raise TriggerError(f"camera {camera_id!r} is switched off in Home Assistant",
                               code=ErrorCode.CAMERA_DISABLED)
        return camera

    def admitted(self, camera_id: str, request_id: str) -> None:
        """A Frigate event's or review item's description was queued: a revision of it may follow
        (any thread: deque appends are atomic)."""
        if camera_id in self._admitted and request_id not in self._admitted[camera_id]:
            self._admitted[camera_id].append(request_id)

    def settled(self, camera_id: str) -> bool:
        """Whether Home Assistant's settings for the camera were read back (unknown cameras: yes)."""
        return camera_id not in self._states or self._states[camera_id].settled

    def frame(self, camera: CameraConfig, origin: Origin, frame: Frame, *, revises: str | None = None) -> Verdict:
        """Whether a frame for ``camera`` is worth describing: one that came by itself is not within
        the camera's cooldown, nor when its scene looks the same as the last one described. One that
        ``revises`` a description admitted already (a Frigate event named since) updates it: it is."""
        if origin not in UNASKED:
            return Verdict(None)
        if revises is not None and revises in self._admitted[camera.id]:
            return Verdict(None)
        state = self._states[camera.id]
        if state.described_at is not None and time.monotonic() - state.described_at < state.cooldown_s:
            return Verdict(f"within the camera's cooldown of {state.cooldown_s:g} s")
        if not (camera.skip_unchanged and origin in AUTOMATIC):
            return Verdict(None)
        scene = scene_hash(frame.pixels)
        if state.described_at is not None and state.scene is not None and unchanged(
                state.scene, scene, camera.unchanged_distance):
            return Verdict("the scene looks the same as the last frame described", scene)
        return Verdict(None, scene)
