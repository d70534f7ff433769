"""The values that travel between stages: a job to describe, what the backend said, the outcome."""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_vlm.config.automation import FieldSpec
from edge_vlm.frames import Frame

_sequence = itertools.count(1)
_RUN_TAG = os.urandom(3).hex()


def new_request_id() -> str:
    """An id for a job that came without one, unique across restarts of the daemon."""
    return f"{_RUN_TAG}-{next(_sequence)}"


@dataclass(frozen=True)
class Reply:
    """Where the answer to a request goes: its response topic, and the correlation data to echo."""

    topic: str
    correlation: bytes | None = None


@dataclass
class Job:
    """A frame to describe, with everything the result must carry back."""

    camera: str
    frame: Frame
    prepared: np.ndarray  # the backend's input, made from the frame on the dispatcher thread
    prompt: str
    request_id: str
    origin: str  # snapshot, trigger, motion, interval, frigate, request
    received_at: float  # time.monotonic() when the message that asked for it arrived
    queued_at: float = field(default_factory=time.monotonic)
    timings_ms: dict[str, float] = field(default_factory=dict)  # stages before the backend
    superseded_ids: list[str] = field(default_factory=list)  # jobs this one replaced (latest wins)
    event: dict[str, Any] | None = None  # what started it (a Frigate event), published with the result
    scene: int | None = None  # the frame's scene hash, when the camera skips unchanged scenes
    accepted_wall: float = field(default_factory=time.time)
    fields: dict[str, FieldSpec] = field(default_factory=dict)  # the JSON fields the answer must have
    retry_prompt: str = ""  # asked once when the JSON answer is invalid ({error} filled then)
    questions: dict[str, str] = field(default_factory=dict)  # alert rule -> yes/no question to ask too
    reply: Reply | None = None  # a request's answer goes here, and nowhere else
    superseded_by: str | None = None  # the job that describes the scene instead of this one
    image: bytes | None = field(default=None, repr=False)  # the JPEG published when it was accepted
    held: list[Failure] = field(default_factory=list)  # later requests' errors, answered after this one
    # Set once the job's acceptance was published (``pending``): its outcome must not overtake that.
    announced: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def frame_age_ms(self) -> float:
        """How old the frame was when the job was accepted."""
        return max(0.0, (self.accepted_wall - self.frame.captured_at) * 1000)

    @property
    def coalesced(self) -> int:
        return len(self.superseded_ids)


@dataclass(frozen=True)
class Description:
    """What a backend says about one frame."""

    text: str
    timings_ms: dict[str, float]  # the backend's own stages, e.g. {"analyze": 41.2}
    details: dict[str, Any] = field(default_factory=dict)  # backend-specific facts, JSON-serialisable

    @property
    def compute_ms(self) -> float:
        return sum(self.timings_ms.values())


@dataclass(frozen=True)
class Result:
    """A described job, ready to publish."""

    job: Job
    description: Description
    backend: str
    finished_at: float  # wall clock
    fields: dict[str, Any] | None = None  # the structured answer, checked
    answers: dict[str, bool | None] = field(default_factory=dict)  # alert rule -> the model's yes or no
    extra_ms: dict[str, float] = field(default_factory=dict)  # a retry, the questions

    @property
    def timings_ms(self) -> dict[str, float]:
        return {**self.job.timings_ms, **self.description.timings_ms, **self.extra_ms}

    @property
    def text(self) -> str:
        """The description: a structured answer's summary (or title), else what the model said."""
        fields = self.fields or {}
        return str(fields.get("summary") or fields.get("title") or self.description.text).strip()


@dataclass(frozen=True)
class Failure:
    """An input or a job that could not be described; published on the camera's error topic."""

    camera: str
    code: str
    message: str
    request_id: str | None = None
    topic: str | None = None  # the topic the input arrived on
    reply: Reply | None = None  # a request's error goes here instead of the camera's error topic
    origin: str | None = None  # what the failed job came from
