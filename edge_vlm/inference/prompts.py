"""Prompt framing, kept apart from the model transport: backends take a finished prompt.

A profile's prompt gets its placeholders filled, the language asked for, and, when the profile
wants a structured answer, the JSON it is to give spelled out. The text of that is pure and the
configuration checks with it too, so it lives in ``edge_vlm.config.prompt_text``; here are the
values a placeholder is filled with and the framing only a model needs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from edge_vlm.config.prompt_text import (
    ANY_JSON_INSTRUCTION,
    CHAT_TEMPLATE_TOKENS,
    build_prompt,
    estimate_tokens,
    fill,
    json_instruction,
)
from edge_vlm.frames.clip import span_words

__all__ = [
    "ANY_JSON_INSTRUCTION",
    "CHAT_TEMPLATE_TOKENS",
    "IMAGE_PLACEHOLDER",
    "YES_NO",
    "build_prompt",
    "estimate_tokens",
    "fill",
    "json_instruction",
    "multimodal_prompt",
    "placeholder_values",
    "question_prompt",
]

IMAGE_PLACEHOLDER = "<image>"
YES_NO = "Answer with yes or no only."


def multimodal_prompt(prompt: str) -> str:
    """The prompt with the ``<image>`` placeholder RKLLM needs, before the question unless placed."""
    return prompt if IMAGE_PLACEHOLDER in prompt else IMAGE_PLACEHOLDER + prompt.strip()


def placeholder_values(*, camera: str, previous: str | None, language: str | None,
                       event: Mapping[str, object] | None = None, now: float | None = None,
                       span_s: float | None = None) -> dict[str, str]:
    """What each placeholder becomes; ``span_s``: the seconds a clip's key frames span (None: one frame)."""
    event = event or {}
    zones = event.get("zones") or []
    return {
        "camera": camera,
        "time": time.strftime("%H:%M on %A %d %B %Y", time.localtime(now)),
        "span": "this moment" if span_s is None else span_words(span_s),
        "label": str(event.get("label") or ""),
        "sub_label": str(event.get("sub_label") or ""),
        "zones": ", ".join(str(z) for z in zones) if isinstance(zones, list) else str(zones),
        "previous": previous or "nothing described yet",
        "language": language or "English",
    }


def question_prompt(question: str) -> str:
    return f"{question} {YES_NO}"
