"""What a job costs the board's NPU: the work counted, turned into board seconds by Rockchip's
published stage costs, now (one conversation per frame) against the naive way (a fresh encoder pass
and a full prefill for every question), in the same run.

The daemon's real vlm backend runs (its worker process, the ctypes binding, ``answers.answer``) with
the board's parts replaced at their interfaces: the imgenc stand-in, which logs each encoder pass,
and the test RKLLM runtime (tests/native), which logs each run's prefilled image tokens, prompt
tokens and generated tokens (``rkllm_run_done``). Four kinds of job on one frame:
- plain: a description (35 words);
- alerts: the same, with 3 yes/no alert rules (one answer rambles, as small models do);
- structured: a profile with 4 fields, answered in one JSON object (the same length);
- retry: the same profile, whose first answer is prose, asked again once.
The naive way is the daemon up to this change: every question (and the retry, with the first
question repeated) a single ``describe``: the image encoded and prefilled each time, no answer limit.

Board seconds = encoder passes x encoder time + prefilled tokens x prefill time per token +
generated tokens / decode rate, with Qwen2-VL-2B on RK3588 (w8a8, rknn-llm v1.2.2-v1.3.0:
encoder 3.28 s, 196-token prefill 632.6 ms, decode 16.6 tokens/s; rknn-llm benchmark.md, models/README.md). The test
runtime counts a word as a token, so prompt and answer tokens are under-counted by about a third:
the image (196 tokens, and 3.28 s of encoder) dominates either way.

Run: .venv/bin/python -m benchmarks.npu_cost
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import help_argument
from edge_vlm.camera_state import CameraStates
from edge_vlm.config.models import AppConfig
from edge_vlm.config.vlm import VlmBackendConfig
from edge_vlm.core.contracts import Origin
from edge_vlm.core.errors import AnswerError
from edge_vlm.frames import decode_image
from edge_vlm.inference.answers import answer, structured
from edge_vlm.inference.backends.vlm import VlmBackend
from edge_vlm.inference.job_maker import JobMaker
from edge_vlm.inference.prompts import question_prompt
from edge_vlm.ingest.trigger import Trigger
from edge_vlm.schedule.job import Job
from tests.support import images
from tests.support.imgenc_standin import PASSES_ENV
from tests.support.native import LOG_ENV, build_fake_rkllmrt
from tests.support.npu import vlm_backend

ENCODER_S = 3.28
PREFILL_MS_PER_TOKEN = 632.6 / 196
DECODE_TOKENS_PER_S = 16.6

DESCRIPTION = ("A courier in a red jacket stands at the front door holding a brown parcel under one arm while "
               "looking at the doorbell; the porch light is off, the path is wet and a white van waits at the "
               "kerb behind him with its engine running")
REPORT = {"title": "Courier at the door",
          "summary": "A courier in a red jacket holds a parcel at the front door while a white van waits behind",
          "people": 1, "vehicle": True}
FIELDS = {
    "title": {"type": "string", "description": "A title for a notification."},
    "summary": {"type": "string", "description": "One sentence on what happens."},
    "people": {"type": "integer", "description": "How many people.", "minimum": 0, "maximum": 20},
    "vehicle": {"type": "boolean", "description": "Is there a vehicle?"},
}
QUESTIONS = [
    {"name": "parcel", "question": "Is someone holding a parcel? [[see:Yes.]]"},
    {"name": "door_open", "question": "Is the front door open? [[see:No.]]"},
    # a model that does not stop at yes or no: 15 words
    {"name": "van", "question": "Is a van parked outside? [[see:Yes, a white van is parked at the kerb with "
                                "its engine running and its lights on.]]"},
]
KINDS = ("plain", "alerts", "structured", "retry")


@dataclass
class Work:
    encoder_passes: int = 0
    runs: int = 0
    image_tokens: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0

    def board_s(self) -> float:
        prefilled = self.image_tokens + self.prompt_tokens
        return (self.encoder_passes * ENCODER_S + prefilled * PREFILL_MS_PER_TOKEN / 1000
                + self.generated_tokens / DECODE_TOKENS_PER_S)


class Counter:
    """Reads what the stand-ins logged since the last reading."""

    def __init__(self, rkllm_log: Path, passes_log: Path) -> None:
        self._rkllm, self._passes = rkllm_log, passes_log
        self._rkllm_at = self._passes_at = 0

    def since_last(self) -> Work:
        rkllm = self._rkllm.read_text().splitlines() if self._rkllm.exists() else []
        passes = self._passes.read_text().splitlines() if self._passes.exists() else []
        work = Work(encoder_passes=len(passes) - self._passes_at)
        for line in rkllm[self._rkllm_at:]:
            call: dict[str, Any] = json.loads(line)
            if call["event"] == "rkllm_run_done":
                work.runs += 1
                work.image_tokens += call["image_tokens"]
                work.prompt_tokens += call["prompt_tokens"]
                work.generated_tokens += call["generated_tokens"]
        self._rkllm_at, self._passes_at = len(rkllm), len(passes)
        return work


def naive(backend: VlmBackend, job: Job) -> None:
    """The daemon before: every question a fresh describe (encoder, image prefill), no answer limit."""
    first = backend.describe(job.prepared, job.frame, job.prompt)
    if job.fields:
        try:
            structured(first.text, job.fields)
        except AnswerError as error:
            retry = job.retry_prompt.replace("{error}", str(error))
            backend.describe(job.prepared, job.frame, f"{job.prompt}\n\n{retry}")
    for question in job.questions.values():
        backend.describe(job.prepared, job.frame, question_prompt(question))


def config(directory: Path, library: Path) -> AppConfig:
    report = f"[[reply:{json.dumps(REPORT)}]]"
    return AppConfig.model_validate({
        "backend": vlm_backend(directory, library, abi="1.3"),
        "profiles": {
            "plain": {"prompt": f"Describe what you see in one sentence. [[reply:{DESCRIPTION}]]"},
            "structured": {"prompt": f"Report on the {{camera}}. {report}", "fields": FIELDS},
            "retry": {"prompt": f"Report on the {{camera}}. [[reply:{DESCRIPTION}]]", "fields": FIELDS,
                      "retry_prompt": f"Your answer was not the JSON object asked for ({{error}}). Answer again "
                                      f"with only the JSON object. {report}"},
        },
        "cameras": [{"id": "plain", "profile": "plain"},
                    {"id": "alerts", "profile": "plain", "alerts": QUESTIONS},
                    {"id": "structured", "profile": "structured"},
                    {"id": "retry", "profile": "retry"}],
    })


@contextmanager
def counted_vlm(make_config: Callable[[Path, Path], AppConfig]) -> Iterator[tuple[AppConfig, VlmBackend, Counter]]:
    """The real vlm backend, loaded, on the board's stand-ins, with a Counter of their work (loading
    not counted); ``make_config(directory, library)`` gives the configuration."""
    with tempfile.TemporaryDirectory(prefix="npu-cost-") as scratch:
        directory = Path(scratch)
        library = build_fake_rkllmrt("1.3", directory)
        rkllm_log, passes_log = directory / "rkllm.jsonl", directory / "passes.txt"
        os.environ[LOG_ENV], os.environ[PASSES_ENV] = str(rkllm_log), str(passes_log)  # the worker inherits them
        app = make_config(directory, library)
        assert isinstance(app.backend, VlmBackendConfig)
        backend = VlmBackend(app.backend)
        backend.load()
        try:
            counter = Counter(rkllm_log, passes_log)
            counter.since_last()  # loading
            yield app, backend, counter
        finally:
            backend.close()


def main() -> None:
    help_argument(__doc__)
    with counted_vlm(config) as (app, backend, counter):
        maker = JobMaker(app, CameraStates(app), backend)
        snapshot = images.sample("front_door")
        rows = []
        for kind in KINDS:
            camera = app.camera(kind)
            assert camera is not None
            frame = decode_image(snapshot, camera=kind, captured_at=time.time(),
                                 max_bytes=app.limits.max_payload_bytes, max_pixels=app.limits.max_image_pixels)
            job = maker.make(Trigger(kind, Origin.TRIGGER), camera, frame, request_id=kind, capture_ms=0.0,
                             scene=None)
            result = answer(backend, job)
            now = counter.since_last()
            naive(backend, job)
            before = counter.since_last()
            rows.append((kind, now, before, result.fields, result.answers))
    plain_s = rows[0][1].board_s()
    print("Board seconds per job (Qwen2-VL-2B, RK3588 w8a8: encoder 3.28 s, prefill 3.23 ms/token, "
          "16.6 tokens/s), from the work counted")
    print(f"{'job':11} {'encoder':>7} {'runs':>4} {'image tok':>9} {'prompt tok':>10} {'generated':>9} "
          f"{'board s':>7} {'x plain':>7} | {'naive s':>7} {'naive/now':>9}")
    for kind, now, before, fields, answers in rows:
        print(f"{kind:11} {now.encoder_passes:7d} {now.runs:4d} {now.image_tokens:9d} {now.prompt_tokens:10d} "
              f"{now.generated_tokens:9d} {now.board_s():7.2f} {now.board_s() / plain_s:7.2f} | "
              f"{before.board_s():7.2f} {before.board_s() / now.board_s():8.2f}x")
        assert now.encoder_passes == 1, f"{kind}: {now.encoder_passes} encoder passes"
        if kind in ("structured", "retry"):
            assert fields == REPORT, f"{kind}: {fields}"
        if kind == "alerts":
            assert answers == {"parcel": True, "door_open": False, "van": True}, answers
    naive_plain = rows[0][2].board_s()
    print(f"(naive: a description with 3 alert rules was {rows[1][2].board_s() / naive_plain:.2f}x a plain one; "
          f"now {rows[1][1].board_s() / plain_s:.2f}x)")


if __name__ == "__main__":
    main()
