"""The JSON answer a request asks for (Ollama's ``format``, OpenAI's ``response_format``): any JSON
object, or a schema read as a structured answer's fields. Pure."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from edge_vlm.config.automation import FIELD_PATTERN, FieldSpec
from edge_vlm.ingest.api.errors import ApiError

MAX_FIELDS = 16  # as a profile's fields


def answer_fields(data: dict[str, Any]) -> dict[str, FieldSpec] | None:
    """The JSON answer asked for by its schema (Ollama's ``format``, OpenAI's ``response_format``)
    as the fields of a structured answer: a flat object of string, integer, number and boolean
    properties, as the configuration's profiles have; None for text or any JSON object."""
    ollama, openai = data.get("format"), data.get("response_format")
    if (ollama in (None, "") and openai in (None, {"type": "text"})) or any_json(data):
        return None
    if isinstance(openai, dict) and openai.get("type") == "json_schema":
        described = openai.get("json_schema")
        schema = described.get("schema") if isinstance(described, dict) else None
    else:
        schema = ollama if isinstance(ollama, dict) else None
    if schema is None:
        raise ApiError(400, "a JSON answer is format: \"json\" or {schema}, or response_format: {type: "
                       "json_object} or {type: json_schema, json_schema: {schema}} (a flat object of string, integer, "
                       "number and boolean properties)")
    return _schema_fields(schema)


def any_json(data: dict[str, Any]) -> bool:
    """Whether a JSON object is asked for without a schema: Ollama's ``format: "json"``, OpenAI's
    ``response_format: {type: json_object}``."""
    openai = data.get("response_format")
    return data.get("format") == "json" or (isinstance(openai, dict) and openai.get("type") == "json_object")


def _schema_fields(schema: Any) -> dict[str, FieldSpec]:
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(schema, dict) or schema.get("type") != "object" or not isinstance(properties, dict):
        raise ApiError(400, "the JSON schema is not an object with properties")
    if not properties or len(properties) > MAX_FIELDS:
        raise ApiError(400, f"the JSON schema has {len(properties)} properties: 1 to {MAX_FIELDS}")
    required = schema.get("required", list(properties))
    if not isinstance(required, list) or set(required) != set(properties):
        raise ApiError(400, "every property of the JSON schema must be required: the answer gives them all")
    fields = {}
    for name, spec in properties.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if not re.fullmatch(FIELD_PATTERN.strip("^$"), str(name)) or kind not in ("string", "integer", "number",
                                                                                  "boolean"):
            raise ApiError(400, f"property {str(name)[:40]!r}: only lower-case names (a-z, 0-9, _) of string, "
                           "integer, number or boolean values are answered")
        fields[name] = _field(name, kind, spec)
    return fields


def _field(name: str, kind: str, spec: dict[str, Any]) -> FieldSpec:
    """One property as a field: its description (and its ``enum``, asked for in words, not checked), bounds."""
    description, choices = spec.get("description", name), spec.get("enum")
    bounds = [spec.get(key) for key in ("minimum", "maximum")]
    if not isinstance(description, str) or any(b is not None and (isinstance(b, bool) or not isinstance(
            b, int | float)) for b in bounds) or not (choices is None or isinstance(choices, list)):
        raise ApiError(400, f"property {name!r}: description is text, minimum and maximum are numbers, enum a list")
    if choices:
        description += f" (one of: {', '.join(map(str, choices))})"
    try:
        return FieldSpec(type=kind, description=description[:300] or name, minimum=bounds[0],
                         maximum=bounds[1])
    except ValidationError as error:
        raise ApiError(400, f"property {name!r}: {error.errors()[0]['msg']}") from None
