"""Home Assistant's own Ollama integration (homeassistant/components/ollama) against the daemon's HTTP
API, in each release the harness runs: added through the config flow as a user adds it (the URL with
the key in its path, docs/http-api.md; on releases whose flow has an API key field, the key there
too), then asked through Home Assistant's conversation API, with and without Home Assistant's
control (the Assist API's tools), and on releases whose integration has an AI Task, a task with an
image attachment and a structure.

The daemon runs the vlm backend on the runtime's stand-in (tests/native), which answers what a
``[[reply:...]]`` directive says and logs each call: the test sees what reached the model. A
pass-through proxy between Home Assistant and the daemon keeps every request Home Assistant sent and
the status it got, so the test says what the integration sends (the run's summary lists it) and
fails when the daemon refuses any of it.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from edge_vlm.service import Service
from tests.conftest import app_config
from tests.support import ha, images
from tests.support.ha import HomeAssistant
from tests.support.http_api import KEY, KEY_ENV, Api, runtime_calls
from tests.support.native import LOG_ENV
from tests.support.npu import vlm_backend

pytestmark = [
    pytest.mark.ha,
    # a start that installs takes minutes, a cached one 10-20 s; the first flow pip-installs the
    # integration's requirement (ollama) into the release's venv
    pytest.mark.timeout(int((ha.START_TIMEOUT_S if all(r.installed for r in ha.releases()) else ha.INSTALL_TIMEOUT_S)
                            + 300)),
]

MODEL = "edge-vlm"
ANSWER = "The porch is empty."
QUESTION = f"[[reply:{ANSWER}]] Is anyone at the door?"
REQUIREMENTS_TIMEOUT_S = 300.0  # the first flow of a release waits for Home Assistant's pip install of ollama
PROXY_TIMEOUT_S = 60.0
TEXT, MULTIMODAL = 0, 3  # the runtime's RKLLMInputType of a run, as its stand-in logs it
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                        "proxy-connection", "host", "content-length"})


# --- what Home Assistant sends: a pass-through proxy in front of the daemon's API -------------------


@dataclass
class Exchange:
    """One request Home Assistant sent, and what the daemon answered."""

    method: str
    path: str  # as sent, the key's /k/<key> prefix included
    headers: dict[str, str]  # by their names in lower case
    body: Any  # the request's JSON; None without a body
    status: int = 0
    answer: bytes = b""

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.path.removeprefix(f'/k/{KEY}')}"


class _TapServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: int) -> None:
        super().__init__(("127.0.0.1", 0), _TapHandler)
        self.upstream = upstream
        self.exchanges: list[Exchange] = []
        self.lock = threading.Lock()


class _TapHandler(BaseHTTPRequestHandler):
    """Forwards each request to the daemon as it came (its path, headers, body) and its answer back
    as it went (a chunked answer, an Ollama stream, chunked again)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the daemon's server does
    server: _TapServer

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def do_DELETE(self) -> None:
        self._forward()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = b""
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return body
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self) -> None:
        body = self._read_body()
        headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
        exchange = Exchange(self.command, self.path, {name.lower(): value for name, value in headers.items()},
                            json.loads(body) if body else None)
        with self.server.lock:
            self.server.exchanges.append(exchange)
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=PROXY_TIMEOUT_S)
        try:
            upstream.request(self.command, self.path, body=body or None,
                             headers=headers)
            response = upstream.getresponse()
            exchange.status = response.status
            self.send_response_only(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            if response.chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                while piece := response.read1(65536):
                    exchange.answer += piece
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            else:
                exchange.answer = response.read()
                self.send_header("Content-Length", str(len(exchange.answer)))
                self.end_headers()
                self.wfile.write(exchange.answer)
            self.wfile.flush()
        finally:
            upstream.close()


class Wiretap:
    """The daemon's API as Home Assistant reaches it: ``url`` forwards to ``upstream_port``."""

    def __init__(self, upstream_port: int) -> None:
        self._server = _TapServer(upstream_port)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="ollama-wiretap", daemon=True)
        self._thread.start()

    @property
    def exchanges(self) -> list[Exchange]:
        with self._server.lock:
            return list(self._server.exchanges)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


# --- the daemon, and Home Assistant's Ollama entry ----------------------------------------------------


