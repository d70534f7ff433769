"""The HTTP API on the NPU path (the runtime's stand-in, which logs every call: tests/native), and
the requests of the clients docs/http-api.md sets up (LLM Vision, Frigate, Home Assistant), as
their code builds them (issue 17)."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from edge_vlm.service import Service
from tests.conftest import app_config
from tests.support.backends import GATE_TIMEOUT_S
from tests.support.broker import Mosquitto
from tests.support.http_api import (
    KEY,
    KEY_ENV,
    PORCH,
    PORCH_TEXT,
    Api,
    data_uri,
    raw_request,
    runtime_calls,
    wait_until,
)
from tests.support.native import LOG_ENV
from tests.support.npu import vlm_backend

pytestmark = pytest.mark.mqtt

Daemon = Callable[..., Service]


@pytest.fixture
def npu_api(broker: Mosquitto, make_daemon: Daemon, fake_rkllmrt: dict[str, Path], tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Api:
    """The daemon on the runtime's stand-in (1.3; its calls logged in tmp_path: runtime_calls),
    with the HTTP API on, one camera."""
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv(LOG_ENV, str(tmp_path / "rkllm-calls.jsonl"))  # the worker, spawned, inherits it
    config = app_config(broker.port, cameras=[{"id": "porch"}], backend=vlm_backend(
        tmp_path, fake_rkllmrt["1.3"], abi="1.3", encoder="onnx"), http={"enabled": True, "port": 0,
                                                                         "api_key_env": KEY_ENV})
    return Api(make_daemon(config))


def test_a_client_that_goes_away_has_its_running_job_aborted_and_a_crash_is_a_500(
        npu_api: Api, tmp_path: Path) -> None:
    """On the NPU path (the runtime's stand-in, which logs every call): a run that would take
    seconds ([[slow]]: 200 ms a token) is aborted when its client closes the connection, and the
    next request is answered."""
    api = npu_api
    image = base64.b64encode(PORCH).decode()

    with raw_request(api, "/api/chat", {"model": "edge-vlm", "stream": False, "messages": [
            {"role": "user", "content": "[[slow]] Describe it.", "images": [image]}]}):
        wait_until(lambda: any("[[slow]]" in c.get("prompt", "") for c in runtime_calls(tmp_path)),
                   "the slow run on the NPU")
    wait_until(lambda: any(c["event"] == "rkllm_abort" for c in runtime_calls(tmp_path)), "the run aborted")

    quick = api.ollama().chat(model="edge-vlm", messages=[{"role": "user", "content": "Quick?", "images": [image]}])
    assert (quick.message.content or "").endswith("Quick? Café … ok")
    done = [c for c in runtime_calls(tmp_path) if c["event"] == "rkllm_run_done"]
    assert [d["finished"] for d in done] == [False, True]  # the slow run cut short, the next one whole

    # a worker that crashes: a 500 in the client's shape, then (once the worker is back) the next answered
    with pytest.raises(openai.InternalServerError) as crashed:
        api.openai().chat.completions.create(model="edge-vlm", messages=[{"role": "user", "content": "[[segfault]]"}])
    assert crashed.value.status_code == 500 and "killed by SIGSEGV" in crashed.value.message
    assert (asked_again_while_503(api, "Back?").choices[0].message.content or "").endswith("Back? Café … ok")
    for client in api.clients:
        client.close()


def asked_again_while_503(api: Api, question: str) -> Any:
    """The answer to ``question``, asked again after each 503 (the worker restarting) as a client
    told Retry-After would, for a minute at most."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return api.openai().chat.completions.create(model="edge-vlm", messages=[{"role": "user",
                                                                                     "content": question}])
        except openai.InternalServerError as error:
            if error.status_code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_json_schema_gets_the_json_object_checked_from_both_clients(
        npu_api: Api, tmp_path: Path) -> None:
    """On the NPU path: the runtime's stand-in answers what [[reply:...]] says; the daemon asks for
    the schema's fields as a profile's structured answer does, and checks the answer against them."""
    api = npu_api
    schema: Any = {"type": "object", "properties": {"people": {"type": "integer", "minimum": 0},
                                               "parcel": {"type": "boolean", "description": "a parcel is there"}},
              "required": ["people", "parcel"]}
    question = 'How many people? [[reply:Sure: {"people": "2", "parcel": "yes"}]]'  # as small models answer

    answer = api.ollama().chat(model="edge-vlm", format=schema, messages=[
        {"role": "user", "content": question, "images": [PORCH]}])
    assert json.loads(answer.message.content or "") == {"people": 2, "parcel": True}
    asked = [c["prompt"] for c in runtime_calls(tmp_path) if c["event"] == "rkllm_run"][-1]
    assert 'Answer with only a JSON object like {"people": 0, "parcel": false}' in asked
    assert '"parcel" (boolean): a parcel is there' in asked

    asked_openai: Any = [{"role": "user", "content": [{"type": "text", "text": question},
                                                      {"type": "image_url", "image_url": {"url": data_uri(PORCH)}}]}]
    completion = api.openai().chat.completions.create(
        model="edge-vlm", response_format={"type": "json_schema", "json_schema": {"name": "count", "schema": schema}},
        messages=asked_openai)
    assert json.loads(completion.choices[0].message.content or "") == {"people": 2, "parcel": True}

    # any JSON object (Ollama's format "json", OpenAI's json_object): asked for in words, the object as given
    free = 'Who? [[reply:Here: {"who": "a man in red", "parcels": 1} as asked]]'
    assert json.loads(api.ollama().chat(model="edge-vlm", format="json", messages=[
        {"role": "user", "content": free, "images": [PORCH]}]).message.content or "") == {"who": "a man in red",
                                                                                           "parcels": 1}
    assert [c["prompt"] for c in runtime_calls(tmp_path) if c["event"] == "rkllm_run"][-1].endswith(
        "\n\nAnswer with only a JSON object.")
    object_asked: Any = [{"role": "user", "content": free}]
    assert json.loads(api.openai().chat.completions.create(
        model="edge-vlm", messages=object_asked, response_format={"type": "json_object"}).choices[0].message.content
        or "") == {"who": "a man in red", "parcels": 1}

    # plain chat, no image: the language model alone (LLM Vision's setup says "Hi", so does a conversation)
    hello = api.ollama().chat(model="edge-vlm", messages=[{"role": "user", "content": "Hi"}])
    assert (hello.message.content or "").endswith("Hi Café … ok")
    plain = [c for c in runtime_calls(tmp_path) if c["event"] in ("rkllm_run", "rkllm_run_done")][-2:]
    assert (plain[0]["prompt"], plain[1]["image_tokens"]) == ("Hi", 0)
    with pytest.raises(ollama.ResponseError) as optional:  # the answer gives every field
        api.ollama().chat(model="edge-vlm", messages=[{"role": "user", "content": question, "images": [PORCH]}],
                          format={**schema, "required": ["people"]})
    assert optional.value.status_code == 400 and "every property of the JSON schema must be required" in \
        optional.value.error
    with pytest.raises(ollama.ResponseError) as nested:
        api.ollama().chat(model="edge-vlm", messages=[{"role": "user", "content": question, "images": [PORCH]}],
                          format={"type": "object", "properties": {"who": {"type": "array"}}})
    assert nested.value.status_code == 400 and "only lower-case names" in nested.value.error
    with pytest.raises(ollama.ResponseError) as unanswered:  # asked again once, then given up
        api.ollama().chat(model="edge-vlm", format=schema, messages=[
            {"role": "user", "content": "How many? [[reply:Two, I think.]]", "images": [PORCH]}])
    assert unanswered.value.status_code == 502
    assert "the model's answer is not the JSON asked for, twice" in unanswered.value.error
    for client in api.clients:
        client.close()


