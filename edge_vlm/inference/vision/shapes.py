"""Encoder outputs: reading their shape, joining several outputs, checking them against the preset."""

from __future__ import annotations

import logging

import numpy as np

from edge_vlm.config.vlm import ModelSpec
from edge_vlm.core.errors import BackendError

logger = logging.getLogger(__name__)


def join_outputs(outputs: list[np.ndarray]) -> np.ndarray:
    """Outputs shaped [..., tokens, width] -> one C-contiguous float32 [tokens, total width].

    Several outputs (Qwen3-VL's deepstack) are concatenated per token, in output order, as
    Rockchip's multimodal demo does (deploy/src/main.cpp).
    """
    flat = [np.asarray(o, dtype=np.float32).reshape(-1, np.shape(o)[-1]) for o in outputs]
    if len({f.shape[0] for f in flat}) != 1:
        raise BackendError(f"the encoder's outputs disagree on the token count: {[f.shape for f in flat]}")
    return np.ascontiguousarray(np.concatenate(flat, axis=1) if len(flat) > 1 else flat[0])


def check_against_preset(tokens: int, floats: int, spec: ModelSpec, model: object) -> None:
    """Refuse an encoder whose output does not match what the language model expects."""
    expected = (spec.image_tokens, spec.floats_per_token)
    if None not in expected and (tokens, floats) != expected:
        raise BackendError(
            f"the encoder {model} gives {tokens} tokens x {floats} floats per image, but {spec.family} "
            f"expects {expected[0]} x {expected[1]}: a wrong model file, or set backend.image_tokens and "
            "backend.floats_per_token",
        )
    logger.info("Encoder %s: %d tokens x %d floats per image", model, tokens, floats)
