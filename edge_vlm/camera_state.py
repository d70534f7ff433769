"""One ``CameraState`` per camera: what several stages need to know about it, in one place.

Home Assistant's settings (switched on, cooldown, profile, custom prompt, motion detection) are
written by ``ingest.controls`` as they are read back or changed; what was last described (when,
the scene's hash, the text) by the result stage once a description is in. The gate, the job's
prompt and the motion detectors read them. A state is an immutable value: a reader gets a
consistent copy, a writer replaces it under the one lock.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge_vlm.config.models import AppConfig

TEXT_MAX = 255  # Home Assistant's limit for a text entity: the custom prompt's
COOLDOWN_MAX_S = 86_400


@dataclass(frozen=True)
class CameraState:
    enabled: bool  # the camera's switch in Home Assistant (the file's ``enabled`` until read back)
    cooldown_s: float  # no frame that came by itself is described within this of the last description
    profile: str  # the profile Home Assistant picked ("default": the camera's own prompt)
    prompt: str  # Home Assistant's custom prompt; "" for none
    motion: bool  # motion detection switched on; off until the settings were read back from the broker
    settled: bool = False  # the settings were read back (until then Home Assistant may have changed them)
    described_at: float | None = None  # time.monotonic() of the last description
    scene: int | None = None  # the scene hash of the last frame described (when the camera skips unchanged ones)
    text: str | None = None  # the last description, for a prompt's {previous}

    @property
    def watches_motion(self) -> bool:
        return self.enabled and self.motion


Listener = Callable[[str, CameraState], None]  # camera, its new state


class CameraStates:
    """The cameras' states, thread-safe: any thread reads, writers replace under one lock."""

    def __init__(self, config: AppConfig) -> None:
        self._lock = threading.Lock()
        self._states = {c.id: CameraState(enabled=c.enabled, cooldown_s=c.cooldown_s, profile=c.profile or "default",
                                          prompt="", motion=False) for c in config.cameras}
        self._listeners: list[Listener] = []

    def __getitem__(self, camera: str) -> CameraState:
        with self._lock:
            return self._states[camera]

    def __contains__(self, camera: object) -> bool:
        return camera in self._states

    def listen(self, listener: Listener) -> None:
        """Call ``listener`` after each change of a camera's settings (not of what it last described)."""
        self._listeners.append(listener)

    def update(self, camera: str, **changes: object) -> CameraState:
        """Change some of the camera's settings; listeners hear of it (on the caller's thread: the
        settings are changed from the dispatcher only, so listeners hear the changes in order)."""
        with self._lock:
            state = self._states[camera] = dataclasses.replace(self._states[camera], **changes)  # type: ignore[arg-type]
        for listener in self._listeners:
            listener(camera, state)
        return state

    def described(self, camera: str, scene: int | None, text: str) -> None:
        """The camera's frame was described: its scene and text are now the last ones, as of now."""
        with self._lock:
            if camera in self._states:
                self._states[camera] = dataclasses.replace(self._states[camera], described_at=time.monotonic(),
                                                           scene=scene, text=text)