def test_what_llm_vision_frigate_and_home_assistant_send_is_answered(make_api: Callable[..., Api]) -> None:
    """The requests of the documented clients, as their code builds them (docs/http-api.md, Clients)."""
    api = make_api(max_waiting_per_client=4)
    image = base64.b64encode(PORCH).decode()
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=GATE_TIMEOUT_S) as http:
        # LLM Vision's "Custom OpenAI" provider (v1.7): frames labelled, max_completion_tokens, no stream
        llm_vision = http.post("/v1/chat/completions", json={
            "model": "edge-vlm", "max_completion_tokens": 3000, "temperature": 0.5, "top_p": 0.9,
            "messages": [{"role": "system", "content": "You describe camera images."},
                         {"role": "user", "content": [{"type": "text", "text": "Image 1:"},
                                                      {"type": "image_url", "image_url": {"url": data_uri(PORCH)}},
                                                      {"type": "text", "text": "Who is there?"}]}]})
        assert llm_vision.status_code == 200
        assert llm_vision.json()["choices"][0]["message"]["content"].startswith(PORCH_TEXT)
        assert api.backend.prompts[-1] == "system: You describe camera images.\nImage 1:\nWho is there?"
        # Frigate 0.15's openai provider: the prompt a bare string among the parts, images "detail: low"
        parts = [{"type": "image_url", "image_url": {"url": data_uri(PORCH), "detail": "low"}}, "Describe the person."]
        frigate = http.post("/v1/chat/completions",
                            json={"model": "edge-vlm", "messages": [{"role": "user", "content": parts}]})
        assert frigate.status_code == 200 and api.backend.prompts[-1] == "Describe the person."
    # Frigate's ollama provider: show(), then generate() with the images as bytes
    with ollama.Client(host=f"{api.url}/k/{KEY}") as frigate_ollama:
        assert frigate_ollama.show("edge-vlm").modelinfo is not None
        assert (frigate_ollama.generate("edge-vlm", "Describe.", images=[PORCH]).response or "").startswith(PORCH_TEXT)
    # Home Assistant's Ollama integration: list(), then a streamed chat with its options
    with ollama.Client(host=f"{api.url}/k/{KEY}") as home_assistant:
        assert "edge-vlm" in [m.model for m in home_assistant.list().models]
        streamed = home_assistant.chat(model="edge-vlm", stream=True, keep_alive="-1s", options={"num_ctx": 8192},
                                       messages=[{"role": "user", "content": "Who?", "images": [image]}])
        assert "".join(chunk.message.content or "" for chunk in streamed).startswith(PORCH_TEXT)


