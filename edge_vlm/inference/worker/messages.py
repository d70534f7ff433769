"""What the daemon and its inference worker say to each other over their pipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_vlm.core.contracts import Sampling
from edge_vlm.core.errors import ErrorCode


@dataclass(frozen=True)
class RunJob:
    """One question about a frame. In a conversation (``conversation`` set), the turns after the first
    are answered from what the engine kept of the frame (the vlm's image in its KV cache); the pixels
    still come with every turn, so a restarted worker can begin again."""

    job_id: int
    camera: str
    pixels: np.ndarray | None  # the backend's prepared input, uint8 RGB; None: a question without an image
    prompt: str  # the question; the vlm engine places the image
    conversation: int | None = None  # None: a single question, forgotten once answered
    max_new_tokens: int | None = None  # None: the model's configured limit
    alone: str | None = None  # a follow-up as it stands alone, for when the image must be read again
    grid: tuple[int, int, int] | None = None  # a clip's composite: columns, rows, frames (oldest first)
    sampling: Sampling | None = None  # how tokens are picked (None: the model's configured way)
    stream: bool = False  # send the answer's text as it is written (JobText), before JobDone
    numbered: bool = False  # the grid is of pictures a request sent, in their order (not a camera's seconds)


@dataclass(frozen=True)
class EndConversation:
    """The conversation's job is done: the engine forgets the frame (no reply)."""

    conversation: int


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
class JobText:
    """A piece of a streamed job's answer, as the model wrote it."""

    job_id: int
    text: str


@dataclass(frozen=True)
class JobFailed:
    job_id: int
    code: ErrorCode
    message: str


ToWorker = RunJob | EndConversation | Abort | Shutdown
FromWorker = Ready | LoadFailed | JobText | JobDone | JobFailed
