"""The compiled layout Rockchip's headers give the RKLLM structs, and the check of ``abi``'s mirrors against it.

The sizes and offsets are identical on AArch64 and x86-64. The binding refuses to load when a mirror
disagrees, so a mistake fails loudly instead of corrupting memory inside the runtime (rknn-llm#509:
1.2-era structs passed to the 1.3 runtime segfault in rkllm_run).
"""

from __future__ import annotations

import ctypes
from typing import Any

from edge_vlm.inference.llm.abi import (
    RKLLMCallback13,
    RKLLMExtendParam,
    RKLLMImageInput13,
    RKLLMInferParam12,
    RKLLMInferParam13,
    RKLLMInput12,
    RKLLMInput13,
    RKLLMMultiModalInput12,
    RKLLMMultiModalInput13,
    RKLLMParam12,
    RKLLMParam13,
    RKLLMPerfStat,
    RKLLMResult,
    RKLLMSamplingParam,
)

# (struct, expected sizeof, {field: expected offset}) of rkllm.h at each release, compiled for AArch64 LP64.
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
