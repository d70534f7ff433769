"""What an Ollama or OpenAI client asks, read from its request body: the question and the image.

Pure: a JSON body in, an ``Ask`` out, or an ``ApiError`` with the HTTP status and the message the
client gets (in its API's error shape, by edge_vlm.ingest.api.app). The conversation is made into
one question (the system prompt, then each turn, the last user turn last), since the board's model
answers one question about one image at a time; several images sent are that image as a numbered grid.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from edge_vlm.config.automation import FieldSpec
from edge_vlm.core.contracts import Sampling
from edge_vlm.core.redact import redact_url
from edge_vlm.ingest.api.errors import ApiError
from edge_vlm.ingest.api.formats import answer_fields, any_json

MAX_PROMPT = 16_000  # UTF-8 bytes of a question (what it keeps of a conversation included), with no model's bound
MAX_IMAGES = 16  # a 4 x 4 grid (Frigate sends up to 10 thumbnails, LLM Vision a few frames)
DATA_URI = re.compile(r"^data:image/[a-z0-9.+-]+;base64,(?P<data>.*)$", re.S | re.I)


@dataclass(frozen=True)
class Ask:
    model: str
    prompt: str
    images: tuple[str, ...] = field(repr=False)  # base64, in the order sent (none: a question without an image)
    stream: bool
    fields: dict[str, FieldSpec] | None = None  # a JSON answer asked for, by its schema
    json_object: bool = False  # ...or a JSON object, any (Ollama's format "json", OpenAI's json_object)
    max_new_tokens: int | None = None  # the answer's most tokens (Ollama's num_predict, OpenAI's max_tokens)
    sampling: Sampling | None = None  # temperature, top_k, top_p as asked


def _number(where: str, value: Any, low: float, high: float, *, whole: bool = False) -> Any:
    """``value`` if it is a number (a whole one if ``whole``) from ``low`` to ``high``, None if absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or (
            whole and value != int(value)):
        raise ApiError(400, f"{where} is not a {'whole ' if whole else ''}number")
    if not low <= value <= high:
        raise ApiError(400, f"{where} = {value} is out of range: {low:g} to {high:g}")
    return int(value) if whole else value  # 8192.0 is 8192 (Home Assistant sends its numbers so)


def _limit(value: int | None) -> int | None:
    """A token limit: none when zero or negative (Ollama's -1: as long as the model goes)."""
    return value if value is not None and value > 0 else None


def ollama_options(data: dict[str, Any]) -> tuple[int | None, Sampling | None]:
    """Ollama's ``options`` the runtime can follow: num_predict, temperature, top_k, top_p (the
    others, num_ctx and seed among them, are the board's to set and ignored)."""
    options = data.get("options")
    if options is None:
        return None, None
    if not isinstance(options, dict):
        raise ApiError(400, "options is not an object")
    top_k = _number("options.top_k", options.get("top_k"), 0, 1000, whole=True)
    return _limit(_number("options.num_predict", options.get("num_predict"), -2, 1e9, whole=True)), Sampling(
        temperature=_number("options.temperature", options.get("temperature"), 0, 2),
        top_k=top_k if top_k else None, top_p=_number("options.top_p", options.get("top_p"), 0, 1) or None)


def openai_options(data: dict[str, Any]) -> tuple[int | None, Sampling | None]:
    """OpenAI's max_completion_tokens (or max_tokens), temperature, top_p; one answer (n 1)."""
    if data.get("n") not in (None, 1):
        raise ApiError(400, "n: one answer per request")
    named = "max_completion_tokens" if data.get("max_completion_tokens") is not None else "max_tokens"
    return _limit(_number(named, data.get(named), 1, 1e9, whole=True)), Sampling(
        temperature=_number("temperature", data.get("temperature"), 0, 2),
        top_p=_number("top_p", data.get("top_p"), 0, 1) or None)


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (RecursionError, ValueError):
        raise ApiError(400, "the request body is not JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body is not a JSON object")
    return data


def _text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError(400, f"{where} is not a string")
    return value


def _model(data: dict[str, Any]) -> str:
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model is required")
    return model


def _stream(data: dict[str, Any], default: bool) -> bool:
    stream = data.get("stream", default)
    if stream is None:
        return default
    if not isinstance(stream, bool):
        raise ApiError(400, "stream is not true or false")
    return stream


def utf8_len(text: str) -> int:
    """How long ``text`` is as a prompt is measured: in UTF-8 bytes (a tokenizer's units are bytes)."""
    return len(text.encode(errors="replace"))


