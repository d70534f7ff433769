"""ctypes mirrors of ``rkllm.h`` for the two runtime ABIs in use: 1.2.1 to 1.2.3, and 1.3.x.

Field order and C types follow the headers; every size and offset that matters is checked, when
the binding loads, against the compiled layout Rockchip's headers give (identical on AArch64 and x86-64), so a
mistake here fails loudly instead of corrupting memory inside the runtime (rknn-llm#509: 1.2-era
structs passed to the 1.3 runtime segfault in rkllm_run).
"""

from __future__ import annotations

import ctypes
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
from typing import Any

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

# (struct, expected sizeof, {field: expected offset}) from rockchip.md §1.5 / §1.6.
_LAYOUT: list[tuple[type[Any], int, dict[str, int]]] = [
    (RKLLMExtendParam, 120, {"embed_flash": 4, "enabled_cpus_num": 5, "enabled_cpus_mask": 8,
                             "n_batch": 12, "use_cross_attn": 13, "reserved": 14}),
    (RKLLMParam13, 184, {"max_context_len": 8, "top_k": 16, "n_keep": 20, "top_p": 24, "mirostat_eta": 52,
                         "skip_special_token": 56, "ignore_eos_token": 57, "is_async": 58, "extend_param": 60}),
    (RKLLMParam12, 208, {"skip_special_token": 56, "is_async": 57, "img_start": 64, "img_end": 72,
                         "img_content": 80, "extend_param": 88}),
    (RKLLMMultiModalInput13, 144, {"image": 8, "video": 72}),
    (RKLLMImageInput13, 64, {"n_image_tokens": 8, "n_image": 16, "image_start": 24, "image_end": 32,
                             "image_content": 40, "image_width": 48, "image_height": 56}),
    (RKLLMMultiModalInput12, 48, {"image_embed": 8, "n_image_tokens": 16, "n_image": 24,
                                  "image_width": 32, "image_height": 40}),
    (RKLLMInput13, 160, {"enable_thinking": 8, "input_type": 12, "u": 16}),
    (RKLLMInput12, 64, {"enable_thinking": 8, "input_type": 12, "u": 16}),
    (RKLLMInferParam13, 40, {"lora_params": 8, "prompt_cache_params": 16, "sampling_params": 24,
                             "keep_history": 32, "max_new_tokens": 36}),
    (RKLLMInferParam12, 32, {"lora_params": 8, "prompt_cache_params": 16, "keep_history": 24}),
    (RKLLMPerfStat, 20, {"generate_time_ms": 8, "memory_usage_mb": 16}),
    (RKLLMResult, 72, {"token_id": 8, "last_hidden_layer": 16, "logits": 32, "perf": 48}),
    (RKLLMCallback13, 48, {"result_userdata": 8, "tokenizer_callback": 16, "embed_userdata": 40}),
    (RKLLMSamplingParam, 36, {"mirostat_eta": 32}),
]


def layout_problems() -> list[str]:
    """Differences between these mirrors and the documented layout (empty when all agree)."""
    problems = []
    for struct, size, offsets in _LAYOUT:
        if ctypes.sizeof(struct) != size:
            problems.append(f"sizeof({struct.__name__}) is {ctypes.sizeof(struct)}, expected {size}")
        for field, offset in offsets.items():
            actual = getattr(struct, field).offset
            if actual != offset:
                problems.append(f"offsetof({struct.__name__}.{field}) is {actual}, expected {offset}")
    return problems