def test_answers_stream_as_the_model_writes_them_with_the_options_asked(
        npu_api: Api, tmp_path: Path) -> None:
    """On the NPU path: a streamed answer comes a piece per token (the whole answer's text, in
    order); Ollama's options and OpenAI's parameters reach the runtime's run (1.3) as its sampling
    and token limit; a client that leaves mid-stream has its run aborted, and the next is answered."""
    api = npu_api
    question = [{"role": "user", "content": "[[reply:A man in a red jacket holds a parcel.]] Who?", "images": [PORCH]}]

    pieces = [chunk.message.content or "" for chunk in api.ollama().chat(model="edge-vlm", messages=question,
                                                                          stream=True)]
    whole = api.ollama().chat(model="edge-vlm", messages=question).message.content
    assert whole == "A man in a red jacket holds a parcel."
    assert "".join(pieces) == whole and len([p for p in pieces if p]) >= 5  # a piece per token, then the end
    assert api.ollama().chat(model="edge-vlm", messages=question, options={
        "num_predict": 3, "temperature": 0.3, "top_k": 5, "top_p": 0.5, "seed": 7, "num_ctx": 8192}).done
    runs = [c for c in runtime_calls(tmp_path) if c["event"] == "rkllm_run"]
    assert [(r["max_new_tokens"], r["sampling_params"]) for r in runs] == [(0, None), (0, None), (3, {
        "top_k": 5, "top_p": 0.5, "temperature": pytest.approx(0.3), "repeat_penalty": pytest.approx(1.1)})]
    assert [d["generated_tokens"] for d in runtime_calls(tmp_path) if d["event"] == "rkllm_run_done"][-1] == 3

    openai_question: Any = [{"role": "user", "content": "Hi"}]
    assert api.openai().chat.completions.create(model="edge-vlm", messages=openai_question, temperature=0,
                                                max_completion_tokens=2).choices[0].message.content
    last = [c for c in runtime_calls(tmp_path) if c["event"] == "rkllm_run"][-1]
    assert (last["max_new_tokens"], last["sampling_params"]["top_k"]) == (2, 1)  # temperature 0: greedy
    with pytest.raises(openai.BadRequestError, match="temperature = 3 is out of range"):
        api.openai().chat.completions.create(model="edge-vlm", messages=openai_question, temperature=3)

    assert [m.model_extra for m in api.openai().models.list()] == [{"max_model_len": 1024}]  # Frigate 0.17 asks
    # a question longer than the model's context takes (1024 tokens, less 16 of the image and 64 of
    # the answer: about 2736 characters) is refused; a chat's oldest turns are left out to fit
    with pytest.raises(ollama.ResponseError) as long:
        api.ollama().chat(model="edge-vlm", messages=[{"role": "user", "content": "Who? " * 600}])
    assert long.value.status_code == 400 and "backend.llm.max_context_len = 1024" in long.value.error
    history = [{"role": "user", "content": f"turn {n} " + "x" * 900} for n in range(5)]
    assert api.ollama().chat(model="edge-vlm", messages=[*history, {"role": "user", "content": "Now?"}]).done
    kept = [c for c in runtime_calls(tmp_path) if c["event"] == "rkllm_run"][-1]["prompt"]
    assert kept.startswith("user: turn 3 ") and kept.endswith("\nNow?") and len(kept) <= 2736

    # the first piece of a slow answer (200 ms a token) comes, the client leaves: the run is aborted
    slow = api.openai().chat.completions.create(model="edge-vlm", stream=True, messages=[
        {"role": "user", "content": "[[slow]] Describe it."}])
    first = next(iter(slow))
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content
    slow.close()
    wait_until(lambda: any(c["event"] == "rkllm_abort" for c in runtime_calls(tmp_path)), "the run aborted")
    assert (api.ollama().generate(model="edge-vlm", prompt="Next?").response or "").endswith("Next? Café … ok")
    assert [d["finished"] for d in runtime_calls(tmp_path) if d["event"] == "rkllm_run_done"][-2:] == [False, True]
    for client in api.clients:
        client.close()


