"""Trigger requests: what arrives on ``<base>/<camera>/trigger``.

An empty payload asks for a description of the camera's latest frame with its usual prompt; a
JSON object may add ``prompt`` (used for this one description) and ``id`` (echoed in the result,
so the requester can find its answer).
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge_vlm.errors import TriggerError

MAX_ID_LENGTH = 128
MAX_TRIGGER_BYTES = 16_384


class TriggerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str | None = Field(None, min_length=1, max_length=4000, description="Prompt for this request.")
    id: str | None = Field(None, min_length=1, max_length=MAX_ID_LENGTH, description="Request id.")

    @field_validator("id", mode="before")
    @classmethod
    def _number_id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _request_id_in(data: object) -> str | None:
    """The id of a request that failed validation, so the error can still carry it."""
    if isinstance(data, dict):
        value = data.get("id")
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)[:MAX_ID_LENGTH]
    return None


def parse_trigger(payload: bytes) -> TriggerRequest:
    if len(payload) > MAX_TRIGGER_BYTES:
        raise TriggerError(f"trigger payload of {len(payload)} bytes is over the limit of {MAX_TRIGGER_BYTES}")
    if not payload.strip():
        return TriggerRequest()
    try:
        data = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise TriggerError("trigger payload is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise TriggerError(f"trigger payload is not JSON: {exc.msg} at character {exc.pos}") from None
    except (RecursionError, ValueError) as exc:  # nesting too deep, an integer too long
        raise TriggerError(f"trigger payload refused by the JSON parser: {exc}") from None
    if not isinstance(data, dict):
        raise TriggerError(f"trigger payload must be a JSON object, got {type(data).__name__}")
    try:
        return TriggerRequest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors()
        )
        raise TriggerError(f"trigger payload refused: {problems}", request_id=_request_id_in(data)) from None
