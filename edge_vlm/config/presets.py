"""Model families: what each needs from the daemon, from Rockchip's published demos and model zoo.

A preset gives the encoder's input size, the image tokens and embedding width the encoder is
expected to produce, and the image tags the language model was trained with. The encoder's real
output shape is read from the model at load and must agree with the preset (unless overridden);
the tags cannot be read from anywhere, so they come from here or from the config.
Source: rknn-llm v1.2.x to v1.3.0 READMEs, the multimodal demo's code and export scripts, issue logs
(models/README.md, The families).
"""

from __future__ import annotations

from dataclasses import dataclass

QWEN_TAGS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>")
# Per-channel mean and std (0-255) that Rockchip's export bakes into each .rknn (export_vision_rknn.py,
# chosen by the ONNX file name): an .onnx encoder taking float input needs them applied before it.
CLIP = ((122.770938, 116.7460125, 104.09373615), (68.5005327, 66.6321579, 70.32316305))
IMAGENET = ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
HALF = ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5))


@dataclass(frozen=True)
class Preset:
    family: str
    input_size: int  # the encoder's square input, pixels
    image_tokens: int | None  # tokens per image; None: only the model can tell
    embed_dim: int | None  # floats per token and encoder output; None: only the model can tell
    outputs: int  # encoder outputs concatenated per token (Qwen3-VL "deepstack")
    image_tags: tuple[str, str, str] | None  # start, end, content; None: not published, set in config
    normalisation: tuple[tuple[float, float, float], tuple[float, float, float]] = HALF
    note: str = ""

    @property
    def floats_per_token(self) -> int | None:
        return None if self.embed_dim is None else self.embed_dim * self.outputs


PRESETS = {
    p.family: p
    for p in (
        Preset("qwen2-vl-2b", 392, 196, 1536, 1, QWEN_TAGS, CLIP),
        Preset("qwen2-vl-7b", 392, 196, 3584, 1, QWEN_TAGS, CLIP),
        Preset("qwen2.5-vl-3b", 392, 196, 2048, 1, QWEN_TAGS, CLIP,
               "the model zoo's .rknn takes 392 px; a 448 px export gives 256 tokens"),
        Preset("qwen3-vl-2b", 448, 196, 2048, 4, QWEN_TAGS, HALF,
               "4 outputs (merged + 3 deepstack) concatenated per token: 8192 floats"),
        Preset("qwen3.5-0.8b", 448, 196, 1024, 1, QWEN_TAGS),
        Preset("minicpm-v-2.6", 448, 64, 3584, 1, ("<image>", "</image>\n", "<unk>")),
        Preset("internvl3-1b", 448, 256, 896, 1, ("<img>", "</img>", "<IMG_CONTEXT>"), IMAGENET),
        # The content tag is the model's own token, fullwidth bars included.
        Preset("deepseek-ocr", 448, None, None, 1, ("", "", "<｜▁pad▁｜>")),  # noqa: RUF001
        Preset("smolvlm-256m", 512, 64, 576, 1, None, HALF,
               "image tags are not published: set backend.llm.image_tags; the runtime may also "
               "need backend.llm.chat_template (rknn-llm#420)"),
    )
}