def test_a_request_waiting_for_a_restarting_worker_is_dropped_when_its_client_goes(
        npu_api: Api, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A job taken from the queue just as the worker crashed waits for the restart; its client
    leaving fails it at once (it never runs on the worker that comes back)."""
    caplog.set_level(logging.INFO)
    api = npu_api
    def crash() -> None:  # its first token after 200 ms, then SIGSEGV: the next request is queued by then
        api.openai().chat.completions.create(model="edge-vlm", messages=[{"role": "user",
                                                                          "content": "[[slow]] [[segfault]]"}])

    with ThreadPoolExecutor(1) as pool:
        crashed = pool.submit(crash)
        wait_until(lambda: any("[[segfault]]" in c.get("prompt", "") for c in runtime_calls(tmp_path)), "the run")
        with raw_request(api, "/api/chat", {"model": "edge-vlm", "stream": False,
                                            "messages": [{"role": "user", "content": "After the crash?"}]}):
            with pytest.raises(openai.InternalServerError):
                crashed.result(GATE_TIMEOUT_S)
            wait_until(lambda: api.service.scheduler.depth == 0, "the waiting request taken, for the worker")
        wait_until(lambda: "aborted: the HTTP client went away" in caplog.text, "the request failed at once")
    assert (asked_again_while_503(api, "Back?").choices[0].message.content or "").endswith("Back? Café … ok")
    assert not any("After the crash?" in c.get("prompt", "") for c in runtime_calls(tmp_path))
    for client in api.clients:
        client.close()