@dataclass
class EdgeApi:
    service: Service
    tap: Wiretap
    calls: Callable[[], list[dict[str, Any]]]  # the runtime stand-in's call log

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.tap.port}"

    @property
    def url(self) -> str:
        """What the user types into the integration's URL field: the key in the path."""
        return f"{self.address}/k/{KEY}"

    def runs(self) -> list[dict[str, Any]]:
        return [c for c in self.calls() if c["event"] == "rkllm_run"]


@pytest.fixture
def edge_api(home_assistant: HomeAssistant, make_daemon: Callable[..., Service], fake_rkllmrt: dict[str, Path],
             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EdgeApi]:
    """The daemon with its HTTP API on (the vlm backend on the runtime's stand-in), on Home
    Assistant's broker (its discovery under a prefix of its own: Home Assistant shows none of it)."""
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv(LOG_ENV, str(tmp_path / "rkllm-calls.jsonl"))  # the worker, spawned, inherits it
    config = app_config(home_assistant.mqtt_port, cameras=[{"id": "porch"}], backend=vlm_backend(
        tmp_path, fake_rkllmrt["1.3"], abi="1.3", encoder="onnx"),
        http={"enabled": True, "port": 0, "api_key_env": KEY_ENV, "model": MODEL})
    service = make_daemon(config)
    api = Api(service)
    ha.wait_until(lambda: api.get("/readyz")[0] == 200, what="the daemon ready (model loaded, broker connected)")
    assert service.api is not None
    tap = Wiretap(service.api.port)
    yield EdgeApi(service, tap, lambda: runtime_calls(tmp_path))
    tap.close()


@dataclass
class OllamaEntry:
    hass: HomeAssistant
    entry_id: str
    log_start: int  # where Home Assistant's log was when the flow began
    flows: list[dict[str, Any]] = field(default_factory=list)  # every step Home Assistant showed

    def problems(self) -> list[str]:
        """Home Assistant's warnings and errors about the integration and its agents since the flow began."""
        lines = self.hass.log_text()[self.log_start:].splitlines()
        return [line for line in lines if re.search(r"^\S+ \S+ (WARNING|ERROR) ", line)
                and re.search(r"\[homeassistant\.(components\.(ollama|conversation|ai_task)|helpers\.llm)", line)]

    def entities(self) -> dict[str, str]:
        """domain -> entity_id of this entry's entities (conversation, ai_task)."""
        with self.hass.websocket() as ws:
            entries: list[dict[str, Any]] = ws.command("config/entity_registry/list")
        return {e["entity_id"].split(".")[0]: e["entity_id"] for e in entries
                if e["platform"] == "ollama" and e["config_entry_id"] == self.entry_id}

    def entity(self, domain: str) -> str:
        """The entity of ``domain``, once Home Assistant has registered it and given it a state."""
        entity_id: str = ha.wait_until(lambda: self.entities().get(domain), what=f"the Ollama entry's {domain} entity")
        ha.wait_until(lambda: self.hass.state(entity_id) is not None, what=f"{entity_id}'s state")
        return entity_id

    def config_entry(self) -> dict[str, Any]:
        entries: list[dict[str, Any]] = self.hass.api("GET", "config/config_entries/entry")
        return next(e for e in entries if e["entry_id"] == self.entry_id)


def _fields(step: dict[str, Any]) -> list[str]:
    return [f["name"] for f in step.get("data_schema") or []]


def _as_the_ui_fills(step: dict[str, Any], **given: Any) -> dict[str, Any]:
    """The form of ``step`` as the frontend submits it: what the user gave, else each field's
    suggested value, else its default (a field with neither is left out)."""
    data: dict[str, Any] = {}
    for spec in step["data_schema"]:
        name = spec["name"]
        if name in given:
            data[name] = given[name]
        elif "suggested_value" in (spec.get("description") or {}):
            data[name] = spec["description"]["suggested_value"]
        elif "default" in spec:
            data[name] = spec["default"]
    return data


def _offered(step: dict[str, Any]) -> list[Any]:
    """The model field's options, as the form lists them."""
    spec = next(f for f in step["data_schema"] if f["name"] == "model")
    return list(spec["selector"]["select"]["options"])


