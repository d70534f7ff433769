"""ctypes mirrors of ``rkllm.h`` for the two runtime ABIs in use: 1.2.1 to 1.2.3, and 1.3.x.

Field order and C types follow the headers; every size and offset that matters is checked, when
the binding loads, against the compiled layout Rockchip's headers give (``layout``), so a mistake
here fails loudly instead of corrupting memory inside the runtime.
"""

from __future__ import annotations

from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    Union,
    c_bool,
    c_char_p,
    c_float,
    c_int,
    c_int8,
    c_int32,
    c_size_t,
    c_uint8,
    c_uint32,
    c_void_p,
)
from dataclasses import dataclass

# LLMCallState
RUN_NORMAL = 0
RUN_WAITING = 1
RUN_FINISH = 2
RUN_ERROR = 3
# RKLLMInputType
INPUT_PROMPT = 0
INPUT_MULTIMODAL = 3
# RKLLMInferMode
INFER_GENERATE = 0

LLMHandle = c_void_p
# int (*LLMResultCallback)(RKLLMResult*, void* userdata, LLMCallState) in 1.2.1+ and 1.3.
# Declared before RKLLMResult exists, so the result pointer is a void*; cast in the callback.
ResultCallback = CFUNCTYPE(c_int, c_void_p, c_void_p, c_int)


class RKLLMExtendParam(Structure):
    _fields_ = (
        ("base_domain_id", c_int32),
        ("embed_flash", c_int8),
        ("enabled_cpus_num", c_int8),
        ("enabled_cpus_mask", c_uint32),
        ("n_batch", c_uint8),
        ("use_cross_attn", c_int8),
        ("reserved", c_uint8 * 104),
    )


_PARAM_HEAD = (
    ("model_path", c_char_p),
    ("max_context_len", c_int32),
    ("max_new_tokens", c_int32),
    ("top_k", c_int32),
    ("n_keep", c_int32),
    ("top_p", c_float),
    ("temperature", c_float),
    ("repeat_penalty", c_float),
    ("frequency_penalty", c_float),
    ("presence_penalty", c_float),
    ("mirostat", c_int32),
    ("mirostat_tau", c_float),
    ("mirostat_eta", c_float),
    ("skip_special_token", c_bool),
)


class RKLLMParam12(Structure):
    _fields_ = (
        *_PARAM_HEAD,
        ("is_async", c_bool),
        ("img_start", c_char_p),
        ("img_end", c_char_p),
        ("img_content", c_char_p),
        ("extend_param", RKLLMExtendParam),
    )


class RKLLMParam13(Structure):
    _fields_ = (
        *_PARAM_HEAD,
        ("ignore_eos_token", c_bool),
        ("is_async", c_bool),
        ("extend_param", RKLLMExtendParam),
    )


class RKLLMMultiModalInput12(Structure):
    _fields_ = (
        ("prompt", c_char_p),
        ("image_embed", POINTER(c_float)),
        ("n_image_tokens", c_size_t),
        ("n_image", c_size_t),
        ("image_width", c_size_t),
        ("image_height", c_size_t),
    )


class RKLLMImageInput13(Structure):
    _fields_ = (
        ("image_embed", POINTER(c_float)),
        ("n_image_tokens", c_size_t),
        ("n_image", c_size_t),
        ("image_start", c_char_p),
        ("image_end", c_char_p),
        ("image_content", c_char_p),
        ("image_width", c_size_t),
        ("image_height", c_size_t),
    )


class RKLLMVideoInput13(Structure):
    _fields_ = (
        ("video_embed", POINTER(c_float)),
        ("n_frame_tokens", c_size_t),
        ("n_frame_per_video", c_size_t),
        ("n_video", c_size_t),
        ("video_start", c_char_p),
        ("video_end", c_char_p),
        ("video_content", c_char_p),
        ("frame_width", c_size_t),
        ("frame_height", c_size_t),
    )


class RKLLMMultiModalInput13(Structure):
    _fields_ = (
        ("prompt", c_char_p),
        ("image", RKLLMImageInput13),
        ("video", RKLLMVideoInput13),
    )


class RKLLMEmbedInput(Structure):
    _fields_ = (("embed", POINTER(c_float)), ("n_tokens", c_size_t))


