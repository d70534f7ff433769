"""The ``rkllm`` language model: a ctypes binding of ``librkllmrt.so`` (runtime 1.2.1+ and 1.3.x).

It takes a finished prompt and the image embeddings and returns text; it knows nothing of cameras.
What the runtime demands (rkllm.h, rknn-llm's demos and its server examples' ctypes code):
- one run at a time per handle (a lock); ``rkllm_abort`` from another thread stops a run;
- the callback always returns an int and never raises, text may be NULL, RKLLM_RUN_WAITING means
  "an incomplete UTF-8 character, wait", and the perf figures are valid only at FINISH;
- everything the runtime may touch (callback, prompt, tags, embeddings) stays referenced until
  ``rkllm_run`` returns; the callback object lives as long as the handle;
- a frame's questions are one conversation: the first run has the image, later ones only their text,
  answered from the KV cache (``keep_history = 1``); the cache is cleared once the conversation is
  over, and after every single question (rknn-llm#529: with ``keep_history = 0`` alone memory grows);
- a yes/no answer stops after a few tokens: the run's ``max_new_tokens`` (1.3), or the callback
  pausing the run (returning 1, 1.2.1+), which keeps the cache.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import threading
import time
from collections.abc import Callable
from ctypes import POINTER, byref, c_float, c_int, c_void_p
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_vlm.config.vlm import ModelSpec, RkllmConfig
from edge_vlm.core.contracts import Sampling
from edge_vlm.core.errors import BackendError
from edge_vlm.inference.llm import abi, layout
from edge_vlm.inference.llm.params import configured_sampling, init_param, run_sampling
from edge_vlm.inference.llm.runtime import resolve_abi, unknown_build_hint

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class Generation:
    text: str
    prefill_ms: float
    decode_ms: float
    prefill_tokens: int | None  # None: a paused run, and a runtime that would not say its cache's size
    generated_tokens: int
    memory_mb: float
    kv_after: int | None = None  # tokens the cache keeps after a kept run (None: not kept, or unknown)


@dataclass
class _Run:
    """What the callback gathers during one rkllm_run."""

    limit: int | None = None  # pause the run after this many tokens (the 1.2 runtime has no per-run limit)
    told: Callable[[str], None] | None = None  # the text as it comes, for an answer that streams
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    pieces: list[str] = field(default_factory=list)
    perf: tuple[float, float, int, int, float] | None = None
    tokens: int = 0
    first_token_at: float | None = None
    paused: bool = False
    error: bool = False


def _declare(lib: ctypes.CDLL, types: abi.Abi) -> None:
    handle_p = POINTER(abi.LLMHandle)
    lib.rkllm_createDefaultParam.restype = types.param
    lib.rkllm_createDefaultParam.argtypes = []
    third = POINTER(types.callback_struct) if types.callback_struct else abi.ResultCallback
    lib.rkllm_init.argtypes = [handle_p, POINTER(types.param), third]
    lib.rkllm_run.argtypes = [abi.LLMHandle, POINTER(types.input), POINTER(types.infer_param), c_void_p]
    lib.rkllm_clear_kv_cache.argtypes = [abi.LLMHandle, c_int, POINTER(c_int), POINTER(c_int)]
    lib.rkllm_get_kv_cache_size.argtypes = [abi.LLMHandle, POINTER(c_int)]
    lib.rkllm_set_chat_template.argtypes = [abi.LLMHandle, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]
    for name in ("rkllm_abort", "rkllm_destroy"):
        getattr(lib, name).argtypes = [abi.LLMHandle]
    for name in ("rkllm_init", "rkllm_run", "rkllm_clear_kv_cache", "rkllm_get_kv_cache_size",
                 "rkllm_set_chat_template", "rkllm_abort", "rkllm_destroy"):
        getattr(lib, name).restype = c_int


class RkllmModel:
    def __init__(self, config: RkllmConfig, spec: ModelSpec, *, encoder_on_npu: bool) -> None:
        self.config = config
        self.spec = spec
        self.encoder_on_npu = encoder_on_npu
        self.abi_name = ""
        self._types: abi.Abi | None = None
        self._lib: ctypes.CDLL | None = None
        self._handle = abi.LLMHandle()
        self._lock = threading.Lock()
        self._run: _Run | None = None
        # Created once, kept for the handle's lifetime: the runtime calls it from its own threads.
        self._callback = abi.ResultCallback(self._on_result)
        self._keep: list[Any] = []
        self._configured_sampling = abi.RKLLMSamplingParam()  # the init parameters' (a run's sampling starts from them)

    def load(self) -> None:
        problems = layout.layout_problems()
        if problems:
            raise BackendError("edge_vlm's RKLLM structs disagree with the documented layout: " + "; ".join(problems))
        library = self.config.library.resolve()
        self.abi_name = resolve_abi(library, self.config.runtime_version)
        types = abi.ABIS[self.abi_name]
        try:
            lib = ctypes.CDLL(str(library))
        except OSError as exc:
            raise BackendError(f"cannot load {self.config.library}: {exc}") from None
        _declare(lib, types)
        param = init_param(lib.rkllm_createDefaultParam(), types, self.config, self.spec,
                           encoder_on_npu=self.encoder_on_npu, keep=self._keep)
        self._configured_sampling = configured_sampling(param)
        third: Any = self._callback
        if types.callback_struct is not None:
            third = types.callback_struct(result_callback=self._callback)
            self._keep.append(third)
        if lib.rkllm_init(byref(self._handle), byref(param), byref(third) if types.callback_struct else third) != 0:
            raise BackendError(
                f"rkllm_init failed for {self.config.model} with runtime {self.abi_name} ({self.config.library}); "
                "the runtime's own messages above say why (model converted for another runtime version? "
                "too few CPUs for the model's NPU cores? NPU memory?)"
                + unknown_build_hint(library, self.config.runtime_version),
            )
        self._lib, self._types = lib, types
        template = self.config.chat_template
        if template is not None and lib.rkllm_set_chat_template(
                self._handle, template.system.encode(), template.prefix.encode(), template.postfix.encode()) != 0:
            raise BackendError("rkllm_set_chat_template refused backend.llm.chat_template")
        logger.info("RKLLM %s loaded: %s (ABI %s)", self.config.library, self.config.model, self.abi_name)

    def generate(self, prompt: str, embeddings: np.ndarray | None, image_size: int, *, keep_history: bool = False,
                 max_new_tokens: int | None = None, sampling: Sampling | None = None,
                 told: Callable[[str], None] | None = None) -> Generation:
        """Run the model on ``prompt``: with ``<image>`` where the image goes and its ``embeddings``,
        or text alone (``embeddings`` None) after what the KV cache holds. ``keep_history``: the cache
        keeps this turn for the next (clear it with ``clear()``); else it is cleared at once.
        ``sampling``: this run's, where the runtime takes it (1.3; 1.2 keeps the configured one);
        ``told``: called with the text as the runtime writes it (from the runtime's thread)."""
        if self._lib is None or self._types is None:
            raise BackendError("the RKLLM model is not loaded")
        prompt_bytes = prompt.encode()
        rk_input = self._types.input()
        rk_input.role = b"user"
        rk_input.enable_thinking = False
        keep: list[Any] = [prompt_bytes]  # referenced until rkllm_run returns
        if embeddings is None:
            rk_input.input_type = abi.INPUT_PROMPT
            rk_input.prompt_input = prompt_bytes
        else:
            keep.extend(self._image_input(rk_input, prompt_bytes, embeddings, image_size))
        infer = self._types.infer_param()
        infer.mode = abi.INFER_GENERATE
        infer.keep_history = 1 if keep_history else 0
        if max_new_tokens is not None and self._types.name == "1.3":
            infer.max_new_tokens = max_new_tokens
        if sampling is not None and sampling != Sampling():
            if self._types.name == "1.3":
                keep.append(sampling_param := run_sampling(self._configured_sampling, sampling))
                infer.sampling_params = ctypes.pointer(sampling_param)
            else:
                logger.debug("RKLLM runtime 1.2 takes its sampling at load only: %s not applied", sampling)
        with self._lock:
            run = self._run = _Run(limit=max_new_tokens if self._types.name == "1.2" else None, told=told)
            kv_before = self._kv_size()
            started = time.perf_counter()
            try:
                status = self._lib.rkllm_run(self._handle, byref(rk_input), byref(infer), None)
            finally:
                self._run = None
                if not keep_history:
                    self._lib.rkllm_clear_kv_cache(self._handle, 0, None, None)
            finished = time.perf_counter()
            kv_after = self._kv_size() if keep_history else None
        run.pieces.append(run.decoder.decode(b"", final=True))
        if status != 0 or run.error:
            raise BackendError(f"rkllm_run failed (status {status}); the runtime's messages above say why")
        text = "".join(run.pieces).strip()
        if run.perf is not None:
            prefill_ms, decode_ms, prefill_tokens, generated, memory = run.perf
            return Generation(text, prefill_ms, decode_ms, prefill_tokens, generated, memory, kv_after)
        if not run.paused:
            raise BackendError("rkllm_run returned before finishing the answer (aborted?)")
        # Paused at the token limit: the runtime gives no figures; the clock and the cache's size do.
        first = run.first_token_at if run.first_token_at is not None else finished
        prefilled = None if kv_after is None or kv_before is None else max(kv_after - kv_before - run.tokens, 0)
        return Generation(text, (first - started) * 1000, (finished - first) * 1000, prefilled, run.tokens, 0.0,
                          kv_after)

    def _image_input(self, rk_input: Any, prompt_bytes: bytes, embeddings: np.ndarray, image_size: int) -> list[Any]:
        """``rk_input`` made the image and the prompt; what it points to, to keep until the run ends."""
        assert self._types is not None
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        image_tags = self.spec.image_tags
        tags = [t.encode() for t in (image_tags.start, image_tags.end, image_tags.content)]
        rk_input.input_type = abi.INPUT_MULTIMODAL
        multimodal = rk_input.multimodal_input
        multimodal.prompt = prompt_bytes
        image = multimodal.image if self._types.name == "1.3" else multimodal
        image.image_embed = embeddings.ctypes.data_as(POINTER(c_float))
        image.n_image_tokens = embeddings.shape[0]
        image.n_image = 1  # the embeddings hold one image; the prompt holds one placeholder
        image.image_width = image.image_height = image_size
        if self._types.name == "1.3":
            image.image_start, image.image_end, image.image_content = tags
        return [embeddings, *tags]

    def clear(self) -> None:
        """Forget the conversation: the KV cache emptied."""
        if self._lib is not None:
            with self._lock:
                self._lib.rkllm_clear_kv_cache(self._handle, 0, None, None)

    def _kv_size(self) -> int | None:
        """Tokens in the KV cache (runtime 1.2.1+), None if the runtime will not say."""
        assert self._lib is not None
        size = c_int(0)
        return size.value if self._lib.rkllm_get_kv_cache_size(self._handle, byref(size)) == 0 else None

    def context_left(self) -> int | None:
        """How many more tokens the KV cache can take before ``max_context_len``; None if unknown."""
        if self._lib is None:
            return None
        with self._lock:
            used = self._kv_size()
        return None if used is None else self.config.max_context_len - used

    def abort(self) -> None:
        """Stop the run in progress, from any thread (takes effect after up to ~1 s: rknn-llm#400)."""
        if self._lib is not None:
            self._lib.rkllm_abort(self._handle)

    def close(self) -> None:
        if self._lib is not None:
            self._lib.rkllm_destroy(self._handle)
            self._lib = None

    def _on_result(self, result: int | None, userdata: int | None, state: int) -> int:
        # Called by the runtime from its own thread: must return an int and must never raise.
        try:
            run = self._run
            if run is None:
                return 0
            if state == abi.RUN_ERROR:
                run.error = True
            elif result and state in (abi.RUN_NORMAL, abi.RUN_FINISH):
                contents = ctypes.cast(result, POINTER(abi.RKLLMResult)).contents
                if state == abi.RUN_NORMAL:
                    if run.first_token_at is None:
                        run.first_token_at = time.perf_counter()
                    run.tokens += 1
                    if contents.text is not None:
                        # A character may arrive split over two tokens: decode incrementally.
                        run.pieces.append(piece := run.decoder.decode(contents.text))
                        if piece and run.told is not None:
                            run.told(piece)
                    if run.limit is not None and run.tokens >= run.limit:
                        run.paused = True
                        return 1  # pause: the run ends, the KV cache keeps it
                elif state == abi.RUN_FINISH:
                    perf = contents.perf
                    run.perf = (perf.prefill_time_ms, perf.generate_time_ms, perf.prefill_tokens,
                                perf.generate_tokens, perf.memory_usage_mb)
            # RKLLM_RUN_WAITING: the runtime holds an incomplete character; nothing to take yet.
        except BaseException:
            logger.exception("Error in the RKLLM result callback")
        return 0