@pytest.fixture
def key_in() -> str:
    """Where the integration is given the key: in the URL's path ("path": every release), or in its
    API key field ("header", sent as ``Authorization: Bearer``: the releases that have one)."""
    return "path"


@pytest.fixture
def ollama_entry(home_assistant: HomeAssistant, edge_api: EdgeApi, key_in: str) -> Iterator[OllamaEntry]:
    """Home Assistant's Ollama integration added as a user adds it, with the daemon's URL and key
    (and on releases without subentries, the model); removed when the test ends."""
    hass = home_assistant
    log_start = len(hass.log_text())
    flows: list[dict[str, Any]] = []
    step = hass.api("POST", "config/config_entries/flow", {"handler": "ollama", "show_advanced_options": False},
                    timeout=REQUIREMENTS_TIMEOUT_S)
    flows.append(step)
    assert (step["type"], step["step_id"]) == ("form", "user"), step
    assert _fields(step)[0] == "url"  # 2026.x: then an optional API key
    if key_in == "header" and "api_key" not in _fields(step):
        hass.api("DELETE", f"config/config_entries/flow/{step['flow_id']}")
        pytest.skip(f"Home Assistant {hass.release.version}'s Ollama integration takes a URL only, no API key")
    given = {"url": edge_api.url} if key_in == "path" else {"url": edge_api.address, "api_key": KEY}
    step = hass.api("POST", f"config/config_entries/flow/{step['flow_id']}", given)
    flows.append(step)
    if step["type"] == "form":  # releases before subentries: the model, on the same step
        assert (step["step_id"], _fields(step), step.get("errors")) == ("user", ["model"], None), step
        assert {"label": f"{MODEL} (downloaded)", "value": MODEL} in _offered(step)
        step = hass.api("POST", f"config/config_entries/flow/{step['flow_id']}", _as_the_ui_fills(step, model=MODEL))
        flows.append(step)
    assert step["type"] == "create_entry", step
    entry = OllamaEntry(hass, step["result"]["entry_id"], log_start, flows)
    try:
        ha.wait_until(lambda: entry.config_entry()["state"] == "loaded", what="the Ollama entry loaded")
        yield entry
    finally:
        hass.api("DELETE", f"config/config_entries/entry/{entry.entry_id}")
        ha.wait_until(lambda: not entry.entities(), what="Home Assistant removing the Ollama entry's entities")


def _add_subentry(entry: OllamaEntry, kind: str, title: str, **options: Any) -> str:
    """A subentry (``conversation``, ``ai_task_data``) with the daemon's model and ``options``, as the
    UI adds it; its entity."""
    hass = entry.hass
    step = hass.api("POST", "config/config_entries/subentries/flow", {"handler": [entry.entry_id, kind],
                                                                       "show_advanced_options": False})
    entry.flows.append(step)
    assert (step["type"], step["step_id"]) == ("form", "set_options"), step
    assert {"label": f"{MODEL} (downloaded)", "value": MODEL} in _offered(step)
    step = hass.api("POST", f"config/config_entries/subentries/flow/{step['flow_id']}",
                    _as_the_ui_fills(step, name=title, model=MODEL, **options))
    entry.flows.append(step)
    assert step["type"] == "create_entry", step
    return entry.entity({"conversation": "conversation", "ai_task_data": "ai_task"}[kind])


def _conversation_agent(entry: OllamaEntry, edge: EdgeApi, control: str | None) -> str:
    """The entry's conversation agent, with Home Assistant's control (an LLM API: "assist") or
    without, set as the UI sets it: in a conversation subentry's form (releases with subentries),
    else in the entry's options."""
    hass = entry.hass
    if "conversation" in (entry.config_entry().get("supported_subentry_types") or {}):
        return _add_subentry(entry, "conversation", "edge_vlm", llm_hass_api=[control] if control else [])
    agent = entry.entity("conversation")  # before subentries: the entry is the agent
    if control is None:
        return agent
    step = hass.api("POST", "config/config_entries/options/flow", {"handler": entry.entry_id})
    entry.flows.append(step)
    assert (step["type"], step["step_id"]) == ("form", "init"), step
    listed = [o["value"] for o in next(f for f in step["data_schema"] if f["name"] == "llm_hass_api")
              ["selector"]["select"]["options"]]
    assert control in listed, listed
    setups = _setups(edge)
    step = hass.api("POST", f"config/config_entries/options/flow/{step['flow_id']}",
                    _as_the_ui_fills(step, llm_hass_api=control))
    entry.flows.append(step)
    assert step["type"] == "create_entry", step
    # the options reload the entry: set up again (its list of models asked for), then loaded
    ha.wait_until(lambda: _setups(edge) > setups, what="the Ollama entry set up again with its options")
    ha.wait_until(lambda: entry.config_entry()["state"] == "loaded", what="the Ollama entry loaded again")
    ha.wait_until(lambda: (hass.state(agent) or {}).get("state") not in (None, "unavailable"), what=f"{agent} back")
    return agent


