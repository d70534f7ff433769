"""Prompt framing, kept apart from the model transport: backends take a finished prompt."""

from __future__ import annotations

import math

IMAGE_PLACEHOLDER = "<image>"


def multimodal_prompt(prompt: str) -> str:
    """The prompt with the ``<image>`` placeholder RKLLM needs, before the question unless placed."""
    return prompt if IMAGE_PLACEHOLDER in prompt else IMAGE_PLACEHOLDER + prompt.strip()


# Tokens the runtime's chat template adds around a prompt (system prompt and role markers).
CHAT_TEMPLATE_TOKENS = 32


def estimate_tokens(prompt: str) -> int:
    """A generous estimate of the tokens ``prompt`` takes: tokenizers average 3-4 bytes a token."""
    return math.ceil(len(prompt.encode()) / 3) + CHAT_TEMPLATE_TOKENS
