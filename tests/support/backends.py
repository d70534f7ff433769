"""The real opencv backend with test instrumentation around it (never in the package)."""

from __future__ import annotations

import threading

import numpy as np

from edge_vlm.config.models import OpencvBackendConfig
from edge_vlm.core.errors import BackendError
from edge_vlm.frames import Frame
from edge_vlm.inference.backends.opencv import OpencvBackend
from edge_vlm.inference.results import Description

GATE_TIMEOUT_S = 30.0


class GatedBackend(OpencvBackend):
    """Holds each job at a gate until the test opens it, so a job can be kept in flight."""

    def __init__(self) -> None:
        super().__init__(OpencvBackendConfig())
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.prompts: list[str] = []
        self.frames: list[Frame] = []  # what it was given, in order

    def describe(self, prepared: np.ndarray | None, frame: Frame | None, prompt: str) -> Description:
        self.prompts.append(prompt)
        assert frame is not None, "the opencv backend is asked about an image only"
        self.frames.append(frame)
        self.entered.set()
        if not self.gate.wait(GATE_TIMEOUT_S):
            raise BackendError("test gate never opened")
        return super().describe(prepared, frame, prompt)


class FailingBackend(OpencvBackend):
    """Fails on the frames of one camera, as a backend whose model crashed would."""

    def __init__(self, failing_camera: str) -> None:
        super().__init__(OpencvBackendConfig())
        self.failing_camera = failing_camera

    def describe(self, prepared: np.ndarray | None, frame: Frame | None, prompt: str) -> Description:
        if frame is not None and frame.camera == self.failing_camera:
            raise BackendError("model crashed")
        return super().describe(prepared, frame, prompt)