def _setups(edge: EdgeApi) -> int:
    """How often Home Assistant asked for the list of models (each flow step and each setup does)."""
    return sum(e.endpoint == "GET /api/tags" for e in edge.tap.exchanges)


def _sent(edge: EdgeApi, what: str) -> str:
    """What Home Assistant sent and got, for a failure's message."""
    lines = [f"{e.endpoint} -> {e.status}: {json.dumps(e.body)[:600]} => {e.answer[:300]!r}"
             for e in edge.tap.exchanges]
    return f"{what}; Home Assistant sent:\n" + "\n".join(lines)


def _report(hass: HomeAssistant, what: str, exchanges: list[Exchange]) -> None:
    """The run's summary: each request the integration sent (endpoint and fields; a message's text
    cut short with its length, images and tools by their size and names)."""
    ha.REPORT.append(f"{hass.release.version}: Home Assistant's Ollama integration, {what}:")
    for e in exchanges:
        body = e.body
        if isinstance(body, dict) and "messages" in body:
            body = {**body, "messages": [
                {**m, "content": f"{(m.get('content') or '')[:60]}... ({len(m.get('content') or '')} chars)",
                 **({"images": [f"<{len(i)} base64 chars>" for i in m["images"]]} if m.get("images") else {})}
                for m in body["messages"]]}
            if body.get("tools"):
                body["tools"] = [f"{t['type']} {t['function']['name']}" for t in body["tools"]]
        ha.REPORT.append(f"  {hass.release.version}  {e.endpoint} -> {e.status}  {json.dumps(body)}")


# --- the tests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("control", "key_in"), [(None, "path"), ("assist", "path"), (None, "header")],
                         ids=["no_control", "assist", "key_in_header"])
def test_the_ollama_conversation_agent_asks_the_daemon_and_says_its_answer(
        home_assistant: HomeAssistant, edge_api: EdgeApi, ollama_entry: OllamaEntry, control: str | None,
        key_in: str) -> None:
    """With Home Assistant's control ("assist") the integration sends its tools and a system prompt
    with the home's exposed entities; the daemon answers in words, the tools ignored. The key goes
    in the URL's path, or (releases with an API key field) in the header."""
    hass, edge = home_assistant, edge_api
    agent = _conversation_agent(ollama_entry, edge, control)
    asked_from = len(edge.tap.exchanges)

    result = hass.api("POST", "conversation/process", {"text": QUESTION, "language": "en", "agent_id": agent})

    response = result["response"]
    assert (response["response_type"], response["speech"]["plain"]["speech"]) == ("action_done", ANSWER), \
        _sent(edge, f"Home Assistant answered {result}")
    # every request the integration sent was answered (the flow's, the setup's, the question's)
    assert [(e.endpoint, e.status) for e in edge.tap.exchanges if e.status != 200] == [], _sent(edge, "refused")
    if key_in == "path":
        assert all(e.path.startswith(f"/k/{KEY}/") and "authorization" not in e.headers for e in edge.tap.exchanges)
    else:
        assert all(e.path.startswith("/api/") and e.headers.get("authorization") == f"Bearer {KEY}"
                   for e in edge.tap.exchanges)
    assert {e.endpoint for e in edge.tap.exchanges[:asked_from]} == {"GET /api/tags"}
    chats = edge.tap.exchanges[asked_from:]
    assert [e.endpoint for e in chats] == ["POST /api/chat"], _sent(edge, "one chat for the question")
    sent = chats[0].body
    _report(hass, f"a conversation agent ({control or 'no control'}; the key in the {key_in})", edge.tap.exchanges)

    # what the integration asks for: its stream, its options (ignored), tools only with an LLM API
    assert (sent["model"], sent["stream"], sent["options"]) == (MODEL, True, {"num_ctx": 8192})
    # forever: "-1s" up to 2025.x ("-1.0s" once the options form is saved: a number field's value
    # is a float), the number -1 later
    assert sent["keep_alive"] in ("-1s", "-1.0s", -1)
    assert "format" not in sent
    if control is None:
        assert sent.get("tools") in (None, [])  # the ollama library sends an empty list
    else:
        assert sent["tools"] and all(t["type"] == "function" and t["function"]["name"] for t in sent["tools"])
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["system", "user"] and sent["messages"][1]["content"] == QUESTION
    assert "images" not in sent["messages"][1]
    # the stream came back as Ollama streams: NDJSON chunks, the answer, then done
    chunks = [json.loads(line) for line in chats[0].answer.splitlines()]
    assert "".join(c["message"]["content"] for c in chunks) == ANSWER and chunks[-1]["done"] is True

    # what reached the model: the conversation made one question (the system prompt, then the
    # user's), the language model alone (no image), and its answer was the stand-in's reply
    run = edge.runs()[-1]
    assert (run["input_type"], run["prompt"]) == (TEXT, f"system: {sent['messages'][0]['content']}\n{QUESTION}")
    done = [c for c in edge.calls() if c["event"] == "rkllm_run_done"][-1]
    assert (done["image_tokens"], done["finished"]) == (0, True)
    assert len(edge.runs()) == 1
    assert ollama_entry.problems() == []


