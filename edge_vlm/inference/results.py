"""What inference makes of a job: the backend's description, then the checked result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_vlm.schedule.job import Job


@dataclass(frozen=True)
class Description:
    """What a backend says about one frame."""

    text: str
    timings_ms: dict[str, float]  # the backend's own stages, e.g. {"analyze": 41.2}
    details: dict[str, Any] = field(default_factory=dict)  # backend-specific facts, JSON-serialisable


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
    queued_ms: float | None = None  # waiting for the backend

    @property
    def timings_ms(self) -> dict[str, float]:
        queued = {} if self.queued_ms is None else {"queued": self.queued_ms}
        return {**self.job.timings_ms, **queued, **self.description.timings_ms, **self.extra_ms}

    @property
    def text(self) -> str:
        """The description: a structured answer's summary (or title), else what the model said."""
        fields = self.fields or {}
        return str(fields.get("summary") or fields.get("title") or self.description.text).strip()