def _one_question(turns: list[tuple[str, str]], max_prompt: int) -> str:
    """A conversation as one question: the last user turn, after what came before it; the oldest
    turns but the system's left out while it is longer than ``max_prompt`` (a chat's history grows)."""
    if not turns or not any(role == "user" and text.strip() for role, text in turns):
        raise ApiError(400, "no question: the messages hold no user text")
    earlier = [f"{role}: {text}" for role, text in turns[:-1] if text.strip()]
    droppable = [i for i, (role, text) in enumerate(t for t in turns[:-1] if t[1].strip()) if role != "system"]
    while droppable and sum(utf8_len(line) + 1 for line in earlier) + utf8_len(turns[-1][1]) > max_prompt:
        earlier[droppable.pop(0)] = ""
    return "\n".join([*filter(None, earlier), turns[-1][1]])


def _messages(data: dict[str, Any], shape: str) -> list[tuple[int, dict[str, Any], str]]:
    """The request's messages: each an object, with its index and role (user unless said)."""
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, f"messages is required: a list of {shape}")
    found = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ApiError(400, f"messages[{index}] is not an object")
        found.append((index, message, _text(message.get("role"), f"messages[{index}].role") or "user"))
    return found


def ollama_chat(data: dict[str, Any], max_prompt: int = MAX_PROMPT) -> Ask:
    """``POST /api/chat``: ``messages`` with ``images`` (base64) on a user message; streams by default."""
    turns: list[tuple[str, str]] = []
    images: list[str] = []
    for index, message, role in _messages(data, "{role, content, images}"):
        turns.append((role, _text(message.get("content"), f"messages[{index}].content")))
        images += _images(message.get("images"), f"messages[{index}].images")
    return Ask(_model(data), _one_question(turns, max_prompt), _counted(images), _stream(data, True),
               answer_fields(data),
               any_json(data), *ollama_options(data))


def ollama_generate(data: dict[str, Any]) -> Ask:
    """``POST /api/generate``: ``prompt`` (and ``system``) with ``images``; streams by default."""
    prompt = _text(data.get("prompt"), "prompt")
    system = _text(data.get("system"), "system")
    if not prompt.strip():
        raise ApiError(400, "prompt is required")
    return Ask(_model(data), f"{system}\n{prompt}" if system.strip() else prompt,
               _counted(_images(data.get("images"), "images")), _stream(data, True), answer_fields(data),
               any_json(data), *ollama_options(data))


def _images(images: Any, where: str) -> list[str]:
    if images is None:
        return []
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise ApiError(400, f"{where} is not a list of base64 images")
    if any(":" in image[:10] for image in images):  # base64 has no ':'
        raise ApiError(400, f"{where}: Ollama's images are base64, not URLs or data URIs (OpenAI's image_url "
                       "takes those)")
    return images


def _counted(images: list[str]) -> tuple[str, ...]:
    """The images of a request: at most MAX_IMAGES, described together as a numbered grid."""
    if len(images) > MAX_IMAGES:
        raise ApiError(400, f"{len(images)} images: at most {MAX_IMAGES} a request (they are described together, "
                       "as one grid)")
    return tuple(images)


def openai_chat(data: dict[str, Any], fetches: Callable[[str], bool] = lambda url: False,
                max_prompt: int = MAX_PROMPT) -> Ask:
    """``POST /v1/chat/completions``: ``messages`` whose content is text or parts (``text``,
    ``image_url``: a data URI, or an http(s) URL that ``fetches`` allows); does not stream unless asked."""
    turns: list[tuple[str, str]] = []
    images: list[str] = []
    for index, message, role in _messages(data, "{role, content}"):
        content = message.get("content")
        if isinstance(content, list):
            texts = []
            for number, part in enumerate(content):
                where = f"messages[{index}].content[{number}]"
                kind = part.get("type") if isinstance(part, dict) else None
                if isinstance(part, str):  # Frigate 0.15's prompt: a bare string among the parts
                    texts.append(part)
                elif kind == "text":
                    texts.append(_text(part.get("text"), f"{where}.text"))
                elif kind == "image_url":
                    images.append(_image_url(part.get("image_url"), where, fetches))
                else:
                    raise ApiError(400, f"{where}: only text and image_url parts are understood")
            turns.append((role, "\n".join(texts)))
        else:
            turns.append((role, _text(content, f"messages[{index}].content")))
    return Ask(_model(data), _one_question(turns, max_prompt), _counted(images), _stream(data, False),
               answer_fields(data),
               any_json(data), *openai_options(data))


def _image_url(image_url: Any, where: str, fetches: Callable[[str], bool]) -> str:
    """A data URI's base64, or a URL the board may fetch (the grab fetches it)."""
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str):
        raise ApiError(400, f"{where}.image_url.url is required")
    url = url.strip()
    match = DATA_URI.match(url)
    if match is not None:
        return match.group("data")
    if fetches(url):
        return url if url.startswith(("http://", "https://")) else urlsplit(url).geturl()  # HTTP:// made http://
    shown = redact_url(url.partition("?")[0])
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise ApiError(400, f"{where}: {shown!r} is no data URI (data:image/jpeg;base64,...), nor an http(s) URL of a host "
                   "in http.image_url_hosts (the hosts whose image URLs the board fetches)")
