"""Prompt framing, kept apart from the model transport: backends take a finished prompt.

A profile's prompt gets its placeholders filled, the language asked for, and, when the profile
wants a structured answer, the JSON it is to give spelled out.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping

from edge_vlm.config.automation import PLACEHOLDERS, FieldSpec, ProfileConfig

IMAGE_PLACEHOLDER = "<image>"
YES_NO = "Answer with yes or no only."

# Tokens the runtime's chat template adds around a prompt (system prompt and role markers).
CHAT_TEMPLATE_TOKENS = 32
_PLACEHOLDER = re.compile(r"{(" + "|".join(PLACEHOLDERS) + r")}")


def multimodal_prompt(prompt: str) -> str:
    """The prompt with the ``<image>`` placeholder RKLLM needs, before the question unless placed."""
    return prompt if IMAGE_PLACEHOLDER in prompt else IMAGE_PLACEHOLDER + prompt.strip()


def estimate_tokens(prompt: str) -> int:
    """A generous estimate of the tokens ``prompt`` takes: tokenizers average 3-4 bytes a token."""
    return math.ceil(len(prompt.encode()) / 3) + CHAT_TEMPLATE_TOKENS


def fill(template: str, values: Mapping[str, str]) -> str:
    """``template`` with its known placeholders filled; other braces are left as they are (a user's
    prompt may hold JSON)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), template)


def placeholder_values(*, camera: str, previous: str | None, language: str | None,
                       event: Mapping[str, object] | None = None, now: float | None = None) -> dict[str, str]:
    event = event or {}
    zones = event.get("zones") or []
    return {
        "camera": camera,
        "time": time.strftime("%H:%M on %A %d %B %Y", time.localtime(now)),
        "label": str(event.get("label") or ""),
        "sub_label": str(event.get("sub_label") or ""),
        "zones": ", ".join(str(z) for z in zones) if isinstance(zones, list) else str(zones),
        "previous": previous or "nothing described yet",
        "language": language or "English",
    }


def _describe_field(name: str, spec: FieldSpec) -> str:
    bounds = []
    if spec.minimum is not None:
        bounds.append(f">= {spec.minimum:g}")
    if spec.maximum is not None:
        bounds.append(f"<= {spec.maximum:g}")
    kind = spec.type + (f" {' and '.join(bounds)}" if bounds else "")
    return f'"{name}" ({kind}): {spec.description}'


def json_instruction(fields: Mapping[str, FieldSpec]) -> str:
    example = {name: {"string": "...", "integer": 0, "number": 0.0, "boolean": False}[spec.type]
               for name, spec in fields.items()}
    lines = "\n".join(f"- {_describe_field(name, spec)}" for name, spec in fields.items())
    return f"Answer with only a JSON object like {json.dumps(example)}, where\n{lines}"


def build_prompt(profile: ProfileConfig, values: Mapping[str, str], language: str | None) -> str:
    """The question to ask: filled, in the right language, with its JSON form if structured."""
    prompt = fill(profile.prompt, values)
    if language and "{language}" not in profile.prompt:
        prompt += f" Answer in {language}."
    if profile.structured:
        prompt += "\n\n" + json_instruction(profile.fields)
    return prompt


def question_prompt(question: str) -> str:
    return f"{question} {YES_NO}"
