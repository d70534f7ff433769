"""The ``vlm`` backend: a vision encoder, then RKLLM, resident in a supervised worker process.

``VlmBackend`` is the daemon's side (preprocessing exactly as Rockchip's demo, the prompt's image
placeholder); ``VlmEngine`` runs in the worker: encoder, then LLM, never both at once
(rknn-llm#271).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from edge_vlm.config.vlm import OnnxEncoderConfig, VlmBackendConfig
from edge_vlm.core.errors import BackendError, ErrorCode
from edge_vlm.frames import Frame
from edge_vlm.inference.backends import Told
from edge_vlm.inference.llm.rkllm import Generation, RkllmModel
from edge_vlm.inference.llm.runtime import unknown_build_hint
from edge_vlm.inference.prompts import IMAGE_PLACEHOLDER, estimate_tokens, multimodal_prompt
from edge_vlm.inference.vision import create_encoder
from edge_vlm.inference.vision.preprocess import encoder_input
from edge_vlm.inference.worker.messages import JobDone, RunJob
from edge_vlm.inference.worker.supervisor import WorkerBackend

logger = logging.getLogger(__name__)


class VlmBackend(WorkerBackend):
    config: VlmBackendConfig
    answers_text = True

    def __init__(self, config: VlmBackendConfig, log_level: str = "INFO") -> None:
        super().__init__(config, log_level, config.spec.input_size)
        self.name = config.family
        self.min_long_side = None  # full-size decode: preprocess exactly as the demo

    def prepare(self, frame: Frame) -> np.ndarray:
        return encoder_input(frame.pixels, self._input_size)

    def load_crash_hint(self) -> str:
        return unknown_build_hint(self.config.llm.library, self.config.llm.runtime_version)

    def job_prompt(self, prompt: str) -> str:
        if prompt.count(IMAGE_PLACEHOLDER) > 1:  # one image is encoded: the runtime would read past it
            raise BackendError(f"the prompt may hold {IMAGE_PLACEHOLDER} once at most", code=ErrorCode.BAD_TRIGGER)
        return prompt  # the engine places the image: in the first question about a frame only


class VlmEngine:
    """The encoder and the language model, loaded once in the worker."""

    def __init__(self, config: VlmBackendConfig) -> None:
        spec = config.spec
        self.input_size = spec.input_size
        self._encoder_on_npu = not isinstance(config.encoder, OnnxEncoderConfig)
        self._llm = RkllmModel(config.llm, spec, encoder_on_npu=self._encoder_on_npu)
        self._encoder = create_encoder(config.encoder, spec)
        self._family = config.family
        # The conversation in progress: its frame's embeddings, and whether its image is in the KV cache.
        self._conversation: int | None = None
        self._embeddings: np.ndarray | None = None
        self._image_in_cache = False

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

    def run(self, job: RunJob, aborted: Callable[[], bool], told: Told | None = None) -> JobDone:
        """One question. The first about a frame encodes it and prefills its image tokens; a
        follow-up in the same conversation is answered from the KV cache (its text alone), unless
        the cache has lost the image (a failed turn) or has no room left for the turn, in which
        case the image is prefilled again from the embeddings kept (no second encoder pass)."""
        started = time.monotonic()
        if job.pixels is None:
            return self._text(job, started, aborted, told)
        encoder_ms = 0.0
        follow_up = job.conversation is not None and job.conversation == self._conversation
        if not follow_up:
            self.end_conversation(self._conversation)
            self._embeddings = self._encode(job.pixels, aborted)
            encoder_ms = (time.monotonic() - started) * 1000
            self._conversation = job.conversation
        assert self._embeddings is not None
        image_tokens = int(self._embeddings.shape[0])
        keep = job.conversation is not None
        if aborted():  # an abort that came between turns: no rkllm_run was there to stop
            raise BackendError("aborted before the language model started")
        try:
            if follow_up and self._image_in_cache and self._room_for(job):
                # the image is in the context already: the turn's text alone (never a second image)
                generation = self._generate(job, job.prompt.replace(IMAGE_PLACEHOLDER, ""), None, True, told)
            else:
                if follow_up:
                    logger.info("Conversation %s: the image is prefilled again (%s)", job.conversation,
                                "no room left in the context" if self._image_in_cache else "the cache lost it")
                    self._llm.clear()
                # read again, a follow-up is asked as it stands alone (a retry with its question)
                generation = self._generate(job, multimodal_prompt(job.alone or job.prompt), self._embeddings, keep,
                                            told)
            # a runtime that emptied its cache (a paused 1.2 run, say) answers the next turn with the image again
            self._image_in_cache = keep and generation.kv_after != 0
        except BaseException:
            self._llm.clear()  # a failed or aborted run leaves the cache in no known state
            self._image_in_cache = False
            raise
        finally:
            if not keep:
                self._conversation, self._embeddings = None, None
        return self._done(job, generation, started, encoder_ms=encoder_ms, image_tokens=image_tokens,
                          encoder_passes=0 if follow_up else 1)

    def _done(self, job: RunJob, generation: Generation, started: float, *, encoder_ms: float | None,
              image_tokens: int, encoder_passes: int) -> JobDone:
        """The answer and what it cost (``encoder_ms`` None: a question without an image)."""
        finished = time.monotonic()
        timings = {} if encoder_ms is None else {"encoder": round(encoder_ms, 1)}
        timings.update(prefill=round(generation.prefill_ms, 1), decode=round(generation.decode_ms, 1))
        return JobDone(
            job.job_id,
            generation.text,
            timings_ms=timings,
            details={
                "image_tokens": image_tokens,
                "encoder_passes": encoder_passes,
                "encoder_on_npu": self._encoder_on_npu,
                "prefill_tokens": generation.prefill_tokens,
                "generated_tokens": generation.generated_tokens,
                "llm_memory_mb": round(generation.memory_mb, 1),
                "worker_ms": round((finished - started) * 1000, 1),
            },
            started=started,
            finished=finished,
        )

    def _generate(self, job: RunJob, prompt: str, embeddings: np.ndarray | None, keep: bool,
                  told: Told | None) -> Generation:
        return self._llm.generate(prompt, embeddings, self._encoder.input_size, keep_history=keep,
                                  max_new_tokens=self._answer_tokens(job), sampling=job.sampling, told=told)

    def _answer_tokens(self, job: RunJob) -> int | None:
        """The job's longest answer: as asked, never past backend.llm.max_new_tokens (the context is
        sized for that); None: the configured one."""
        configured = self._llm.config.max_new_tokens
        return None if job.max_new_tokens is None or job.max_new_tokens >= configured else job.max_new_tokens

    def _text(self, job: RunJob, started: float, aborted: Callable[[], bool], told: Told | None) -> JobDone:
        """A question without an image: the language model alone; a follow-up in the conversation
        after what its cache holds, or as it stands alone when the cache lost the turn before (a
        paused 1.2 run) or has no room left for it."""
        if aborted():  # an abort that came before the run: no rkllm_run was there to stop
            raise BackendError("aborted before the language model started")
        follow_up = job.conversation is not None and job.conversation == self._conversation
        in_cache = follow_up and self._image_in_cache and self._room_for(job)  # here: the text before it
        if not in_cache:
            self.end_conversation(self._conversation)
            self._llm.clear()
            self._conversation, self._embeddings = job.conversation, None
        keep = job.conversation is not None
        prompt = job.prompt if in_cache or not follow_up else (job.alone or job.prompt)
        try:
            generation = self._generate(job, prompt.replace(IMAGE_PLACEHOLDER, ""), None, keep, told)
            self._image_in_cache = keep and generation.kv_after != 0  # (for a text conversation: its turns)
        except BaseException:
            self._llm.clear()
            self._image_in_cache = False
            raise
        finally:
            if not keep:
                self._conversation = None
        return self._done(job, generation, started, encoder_ms=None, image_tokens=0, encoder_passes=0)

    def end_conversation(self, conversation: int | None) -> None:
        """Forget the conversation's frame: its embeddings, and the KV cache."""
        if conversation is not None and conversation == self._conversation:
            self._llm.clear()
            self._conversation, self._embeddings, self._image_in_cache = None, None, False

    def _encode(self, pixels: np.ndarray, aborted: Callable[[], bool]) -> np.ndarray:
        embeddings = self._encoder.encode(pixels)
        if not np.isfinite(embeddings).all():
            raise BackendError("the encoder produced values that are not finite numbers (NaN or infinity)")
        if aborted():  # aborted while encoding: no rkllm_run was there to stop
            raise BackendError("aborted before the language model started")
        return embeddings

    def _room_for(self, job: RunJob) -> bool:
        """Whether the KV cache has room for the turn's text and its longest answer."""
        left = self._llm.context_left()
        answer = self._answer_tokens(job) or self._llm.config.max_new_tokens
        return left is not None and left >= estimate_tokens(job.prompt) + answer
