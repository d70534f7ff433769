"""A profile's prompt as text: its placeholders filled, the language asked for, the JSON form spelled out.

Pure text, no model: the configuration checks with it that each prompt fits the model's context
(``edge_vlm.config.models``, ``edge_vlm.config.vlm``), and inference asks it
(``edge_vlm.inference.prompts``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

from edge_vlm.config.automation import PLACEHOLDERS, FieldSpec, ProfileConfig

ANY_JSON_INSTRUCTION = "Answer with only a JSON object."  # a JSON answer whose fields the asker does not say

# Tokens the runtime's chat template adds around a prompt (system prompt and role markers).
CHAT_TEMPLATE_TOKENS = 32
_PLACEHOLDER = re.compile(r"{(" + "|".join(PLACEHOLDERS) + r")}")


BYTES_PER_TOKEN = 3  # of UTF-8: tokenizers average 3-4; the fewer, the more generous the estimate


def estimate_tokens(prompt: str) -> int:
    """A generous estimate of the tokens ``prompt`` takes: tokenizers average 3-4 bytes a token."""
    return math.ceil(len(prompt.encode()) / BYTES_PER_TOKEN) + CHAT_TEMPLATE_TOKENS


def fill(template: str, values: Mapping[str, str]) -> str:
    """``template`` with its known placeholders filled; other braces are left as they are (a user's
    prompt may hold JSON)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), template)


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
