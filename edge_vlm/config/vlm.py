"""Configuration of the NPU pipeline: a vision encoder, then RKLLM, in a supervised worker process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from edge_vlm.config.base import StrictModel, WorkerSupervision
from edge_vlm.config.presets import PRESETS
from edge_vlm.config.prompt_text import BYTES_PER_TOKEN, CHAT_TEMPLATE_TOKENS, estimate_tokens

CORE_MASKS = {"auto": 0, "0": 1, "1": 2, "2": 4, "0_1": 3, "0_1_2": 7, "all": 0xFFFF}


class ImageTags(StrictModel):
    start: str = Field(description="Text before the image tokens, e.g. <|vision_start|>.")
    end: str = Field(description="Text after the image tokens, e.g. <|vision_end|>.")
    content: str = Field(min_length=1, description="The placeholder token repeated per image token.")


class ChatTemplate(StrictModel):
    system: str = Field(description="System prompt, with the model's own markers.")
    prefix: str = Field(description="Text before each user prompt.")
    postfix: str = Field(description="Text after each user prompt (starts the answer).")


class ImgencEncoderConfig(StrictModel):
    type: Literal["imgenc"] = Field(description="imgenc: Rockchip's demo encoder binary, run once per frame.")
    executable: Path = Field(description="Path of the imgenc program.")
    model: Path = Field(description="The vision encoder (.rknn).")
    npu_cores: Literal[1, 2, 3] = Field(3, description="NPU cores imgenc uses (its core_num argument).")
    timeout_s: float = Field(60.0, ge=1, le=600, description="imgenc is killed after this many seconds.")


class RknnEncoderConfig(StrictModel):
    type: Literal["rknn"] = Field(description="rknn: the encoder kept resident in the worker (RKNNLite).")
    model: Path = Field(description="The vision encoder (.rknn).")
    core_mask: Literal["auto", "0", "1", "2", "0_1", "0_1_2", "all"] = Field(
        "all", description="NPU cores for the encoder (RK3576 has cores 0 and 1).",
    )


class OnnxEncoderConfig(StrictModel):
    type: Literal["onnx"] = Field(description="onnx: the encoder on the CPU with onnxruntime (slow; no NPU).")
    model: Path = Field(description="The vision encoder (.onnx).")
    threads: int = Field(0, ge=0, le=64, description="CPU threads for onnxruntime; 0 = its default.")
    mean: tuple[float, float, float] | None = Field(
        None, description="Per-channel mean (0-255, RGB) subtracted when the model takes float input; default: "
        "the family's (CLIP for Qwen2/2.5-VL, ImageNet for InternVL3, else 127.5). A uint8 input gets raw pixels.",
    )
    std: tuple[float, float, float] | None = Field(
        None, description="Per-channel divisor (0-255, RGB) for float input; default: the family's.",
    )

    @field_validator("std")
    @classmethod
    def _no_zero(cls, std: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        if std is not None and any(s <= 0 for s in std):
            raise ValueError("std values must be positive")
        return std


EncoderConfig = Annotated[
    ImgencEncoderConfig | RknnEncoderConfig | OnnxEncoderConfig, Field(discriminator="type"),
]


class RkllmConfig(StrictModel):
    type: Literal["rkllm"] = Field("rkllm", description="rkllm: Rockchip's RKLLM runtime (librkllmrt.so).")
    library: Path = Field(Path("/usr/lib/librkllmrt.so"), description="Path of librkllmrt.so.")
    runtime_version: Literal["auto", "1.2", "1.3"] = Field(
        "auto", description='ABI of the library: "1.2" (1.2.1-1.2.3), "1.3" (1.3.x), or auto: identified '
        "from the official release files.",
    )
    model: Path = Field(description="The language model (.rkllm), converted for this runtime version.")
    max_context_len: int = Field(2048, ge=64, le=32768, description="Context window, tokens.")
    max_new_tokens: int = Field(128, ge=1, le=4096, description="Longest answer, tokens.")
    top_k: int = Field(1, ge=1, le=1000, description="Sampling: 1 = greedy (the demos' choice).")
    top_p: float = Field(0.9, gt=0, le=1, description="Sampling: nucleus probability.")
    temperature: float = Field(0.8, ge=0, le=2, description="Sampling temperature.")
    repeat_penalty: float = Field(1.1, ge=0.5, le=2, description="Sampling: repetition penalty.")
    cpus: list[Annotated[int, Field(ge=0, le=7)]] | None = Field(
        None, min_length=1, max_length=8,
        description="CPU cores for the runtime's threads; default: the big cores 4-7 on RK3588/RK3576, "
        "else 0-3. Must be at least the model's NPU cores.",
    )
    base_domain_id: int | None = Field(
        None, ge=0, le=15, description="RKNPU IOMMU domain of the model; default 1 when the encoder also uses "
        "the NPU (rknn or imgenc), so the two do not exhaust one domain (rknn-llm#195), else 0.",
    )
    embed_flash: bool = Field(True, description="Keep the embedding table in the model file, not in RAM.")
    image_tags: ImageTags | None = Field(None, description="Override the family's image tags.")
    chat_template: ChatTemplate | None = Field(
        None, description="Set the chat template instead of the one in the model (rknn-llm#420).",
    )

    @field_validator("cpus")
    @classmethod
    def _cpus_unique(cls, cpus: list[int] | None) -> list[int] | None:
        if cpus is not None and len(set(cpus)) != len(cpus):
            raise ValueError("each CPU may appear only once")
        return cpus


@dataclass(frozen=True)
class ModelSpec:
    """What the worker needs to know of the model family, presets and overrides resolved."""

    family: str
    input_size: int
    image_tokens: int | None
    floats_per_token: int | None
    image_tags: ImageTags
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class VlmBackendConfig(WorkerSupervision):
    type: Literal["vlm"] = Field(
        description="vlm: a vision encoder, then a language model, in a supervised worker process.",
    )
    family: str = Field(description=f"Model family preset: {', '.join(PRESETS)}.")
    encoder: EncoderConfig = Field(description="The vision encoder.")
    llm: RkllmConfig = Field(description="The language model.")
    input_size: int | None = Field(None, ge=28, le=2048, description="Override the preset's encoder input size.")
    image_tokens: int | None = Field(None, ge=1, le=16384, description="Override the preset's tokens per image.")
    floats_per_token: int | None = Field(
        None, ge=1, le=65536, description="Override the preset's embedding floats per token.",
    )

    @field_validator("family")
    @classmethod
    def _known_family(cls, family: str) -> str:
        if family not in PRESETS:
            raise ValueError(f"unknown model family; known: {', '.join(PRESETS)}")
        return family

    @model_validator(mode="after")
    def _tags_known(self) -> VlmBackendConfig:
        if self.llm.image_tags is None and PRESETS[self.family].image_tags is None:
            raise ValueError(f"{self.family}: its image tags are not published; set llm.image_tags")
        return self

    @property
    def spec(self) -> ModelSpec:
        preset = PRESETS[self.family]
        tags = self.llm.image_tags
        if tags is None:
            assert preset.image_tags is not None  # checked by _tags_known
            start, end, content = preset.image_tags
            tags = ImageTags(start=start, end=end, content=content)
        return ModelSpec(
            family=self.family,
            input_size=self.input_size or preset.input_size,
            image_tokens=self.image_tokens or preset.image_tokens,
            floats_per_token=self.floats_per_token or preset.floats_per_token,
            image_tags=tags,
            mean=preset.normalisation[0],
            std=preset.normalisation[1],
        )

    @property
    def files(self) -> dict[tuple[str, ...], Path]:
        """The files this backend reads, by config path, for start-up checks."""
        found: dict[tuple[str, ...], Path] = {
            ("encoder", "model"): self.encoder.model, ("llm", "model"): self.llm.model,
            ("llm", "library"): self.llm.library,
        }
        if isinstance(self.encoder, ImgencEncoderConfig):
            found["encoder", "executable"] = self.encoder.executable
        return found


def context_problem(backend: VlmBackendConfig, prompt: str | None) -> str | None:
    """Why ``prompt`` with an image and a full answer cannot fit the model's context, if it cannot."""
    tokens = backend.spec.image_tokens
    if prompt is None or tokens is None:
        return None
    needed = estimate_tokens(prompt) + tokens + backend.llm.max_new_tokens
    if needed <= backend.llm.max_context_len:
        return None
    return (f"about {estimate_tokens(prompt)} prompt tokens + {tokens} image tokens + "
            f"{backend.llm.max_new_tokens} new tokens (llm.max_new_tokens) = {needed} do not fit "
            f"llm.max_context_len = {backend.llm.max_context_len}")


def prompt_room(backend: VlmBackendConfig) -> tuple[int, str]:
    """How many bytes (UTF-8) of a question fit the model's context beside an image and a full
    answer (as estimate_tokens counts them), and what bounds it, in words."""
    tokens = backend.spec.image_tokens or 0
    left = backend.llm.max_context_len - tokens - backend.llm.max_new_tokens - CHAT_TEMPLATE_TOKENS
    bound = (f"the model's context (backend.llm.max_context_len = {backend.llm.max_context_len} tokens, less "
             f"{tokens} of the image and {backend.llm.max_new_tokens} of the answer)")
    return max(left, 0) * BYTES_PER_TOKEN, bound
