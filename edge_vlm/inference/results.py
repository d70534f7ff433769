"""What inference makes of a job: the backend's description, then the checked result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_vlm.schedule.job import Job

NPU_STAGES = ("encoder", "prefill", "decode")  # the vlm backend's stages, each turn's from the runtime


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
    turns: tuple[Description, ...] = ()  # every answer the job asked for, the description's first

    @property
    def timings_ms(self) -> dict[str, float]:
        """The job's stages; the NPU's (encoder, prefill, decode) summed over all its turns."""
        queued = {} if self.queued_ms is None else {"queued": self.queued_ms}
        npu = self.npu
        summed = {} if npu is None else {stage: npu[f"{stage}_ms"] for stage in NPU_STAGES}
        return {**self.job.timings_ms, **queued, **self.description.timings_ms, **summed, **self.extra_ms}

    @property
    def npu(self) -> dict[str, Any] | None:
        """What the job cost the NPU, by the runtime's own figures, over all its turns (the
        description, a retry, each alert question); None for a backend that gives none (opencv)."""
        measured = [turn for turn in self.turns if "prefill_tokens" in turn.details]
        if not measured:
            return None
        ms = {f"{stage}_ms": round(sum(turn.timings_ms.get(stage, 0.0) for turn in measured), 1)
              for stage in NPU_STAGES}
        on_npu = ms["encoder_ms"] if all(turn.details.get("encoder_on_npu", True) for turn in measured) else 0.0
        return {
            "turns": len(measured),
            "encoder_passes": sum(int(turn.details.get("encoder_passes", 0)) for turn in measured),
            **ms,
            "prefill_tokens": sum(int(turn.details["prefill_tokens"] or 0) for turn in measured),
            "generated_tokens": sum(int(turn.details.get("generated_tokens", 0)) for turn in measured),
            # the NPU's: an onnx encoder runs on the CPU
            "seconds": round((on_npu + ms["prefill_ms"] + ms["decode_ms"]) / 1000, 3),
        }

    @property
    def text(self) -> str:
        """The description: a structured answer's summary (or title), else what the model said."""
        fields = self.fields or {}
        return str(fields.get("summary") or fields.get("title") or self.description.text).strip()
