"""The RKLLM runtime's parameters from the configuration: the model's at init (``RKLLMParam``), and
a run's sampling (``RKLLMSamplingParam``, runtime 1.3), which starts from the init's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_vlm.config.vlm import ModelSpec, RkllmConfig
from edge_vlm.core.contracts import Sampling
from edge_vlm.inference.llm import abi


def default_cpus() -> list[int]:
    """The board's big cores for the runtime's threads, as Rockchip's server demo chooses them."""
    try:
        compatible = Path("/proc/device-tree/compatible").read_bytes()
    except OSError:
        compatible = b""
    if b"rk3588" in compatible or b"rk3576" in compatible:
        return [4, 5, 6, 7]
    return [0, 1, 2, 3]


def init_param(param: Any, types: abi.Abi, config: RkllmConfig, spec: ModelSpec, *, encoder_on_npu: bool,
               keep: list[Any]) -> Any:
    """``param`` (the runtime's defaults, from ``rkllm_createDefaultParam``) as configured; what it
    points to goes into ``keep``, to live as long as the handle."""
    model_path = str(config.model.resolve()).encode()
    keep.append(model_path)
    param.model_path = model_path
    param.max_context_len = config.max_context_len
    param.max_new_tokens = config.max_new_tokens
    param.top_k = config.top_k
    param.top_p = config.top_p
    param.temperature = config.temperature
    param.repeat_penalty = config.repeat_penalty
    param.skip_special_token = True
    param.is_async = False
    cpus = config.cpus or default_cpus()
    extend = param.extend_param
    extend.base_domain_id = (1 if encoder_on_npu else 0) if config.base_domain_id is None else config.base_domain_id
    extend.embed_flash = 1 if config.embed_flash else 0
    extend.enabled_cpus_num = len(cpus)
    extend.enabled_cpus_mask = sum(1 << cpu for cpu in cpus)
    extend.n_batch = 1
    if types.name == "1.2":  # the image tags are init parameters before 1.3
        tags = [t.encode() for t in (spec.image_tags.start, spec.image_tags.end, spec.image_tags.content)]
        keep.extend(tags)
        param.img_start, param.img_end, param.img_content = tags
    return param


def configured_sampling(param: Any) -> abi.RKLLMSamplingParam:
    """The sampling of the init parameters ``param`` (each field is one of theirs)."""
    return abi.RKLLMSamplingParam(**{name: getattr(param, name) for name, *_ in abi.RKLLMSamplingParam._fields_})


def run_sampling(configured: abi.RKLLMSamplingParam, sampling: Sampling) -> abi.RKLLMSamplingParam:
    """A run's sampling (runtime 1.3): what it asks, the rest as ``configured``. Temperature 0 is
    greedy: top_k 1 (the runtime would divide by it), whatever top_k was asked."""
    param = abi.RKLLMSamplingParam.from_buffer_copy(configured)
    param.top_k = sampling.top_k or param.top_k
    param.temperature = param.temperature if sampling.temperature is None else sampling.temperature
    param.top_p = param.top_p if sampling.top_p is None else sampling.top_p
    if param.temperature <= 0:  # asked, or configured
        param.top_k = 1
    return param
