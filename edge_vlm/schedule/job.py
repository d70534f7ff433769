"""A job: a frame admitted by the gate, with its question and the backend's input, waiting for the NPU."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_vlm.config.automation import FieldSpec
from edge_vlm.core.contracts import Failure, Origin, Reply, Sampling
from edge_vlm.frames import Frame


@dataclass
class Job:
    """Made whole before it is queued; only the scheduler changes it after (what it superseded,
    what was held behind it), under its lock."""

    camera: str
    frame: Frame | None  # None: a question without an image (the language model alone)
    prepared: np.ndarray | None  # the backend's input, made from the frame before it was queued
    prompt: str
    request_id: str
    origin: Origin
    received_at: float  # time.monotonic() when the message that asked for it arrived
    queued_at: float = field(default_factory=time.monotonic)
    timings_ms: dict[str, float] = field(default_factory=dict)  # stages before the backend: capture, preprocess
    superseded_ids: list[str] = field(default_factory=list)  # jobs this one replaced (latest wins)
    event: dict[str, Any] | None = None  # what started it (a Frigate event), published with the result
    scene: int | None = None  # the frame's scene hash, when the camera skips unchanged scenes
    accepted_wall: float = field(default_factory=time.time)
    fields: dict[str, FieldSpec] = field(default_factory=dict)  # the JSON fields the answer must have
    json_object: bool = False  # the answer must be a JSON object, any (when no fields are asked for)
    retry_prompt: str = ""  # asked once when the JSON answer is invalid ({error} filled then)
    questions: dict[str, str] = field(default_factory=dict)  # alert rule -> yes/no question to ask too
    reply: Reply | None = None  # a request's answer goes here, and nowhere else
    max_new_tokens: int | None = None  # the answer's most tokens, as its asker wants (None: the model's)
    sampling: Sampling | None = None  # how its tokens are picked, as its asker wants (None: the model's)
    superseded_by: str | None = None  # the job that describes the scene instead of this one
    image: bytes | None = field(default=None, repr=False)  # the JPEG published when it was accepted
    held: list[Failure] = field(default_factory=list)  # later requests' errors, answered after this one

    @property
    def frame_age_ms(self) -> float:
        """How old the frame was when the job was accepted (0 without one)."""
        return 0.0 if self.frame is None else max(0.0, (self.accepted_wall - self.frame.captured_at) * 1000)

    @property
    def coalesced(self) -> int:
        return len(self.superseded_ids)
