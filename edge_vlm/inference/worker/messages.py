"""What the daemon and its inference worker say to each other over their pipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_vlm.core.errors import ErrorCode


@dataclass(frozen=True)
class RunJob:
    job_id: int
    camera: str
    pixels: np.ndarray  # the backend's prepared input, uint8 RGB
    prompt: str  # for the vlm backend with <image> where the image goes


@dataclass(frozen=True)
class Abort:
    job_id: int
    code: ErrorCode  # what the job's error says: timed_out, or cancelled when the daemon stops
    message: str


@dataclass(frozen=True)
class Shutdown:
    pass


@dataclass(frozen=True)
class Ready:
    input_size: int  # the vlm encoder's input side; the opencv analysis size
    loaded: str  # what was loaded, for the log: "RKLLM ABI 1.3, encoder input 448 px"
    load_ms: float


@dataclass(frozen=True)
class LoadFailed:
    message: str


@dataclass(frozen=True)
class JobDone:
    job_id: int
    text: str
    timings_ms: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0  # time.monotonic() in the worker: the NPU busy interval
    finished: float = 0.0


@dataclass(frozen=True)
class JobFailed:
    job_id: int
    code: ErrorCode
    message: str


ToWorker = RunJob | Abort | Shutdown
FromWorker = Ready | LoadFailed | JobDone | JobFailed
