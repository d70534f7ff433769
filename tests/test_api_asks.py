"""What the HTTP API reads of a request (edge_vlm.ingest.api.asks): pure, a JSON body in, an Ask out."""

from __future__ import annotations

from typing import Any

import pytest

from edge_vlm.core.contracts import Sampling
from edge_vlm.ingest.api.asks import MAX_PROMPT, ApiError, ollama_chat, openai_chat


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
    openai = openai_chat(chat({"role": "user", "content": "Who?"}, max_tokens=10, max_completion_tokens=20, top_p=1))
    assert (openai.max_new_tokens, openai.sampling) == (20, Sampling(top_p=1))
    assert refused(openai_chat, chat({"role": "user", "content": "?"}, n=2)) == "n: one answer per request"
    assert refused(openai_chat, chat({"role": "user", "content": "?"}, max_tokens=0)) == \
        "max_completion_tokens = 0 is out of range: 1 to 1e+09"


def test_a_long_chat_keeps_its_system_prompt_and_last_turn_and_drops_its_oldest_turns() -> None:
    system = {"role": "system", "content": "You are a voice assistant. " * 20}
    history = [{"role": "user" if n % 2 == 0 else "assistant", "content": f"turn {n} " + "x" * 990}
               for n in range(12)]
    asked = ollama_chat(chat(system, *history, {"role": "user", "content": "Is anyone at the door?"}), max_prompt=8000)
    assert len(asked.prompt) <= 8000
    lines = asked.prompt.splitlines()
    assert lines[0] == f"system: {system['content']}" and lines[-1] == "Is anyone at the door?"
    kept = [int(line.split()[2]) for line in lines[1:-1]]
    assert kept == list(range(12 - len(kept), 12)) and 0 < len(kept) < 12  # the newest, in order
    assert len(ollama_chat(chat(system, *history, {"role": "user", "content": "?"})).prompt) < MAX_PROMPT  # all kept
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