class RKLLMTokenInput(Structure):
    _fields_ = (("input_ids", POINTER(c_int32)), ("n_tokens", c_size_t))


class _InputUnion12(Union):
    _fields_ = (
        ("prompt_input", c_char_p),
        ("embed_input", RKLLMEmbedInput),
        ("token_input", RKLLMTokenInput),
        ("multimodal_input", RKLLMMultiModalInput12),
    )


class _InputUnion13(Union):
    _fields_ = (
        ("prompt_input", c_char_p),
        ("embed_input", RKLLMEmbedInput),
        ("token_input", RKLLMTokenInput),
        ("multimodal_input", RKLLMMultiModalInput13),
    )


class RKLLMInput12(Structure):
    _anonymous_ = ("u",)
    _fields_ = (("role", c_char_p), ("enable_thinking", c_bool), ("input_type", c_int), ("u", _InputUnion12))


class RKLLMInput13(Structure):
    _anonymous_ = ("u",)
    _fields_ = (("role", c_char_p), ("enable_thinking", c_bool), ("input_type", c_int), ("u", _InputUnion13))


class RKLLMLoraParam(Structure):
    _fields_ = (("lora_adapter_name", c_char_p),)


class RKLLMPromptCacheParam(Structure):
    _fields_ = (("save_prompt_cache", c_int), ("prompt_cache_path", c_char_p))


class RKLLMSamplingParam(Structure):
    _fields_ = (
        ("top_k", c_int32),
        ("top_p", c_float),
        ("temperature", c_float),
        ("repeat_penalty", c_float),
        ("frequency_penalty", c_float),
        ("presence_penalty", c_float),
        ("mirostat", c_int32),
        ("mirostat_tau", c_float),
        ("mirostat_eta", c_float),
    )


class RKLLMInferParam12(Structure):
    _fields_ = (
        ("mode", c_int),
        ("lora_params", POINTER(RKLLMLoraParam)),
        ("prompt_cache_params", POINTER(RKLLMPromptCacheParam)),
        ("keep_history", c_int),
    )


class RKLLMInferParam13(Structure):
    _fields_ = (
        ("mode", c_int),
        ("lora_params", POINTER(RKLLMLoraParam)),
        ("prompt_cache_params", POINTER(RKLLMPromptCacheParam)),
        ("sampling_params", POINTER(RKLLMSamplingParam)),
        ("keep_history", c_int),
        ("max_new_tokens", c_int32),
    )


class RKLLMResultLastHiddenLayer(Structure):
    _fields_ = (("hidden_states", POINTER(c_float)), ("embd_size", c_int), ("num_tokens", c_int))


class RKLLMResultLogits(Structure):
    _fields_ = (("logits", POINTER(c_float)), ("vocab_size", c_int), ("num_tokens", c_int))


class RKLLMPerfStat(Structure):
    _fields_ = (
        ("prefill_time_ms", c_float),
        ("prefill_tokens", c_int),
        ("generate_time_ms", c_float),
        ("generate_tokens", c_int),
        ("memory_usage_mb", c_float),
    )


class RKLLMResult(Structure):
    _fields_ = (
        ("text", c_char_p),
        ("token_id", c_int32),
        ("last_hidden_layer", RKLLMResultLastHiddenLayer),
        ("logits", RKLLMResultLogits),
        ("perf", RKLLMPerfStat),
    )


class RKLLMCallback13(Structure):
    _fields_ = (
        ("result_callback", ResultCallback),
        ("result_userdata", c_void_p),
        ("tokenizer_callback", c_void_p),
        ("tokenizer_userdata", c_void_p),
        ("embed_callback", c_void_p),
        ("embed_userdata", c_void_p),
    )


@dataclass(frozen=True)
class Abi:
    """The structs of one runtime ABI."""

    name: str  # "1.2" or "1.3"
    param: type[Structure]
    input: type[Structure]
    infer_param: type[Structure]
    callback_struct: type[Structure] | None  # 1.3 passes a struct of callbacks to rkllm_init


ABIS = {
    "1.2": Abi("1.2", RKLLMParam12, RKLLMInput12, RKLLMInferParam12, None),
    "1.3": Abi("1.3", RKLLMParam13, RKLLMInput13, RKLLMInferParam13, RKLLMCallback13),
}