def test_an_ai_task_with_an_image_and_a_structure_gets_the_daemons_fields(
        home_assistant: HomeAssistant, edge_api: EdgeApi, ollama_entry: OllamaEntry) -> None:
    hass, edge = home_assistant, edge_api
    if "ai_task_data" not in (ollama_entry.config_entry().get("supported_subentry_types") or {}):
        pytest.skip(f"Home Assistant {hass.release.version}'s Ollama integration has no AI Task")
    task = _add_subentry(ollama_entry, "ai_task_data", "edge_vlm task")
    # the attachment: a JPEG in the config directory's media folder (media_source's "local")
    media = hass.config_dir / "media"
    media.mkdir(exist_ok=True)
    porch = images.sample("front_door")
    (media / "edge_vlm_porch.jpg").write_bytes(porch)
    asked_from = len(edge.tap.exchanges)
    try:
        result = hass.api("POST", "services/ai_task/generate_data?return_response", {
            "task_name": "door check", "entity_id": task,
            "instructions": 'Who is at the door? [[reply:Sure: {"people": "2", "parcel": "yes"}]]',
            "structure": {"people": {"description": "how many people", "required": True,
                                     "selector": {"number": {"min": 0, "max": 10}}},
                          "parcel": {"description": "a parcel is there", "required": True,
                                     "selector": {"boolean": {}}}},
            "attachments": [{"media_content_id": "media-source://media_source/local/edge_vlm_porch.jpg",
                             "media_content_type": "image/jpeg"}],
        })
    finally:
        shutil.rmtree(media, ignore_errors=True)

    assert result["service_response"]["data"] == {"people": 2, "parcel": True}, _sent(edge, f"got {result}")
    chats = edge.tap.exchanges[asked_from:]
    assert [(e.endpoint, e.status) for e in chats] == [("POST /api/chat", 200)], _sent(edge, "one chat")
    sent = chats[0].body
    _report(hass, "an AI Task with an image and a structure", chats)
    assert sent["format"]["type"] == "object" and set(sent["format"]["properties"]) == {"people", "parcel"}
    user = sent["messages"][-1]
    assert base64.b64decode(user["images"][-1]) == porch  # the attachment's bytes, as base64
    # what reached the model: the image (its tokens) and the question asking for the structure's fields
    run = edge.runs()[-1]
    assert (run["input_type"], run["n_image"]) == (MULTIMODAL, 1) and run["n_image_tokens"] > 0
    assert "Who is at the door?" in run["prompt"] and '"parcel" (boolean): a parcel is there' in run["prompt"]
    assert ollama_entry.problems() == []
