"""The ``vlm`` backend: a vision encoder, then RKLLM, resident in a supervised worker process.

``VlmBackend`` is the daemon's side (preprocessing exactly as Rockchip's demo, the prompt's image
placeholder); ``VlmEngine`` runs in the worker: encoder, then LLM, never both at once
(rockchip.md §4.4).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edge_vlm.config.vlm import OnnxEncoderConfig, VlmBackendConfig
from edge_vlm.core.errors import BackendError, ErrorCode
from edge_vlm.frames import Frame
from edge_vlm.inference.llm.rkllm import RkllmModel
from edge_vlm.inference.prompts import IMAGE_PLACEHOLDER, multimodal_prompt
from edge_vlm.inference.results import Description
from edge_vlm.inference.vision import create_encoder
from edge_vlm.inference.vision.preprocess import encoder_input
from edge_vlm.inference.worker.messages import JobDone, RunJob
from edge_vlm.inference.worker.supervisor import WorkerBackend


class VlmBackend(WorkerBackend):
    config: VlmBackendConfig

    def __init__(self, config: VlmBackendConfig, log_level: str = "INFO") -> None:
        super().__init__(config, log_level, config.spec.input_size)
        self.name = config.family
        self.min_long_side = None  # full-size decode: preprocess exactly as the demo

    def prepare(self, frame: Frame) -> np.ndarray:
        return encoder_input(frame.pixels, self._input_size)

    def job_prompt(self, prompt: str) -> str:
        if prompt.count(IMAGE_PLACEHOLDER) > 1:  # one image is encoded: the runtime would read past it
            raise BackendError(f"the prompt may hold {IMAGE_PLACEHOLDER} once at most", code=ErrorCode.BAD_TRIGGER)
        return multimodal_prompt(prompt)

    def describe(self, prepared: np.ndarray, frame: Frame, prompt: str) -> Description:
        described = super().describe(prepared, frame, prompt)
        started, finished = self.busy[-1]
        return Description(described.text, described.timings_ms,
                           {**described.details, "worker_ms": round((finished - started) * 1000, 1)})


class VlmEngine:
    """The encoder and the language model, loaded once in the worker."""

    def __init__(self, config: VlmBackendConfig) -> None:
        spec = config.spec
        self.input_size = spec.input_size
        self._llm = RkllmModel(config.llm, spec, encoder_on_npu=not isinstance(config.encoder, OnnxEncoderConfig))
        self._encoder = create_encoder(config.encoder, spec)
        self._family = config.family

    def load(self) -> str:
        # The language model first, then the encoder, as every Rockchip demo does.
        self._llm.load()
        self._encoder.load()
        self.input_size = self._encoder.input_size
        return f"RKLLM ABI {self._llm.abi_name}, encoder input {self.input_size} px"

    def abort(self) -> None:
        self._llm.abort()

    def close(self) -> None:
        self._encoder.close()
        self._llm.close()

    def run(self, job: RunJob, aborted: Callable[[], bool]) -> JobDone:
        started = time.monotonic()
        embeddings = self._encoder.encode(job.pixels)
        encoded = time.monotonic()
        if not np.isfinite(embeddings).all():
            raise BackendError("the encoder produced values that are not finite numbers (NaN or infinity)")
        if aborted():  # aborted while encoding: no rkllm_run was there to stop
            raise BackendError("aborted before the language model started")
        generation = self._llm.generate(job.prompt, embeddings, self._encoder.input_size)
        finished = time.monotonic()
        return JobDone(
            job.job_id,
            generation.text,
            timings_ms={
                "encoder": round((encoded - started) * 1000, 1),
                "prefill": round(generation.prefill_ms, 1),
                "decode": round(generation.decode_ms, 1),
            },
            details={
                "image_tokens": int(embeddings.shape[0]),
                "prefill_tokens": generation.prefill_tokens,
                "generated_tokens": generation.generated_tokens,
                "llm_memory_mb": round(generation.memory_mb, 1),
            },
            started=started,
            finished=finished,
        )
