"""An answer in each API's shape: the result's payload (as an MQTT request gets it) made into
Ollama's and OpenAI's bodies, whole or as the chunks of a stream. Pure."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


@dataclass(frozen=True)
class Shaped:
    whole: dict[str, Any]  # the answer not streamed
    chunks: list[bytes]  # ...and streamed
    media_type: str


DAEMON_STAGES = frozenset({"capture", "preprocess", "queued"})  # the rest of a result's timings are the model's


def content(payload: dict[str, Any]) -> str:
    """What the model answered: the JSON object asked for (its fields, checked), else the text."""
    fields = payload.get("fields")
    return json.dumps(fields) if fields is not None else str(payload.get("text") or "")


def _ns(payload: dict[str, Any]) -> int:
    return round(float(payload.get("latency_ms") or 0) * 1_000_000)


def _model_ns(payload: dict[str, Any]) -> int:
    """The time the model took (its stages in the result's timings), in nanoseconds."""
    timings = payload.get("timings_ms") or {}
    return round(sum(float(ms) for stage, ms in timings.items() if stage not in DAEMON_STAGES) * 1_000_000)


def _ollama(model: str, payload: dict[str, Any], key: str, wrap: Callable[[str], Any]) -> Shaped:
    """Ollama's answer: ``key`` (message, response) holds the answer, as ``wrap`` puts it, then a
    last chunk that says it is done, with the times."""
    created = payload.get("described_at") or ""
    text = content(payload)
    done = {"done": True, "done_reason": "stop", "total_duration": _ns(payload), "load_duration": 0,
            "eval_duration": _model_ns(payload)}
    whole = {"model": model, "created_at": created, key: wrap(text), **done}
    chunks = [{"model": model, "created_at": created, key: wrap(text), "done": False},
              {"model": model, "created_at": created, key: wrap(""), **done}]
    return Shaped(whole, [json.dumps(c).encode() + b"\n" for c in chunks], NDJSON)


def ollama_chat(model: str, payload: dict[str, Any], stream: bool) -> Shaped:
    return _ollama(model, payload, "message", lambda text: {"role": "assistant", "content": text})


def ollama_generate(model: str, payload: dict[str, Any], stream: bool) -> Shaped:
    return _ollama(model, payload, "response", lambda text: text)


def openai_chat(model: str, payload: dict[str, Any], stream: bool) -> Shaped:
    text = content(payload)
    common = {"id": f"chatcmpl-{payload.get('id')}", "created": int(time.time()), "model": model}
    whole = {**common, "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
    chunks = [{**common, "object": "chat.completion.chunk", "choices": [
                  {"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]},
              {**common, "object": "chat.completion.chunk", "choices": [
                  {"index": 0, "delta": {}, "finish_reason": "stop"}]}]
    events = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]
    return Shaped(whole, events, SSE)


def ollama_model(name: str) -> dict[str, Any]:
    """The model as ``/api/tags`` lists it."""
    return {"name": name, "model": name, "modified_at": "1970-01-01T00:00:00Z", "size": 0,
            "digest": hashlib.sha256(name.encode()).hexdigest(), "details": _details()}


def ollama_show() -> dict[str, Any]:
    """``/api/show``: what it can do (Home Assistant's Ollama integration asks)."""
    return {"modelfile": "", "parameters": "", "template": "", "details": _details(), "model_info": {},
            "capabilities": ["completion", "vision"]}


def _details() -> dict[str, Any]:
    return {"parent_model": "", "format": "rkllm", "family": "edge_vlm", "families": ["edge_vlm"],
            "parameter_size": "", "quantization_level": ""}


def openai_model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "edge_vlm"}
