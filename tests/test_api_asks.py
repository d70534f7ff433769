"""What the HTTP API reads of a request (edge_vlm.ingest.api.asks): pure, a JSON body in, an Ask out;
and how a streamed answer's response ends (edge_vlm.ingest.api.exchange.StreamedAnswer)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import ClientDisconnect

from edge_vlm.core.contracts import Sampling
from edge_vlm.ingest.api.asks import MAX_PROMPT, ollama_chat, ollama_generate, openai_chat
from edge_vlm.ingest.api.errors import ApiError
from edge_vlm.ingest.api.exchange import StreamedAnswer


def chat(*messages: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"model": "edge-vlm", "messages": list(messages), **more}


def refused(read: Any, data: dict[str, Any]) -> str:
    with pytest.raises(ApiError) as error:
        read(data)
    assert error.value.status == 400
    return str(error.value)


def test_options_are_read_as_ollama_and_home_assistant_send_them() -> None:
    asked = ollama_chat(chat({"role": "user", "content": "Who?"}, options={
        "num_predict": 64.0, "temperature": 0.2, "top_k": 40, "top_p": 0.9, "seed": 1, "num_ctx": 8192.0}))
    assert (asked.max_new_tokens, asked.sampling) == (64, Sampling(temperature=0.2, top_k=40, top_p=0.9))
    unlimited = ollama_chat(chat({"role": "user", "content": "Who?"}, options={"num_predict": -1, "top_k": 0}))
    assert (unlimited.max_new_tokens, unlimited.sampling) == (None, Sampling())
    assert refused(ollama_chat, chat({"role": "user", "content": "?"}, options={"num_predict": 1.5})) == \
        "options.num_predict is not a whole number"
    assert refused(ollama_chat, chat({"role": "user", "content": "?"}, options={"temperature": "hot"})) == \
        "options.temperature is not a number"
    assert refused(ollama_chat, chat({"role": "user", "content": "?"}, options=[1])) == "options is not an object"
    for infinite in (float("nan"), float("inf")):  # JSON's NaN and Infinity, which json.loads reads
        assert refused(ollama_chat, chat({"role": "user", "content": "?"}, options={"num_predict": infinite})) == \
            "options.num_predict is not a whole number"
    assert ollama_chat(chat({"role": "user", "content": "?"}, options={"top_k": 0})).sampling == Sampling()
    assert "options.top_k = -1 is out of range" in refused(ollama_chat, chat({"role": "user", "content": "?"},
                                                                             options={"top_k": -1}))
    assert "base64, not URLs" in refused(ollama_chat, chat({"role": "user", "content": "?",
                                                           "images": ["http://camera.lan/a.jpg"]}))
    openai = openai_chat(chat({"role": "user", "content": "Who?"}, max_tokens=10, max_completion_tokens=20, top_p=1))
    assert (openai.max_new_tokens, openai.sampling) == (20, Sampling(top_p=1))
    assert refused(openai_chat, chat({"role": "user", "content": "?"}, n=2)) == "n: one answer per request"
    assert refused(openai_chat, chat({"role": "user", "content": "?"}, max_tokens=0)) == \
        "max_tokens = 0 is out of range: 1 to 1e+09"


def test_a_long_chat_keeps_its_system_prompt_and_last_turn_and_drops_its_oldest_turns() -> None:
    system = {"role": "system", "content": "You are a voice assistant. " * 20}
    history = [{"role": "user" if n % 2 == 0 else "assistant", "content": f"turn {n} " + "x" * 990}
               for n in range(12)]
    asked = ollama_chat(chat(system, *history, {"role": "user", "content": "Is anyone at the door?"}), max_prompt=8000)
    assert len(asked.prompt.encode()) <= 8000
    lines = asked.prompt.splitlines()
    assert lines[0] == f"system: {system['content']}" and lines[-1] == "Is anyone at the door?"
    kept = [int(line.split()[2]) for line in lines[1:-1]]
    assert kept == list(range(12 - len(kept), 12)) and 0 < len(kept) < 12  # the newest, in order
    assert len(ollama_chat(chat(system, *history, {"role": "user", "content": "?"})).prompt) < MAX_PROMPT  # all kept
    cyrillic = [{"role": "user", "content": "ход " * 300} for _ in range(4)]  # 1200 characters, 2100 bytes each
    trimmed = ollama_chat(chat(*cyrillic, {"role": "user", "content": "Кто там?"}), max_prompt=5000).prompt
    assert len(trimmed.encode()) <= 5000 and trimmed.count("user: ") == 2  # measured in bytes, not characters
    short = ollama_chat(chat({"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""},
                             {"role": "user", "content": "Who?"}))
    assert short.prompt == "user: Hi\nWho?"


def test_every_image_is_kept_in_order_from_each_message_and_part() -> None:
    asked = ollama_chat(chat({"role": "user", "content": "a", "images": ["AAAA"]},
                             {"role": "user", "content": "b", "images": ["BBBB", "CCCC"]}))
    assert asked.images == ("AAAA", "BBBB", "CCCC")
    parts = [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{d}"}} for d in ("QQ==", "Ug==")]
    assert openai_chat(chat({"role": "user", "content": [*parts, "What?"]})).images == ("QQ==", "Ug==")
    assert "is no data URI" in refused(openai_chat, chat({"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://user:pw@camera.lan/a.jpg"}}]}))
    assert "pw" not in refused(openai_chat, chat({"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://user:pw@camera.lan/a.jpg"}}]}))


# Generated requests: anything JSON can hold where the readers look, and valid requests of every shape.
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
FIELDS = ["model", "messages", "role", "content", "images", "prompt", "system", "stream", "format", "options",
          "response_format", "type", "text", "image_url", "url", "num_predict", "temperature", "top_k", "top_p",
          "max_tokens", "max_completion_tokens", "n", "json_schema", "schema", "properties", "required"]
SHAPED = st.recursive(JSON, lambda inner: st.dictionaries(st.sampled_from(FIELDS), inner, max_size=5) |
                      st.lists(inner, max_size=3), max_leaves=20)
READERS = [ollama_chat, ollama_generate, openai_chat]


@settings(max_examples=400, derandomize=True, database=None, deadline=None)
@given(body=st.dictionaries(st.sampled_from(FIELDS), SHAPED, max_size=6), reader=st.sampled_from(READERS))
def test_any_json_body_is_read_or_refused_with_a_400(body: dict[str, Any], reader: Any) -> None:
    try:
        asked = reader(body)
    except ApiError as error:  # what the client gets: a 400 that says why
        refused: ApiError | None = error
    else:
        refused = None
        assert isinstance(asked.prompt, str) and asked.prompt.strip() and isinstance(asked.images, tuple)
    assert refused is None or (refused.status == 400 and str(refused))


TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40).filter(str.strip)
BASE64 = st.binary(min_size=1, max_size=12).map(lambda b: base64.b64encode(b).decode())


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(turns=st.lists(st.tuples(st.sampled_from(["system", "user", "assistant"]), TEXT, st.lists(BASE64, max_size=2)),
                      min_size=1, max_size=5), question=TEXT, stream=st.none() | st.booleans(),
       predict=st.none() | st.integers(1, 4096))
def test_a_valid_chat_keeps_its_question_last_and_every_image_in_order(
        turns: list[tuple[str, str, list[str]]], question: str, stream: bool | None, predict: int | None) -> None:
    messages = [{"role": role, "content": text, "images": images} for role, text, images in turns]
    messages.append({"role": "user", "content": question})
    body = chat(*messages, **({} if stream is None else {"stream": stream}),
                **({} if predict is None else {"options": {"num_predict": predict}}))
    asked = ollama_chat(body)
    assert asked.prompt.endswith(question) and asked.stream is (stream is not False)
    assert asked.images == tuple(image for *_, images in turns for image in images)
    assert asked.max_new_tokens == predict
    parts = [{"role": role, "content": [{"type": "text", "text": text}, *(
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{image}"}} for image in images)]}
        for role, text, images in turns]
    openai = openai_chat(chat(*parts, {"role": "user", "content": question}))
    assert (openai.prompt, openai.images, openai.stream) == (asked.prompt, asked.images, False)


def test_a_stream_that_never_began_still_says_it_is_over() -> None:
    """A server on ASGI 2.4 whose first send fails (the client gone) never runs the body: the
    response still closes it and says it ended (the client's turn given back, the job cancelled)."""
    began, ended = [], []

    async def body() -> AsyncGenerator[bytes, None]:
        began.append(True)
        yield b"never"

    async def gone(message: Any) -> None:
        raise OSError("the client went away")

    async def nothing() -> Any:
        return {"type": "http.disconnect"}

    response = StreamedAnswer(body(), "application/x-ndjson", ended=lambda: ended.append(True))
    with pytest.raises(ClientDisconnect):
        asyncio.run(response({"type": "http", "asgi": {"spec_version": "2.4"}}, nothing, gone))
    assert (began, ended) == ([], [True])
