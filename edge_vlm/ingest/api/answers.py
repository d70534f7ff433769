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
    chunks: list[bytes]  # ...and streamed: its text in one chunk, then the chunks that end a stream
    media_type: str


@dataclass(frozen=True)
class Shape:
    """How an API's answers look: whole (``answer``), as the pieces of a stream (``piece``: the
    model's name, the request's id, the text, whether it is the first), and an error in a stream."""

    answer: Callable[[str, dict[str, Any], bool], Shaped]
    piece: Callable[[str, str, str, bool], bytes]
    error: Callable[[str, str], bytes]
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


def _chat_message(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def _ollama_piece(key: str, wrap: Callable[[str], Any]) -> Callable[[str, str, str, bool], bytes]:
    def piece(model: str, request_id: str, text: str, first: bool) -> bytes:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return json.dumps({"model": model, "created_at": created, key: wrap(text), "done": False}).encode() + b"\n"
    return piece


def _ollama_error(message: str, kind: str) -> bytes:
    return json.dumps({"error": message}).encode() + b"\n"  # as Ollama ends a stream that failed


def ollama_chat(model: str, payload: dict[str, Any], stream: bool) -> Shaped:
    return _ollama(model, payload, "message", _chat_message)


def ollama_generate(model: str, payload: dict[str, Any], stream: bool) -> Shaped:
    return _ollama(model, payload, "response", lambda text: text)


def _openai_common(model: str, request_id: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-{request_id}", "created": int(time.time()), "model": model}


def _sse(data: Any) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def openai_chat(model: str, payload: dict[str, Any], stream: bool) -> Shaped:
    text = content(payload)
    common = _openai_common(model, str(payload.get("id")))
    whole = {**common, "object": "chat.completion", "choices": [
        {"index": 0, "message": _chat_message(text), "finish_reason": "stop"}]}
    chunks = [openai_piece(model, str(payload.get("id")), text, True),
              _sse({**common, "object": "chat.completion.chunk", "choices": [
                  {"index": 0, "delta": {}, "finish_reason": "stop"}]}), b"data: [DONE]\n\n"]
    return Shaped(whole, chunks, SSE)


def openai_piece(model: str, request_id: str, text: str, first: bool) -> bytes:
    delta = _chat_message(text) if first else {"content": text}
    return _sse({**_openai_common(model, request_id), "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})


def _openai_error(message: str, kind: str) -> bytes:
    # the openai client raises an APIError for an event whose data holds "error"
    return _sse({"error": {"message": message, "type": kind, "param": None, "code": None}})


OLLAMA_CHAT = Shape(ollama_chat, _ollama_piece("message", _chat_message), _ollama_error, NDJSON)
OLLAMA_GENERATE = Shape(ollama_generate, _ollama_piece("response", lambda text: text), _ollama_error, NDJSON)
OPENAI_CHAT = Shape(openai_chat, openai_piece, _openai_error, SSE)


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


def openai_model(name: str, context_tokens: int | None = None) -> dict[str, Any]:
    """The model as ``/v1/models`` lists it; its context as vLLM says it (``max_model_len``), if known."""
    listed: dict[str, Any] = {"id": name, "object": "model", "created": 0, "owned_by": "edge_vlm"}
    return listed if context_tokens is None else {**listed, "max_model_len": context_tokens}
