"""Prompt profiles, structured answers, alert rules, a job's life on MQTT and the per-camera controls,
end to end: the real daemon against a real mosquitto.

What the "model" says is scripted where it matters: with the NPU backend, the fake librkllmrt
(tests/native) answers exactly TEXT for ``[[reply:TEXT]]`` in the prompt, and logs every prompt it
was given; the built-in opencv backend's sentence is deterministic for the sample images.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_vlm.config.automation import DEFAULT_RETRY_PROMPT
from edge_vlm.config.models import AppConfig
from edge_vlm.inference.answers import YES_NO_TOKENS
from edge_vlm.inference.backends import Backend
from edge_vlm.service import Service
from tests.conftest import app_config
from tests.support import images
from tests.support.backends import FailingBackend, GatedBackend
from tests.support.broker import Mosquitto
from tests.support.mqtt import Message, Recorder
from tests.support.native import LOG_ENV
from tests.support.npu import vlm_backend

pytestmark = pytest.mark.mqtt

Daemons = Callable[..., Service]
Recorders = Callable[..., Recorder]

FRONT_DOOR_TEXT = "1 person; 1 face visible; daylight"  # the opencv backend on the front_door sample


class Daemon:
    """A running daemon and a recorder of everything under its base topic."""

    def __init__(self, broker: Mosquitto, make_daemon: Daemons, make_recorder: Recorders, config: AppConfig,
                 backend: Backend | None = None, recorder: Recorder | None = None) -> None:
        self.config = config
        self.recorder = recorder or make_recorder(broker.port, [f"{config.base_topic}/#"])
        since = len(self.recorder.messages)
        self.service = make_daemon(config, backend)
        self.ready(since)

    def ready(self, since: int) -> None:
        """Wait until the daemon is online and has read its controls back: its sync message came
        back (what we publish now, it handles after that) and it announced every control."""
        after = self.recorder.since(since)
        node = f"{self.config.base_topic}/{self.config.node_id}"
        self.recorder.wait_for(f"{node}/status", lambda m: after(m) and m.payload == b"online")
        self.recorder.wait_for(f"{node}/sync", after)
        for camera in self.config.cameras:
            for name in ("enabled", "cooldown", "profile", "prompt"):
                self.recorder.wait_for(self.topic(camera.id, name), after)

    def topic(self, camera: str, leaf: str) -> str:
        return f"{self.config.base_topic}/{camera}/{leaf}"

    def publish(self, camera: str, leaf: str, payload: bytes | str) -> None:
        self.recorder.publish(self.topic(camera, leaf), payload)

    def trigger(self, camera: str, request_id: str, **fields: Any) -> dict[str, Any]:
        """Trigger a description; its result, or its error."""
        self.publish(camera, "trigger", json.dumps({"id": request_id, **fields}))
        return self.outcome(camera, request_id)

    def outcome(self, camera: str, request_id: str) -> dict[str, Any]:
        answers = (self.topic(camera, "result"), self.topic(camera, "error"))
        found = self.recorder.wait_where(lambda m: m.topic in answers and m.json().get("id") == request_id)
        outcome: dict[str, Any] = found.json()
        return outcome

    def snapshot(self, camera: str, jpeg: bytes) -> dict[str, Any]:
        """Publish a snapshot; its result (or error)."""
        answers = (self.topic(camera, "result"), self.topic(camera, "error"))
        since = len(self.recorder.messages)
        self.publish(camera, "snapshot", jpeg)
        found = self.recorder.wait_where(lambda m: m.index >= since and m.topic in answers)
        outcome: dict[str, Any] = found.json()
        return outcome

    def set(self, camera: str, name: str, value: str) -> None:
        """Change a control as Home Assistant does, and wait until the daemon says it took it."""
        since = len(self.recorder.messages)
        self.publish(camera, f"{name}/set", value)
        self.recorder.wait_for(self.topic(camera, name), lambda m: m.index >= since and m.payload == value.encode())

    def events(self, camera: str, request_id: str) -> list[dict[str, Any]]:
        """The life of one job on the camera's event topic, in order."""
        events = [m.json() for m in self.recorder.on(self.topic(camera, "event"))]
        return [e for e in events if e["id"] == request_id]

    def event(self, camera: str, request_id: str, event_type: str) -> Message:
        return self.recorder.wait_for(self.topic(camera, "event"),
                                      lambda m: m.json()["id"] == request_id and m.json()["event_type"] == event_type)


def own_prefix() -> str:
    """A topic prefix of this test's own, outside the daemon's base topic (Frigate's, say)."""
    return f"frigate{time.monotonic_ns()}"


def retained(broker: Mosquitto, make_recorder: Recorders, base: str) -> dict[str, Message]:
    """What the broker keeps under ``base``: a new subscriber's replay, complete once a marker
    published after subscribing comes back (the broker sends the replay while subscribing)."""
    recorder = make_recorder(broker.port, [f"{base}/#"])
    marker = f"{base}/test-marker/{time.monotonic_ns()}"
    recorder.publish(marker, b"")
    recorder.wait_for(marker)
    return {m.topic: m for m in recorder.messages if m.retain}


@pytest.fixture
def npu_backend(fake_rkllmrt: dict[str, Path], tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Callable[[], dict[str, Any]]:
    """A `backend:` mapping for the NPU path (a small ONNX encoder, the fake runtime), whose
    runtime logs each prompt to ``tmp_path/rkllm-calls.jsonl`` (read by ``model_prompts``)."""
    def make() -> dict[str, Any]:
        monkeypatch.setenv(LOG_ENV, str(tmp_path / "rkllm-calls.jsonl"))  # the worker, spawned, inherits it
        backend = vlm_backend(tmp_path, fake_rkllmrt["1.3"], abi="1.3", encoder="onnx")
        backend["llm"]["max_new_tokens"] = 256
        return backend

    return make


def model_calls(tmp_path: Path) -> list[dict[str, Any]]:
    """Every call the runtime logged, in order (a line still being written is not one yet)."""
    text = (tmp_path / "rkllm-calls.jsonl").read_text()
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()]


def last_call(tmp_path: Path, event: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every call logged once the last is ``event``: the worker ends a conversation after the job's
    result is out (the daemon does not wait for it), so its call comes a moment later."""
    deadline = time.monotonic() + timeout
    while (calls := model_calls(tmp_path))[-1]["event"] != event and time.monotonic() < deadline:
        time.sleep(0.02)
    return calls


def model_prompts(tmp_path: Path) -> list[str]:
    """Every prompt the runtime was given, in order (as the binding passed it: the first about a
    frame with ``<image>``, its follow-ups without)."""
    return [call["prompt"] for call in model_calls(tmp_path) if call["event"] == "rkllm_run"]


# 1. Profiles and placeholders


def frigate_event(event_id: str, camera: str, label: str, zones: list[str]) -> str:
    after = {"id": event_id, "camera": camera, "label": label, "sub_label": None, "top_score": 0.9,
             "current_zones": zones, "entered_zones": [], "start_time": time.time()}
    return json.dumps({"type": "new", "before": after, "after": after})


def test_profiles_and_placeholders_decide_the_prompt_the_backend_gets(
        broker: Mosquitto, make_daemon: Daemons, make_recorder: Recorders) -> None:
    prefix = own_prefix()
    config = app_config(
        broker.port, language="German",
        profiles={
            "brief": {"prompt": "Brief look at the {camera}; before: {previous}."},
            "night": {"prompt": "Night check of the {camera}, in {language}."},
            "event": {"prompt": "What is the {label} in {zones} doing?"},
        },
        frigate={"enabled": True, "topic_prefix": prefix},
        cameras=[{"id": "front_door", "profile": "brief"}, {"id": "driveway"},
                 {"id": "porch", "profile": "event", "frigate": {}}],
    )
    backend = GatedBackend()
    backend.gate.set()
    daemon = Daemon(broker, make_daemon, make_recorder, config, backend)
    german = " Answer in German."

    # The camera's own profile; nothing was described before.
    first = daemon.snapshot("front_door", images.sample("front_door"))
    assert first["prompt"] == "Brief look at the Front door; before: nothing described yet." + german
    # {previous} is what the camera's last description said.
    assert daemon.trigger("front_door", "p1")["prompt"] == f"Brief look at the Front door; before: {FRONT_DOOR_TEXT}." \
        + german
    # A trigger picks another profile, this once; {language} in a prompt replaces the appended request.
    assert daemon.trigger("front_door", "p2", profile="night")["prompt"] == "Night check of the Front door, in German."
    assert daemon.trigger("front_door", "p3")["prompt"].startswith("Brief look")
    # Home Assistant's select changes the camera's profile until changed again...
    daemon.set("front_door", "profile", "night")
    assert daemon.trigger("front_door", "p4")["prompt"] == "Night check of the Front door, in German."
    # ...and its text entity sets a prompt of its own (placeholders filled), which a trigger's profile overrides.
    daemon.set("front_door", "prompt", "Who is at the {camera}?")
    assert daemon.trigger("front_door", "p5")["prompt"] == "Who is at the Front door?" + german
    assert daemon.trigger("front_door", "p6", profile="brief")["prompt"].startswith("Brief look")
    # An empty text goes back to the selected profile.
    daemon.set("front_door", "prompt", "")
    assert daemon.trigger("front_door", "p7")["prompt"] == "Night check of the Front door, in German."
    # A trigger's own prompt is asked as it is, in the configured language.
    assert daemon.trigger("front_door", "p8", prompt="Is the {camera} door open?")["prompt"] == \
        "Is the Front door door open?" + german
    # A profile nobody configured is refused, and nothing is asked.
    refused = daemon.trigger("front_door", "p9", profile="nonsense")
    assert (refused["error"], refused["id"]) == ("bad_trigger", "p9")
    assert "no profile 'nonsense'" in refused["message"]
    # A camera with no profile and no prompt of its own: the top-level prompt.
    assert daemon.snapshot("driveway", images.sample("driveway"))["prompt"] == config.prompt + german
    # A Frigate event fills {label} and {zones}.
    daemon.recorder.publish(f"{prefix}/porch/dog/snapshot", images.sample("driveway"))
    daemon.recorder.publish(f"{prefix}/events", frigate_event("ev1", "porch", "dog", ["lawn", "path"]))
    assert daemon.outcome("porch", "ev1")["prompt"] == "What is the dog in lawn, path doing?" + german

    # Each of those prompts is what the backend was given, in order (the refused trigger asked nothing).
    results = [m.json() for m in daemon.recorder.messages if m.topic.endswith("/result")]
    assert backend.prompts == [r["prompt"] for r in results]
    assert len(backend.prompts) == 11


# 2. and 3. Structured answers

REPORT = {
    "title": {"type": "string", "description": "A title for a notification."},
    "summary": {"type": "string", "description": "One sentence on what happens."},
    "people": {"type": "integer", "description": "How many people.", "minimum": 0, "maximum": 20},
    "vehicle": {"type": "boolean", "description": "Is there a vehicle?"},
}


def test_a_structured_answer_becomes_entity_states(
        broker: Mosquitto, make_daemon: Daemons, make_recorder: Recorders,
        npu_backend: Callable[[], dict[str, Any]], tmp_path: Path) -> None:
    answer = {"title": "Parcel delivered", "summary": "A courier leaves a parcel at the door", "people": 1,
              "vehicle": False}
    config = app_config(broker.port, backend=npu_backend(), profiles={
        "report": {"prompt": f"Report on the {{camera}}. [[reply:{json.dumps(answer)}]]", "fields": REPORT},
        # Small models wrap JSON in prose and write numbers as text and booleans as words.
        "chatty": {"prompt": 'Report. [[reply:Sure! ```json\n{"title": "Car", "summary": "A car waits", '
                             '"people": "2", "vehicle": "yes", "extra": 1}\n``` Anything else?]]',
                   "fields": REPORT},
    }, cameras=[{"id": "front_door", "profile": "report"}])
    daemon = Daemon(broker, make_daemon, make_recorder, config)

    result = daemon.snapshot("front_door", images.sample("front_door"))

    assert result["fields"] == answer
    assert (result["text"], result["description"], result["title"]) == (answer["summary"], answer["summary"],
                                                                         answer["title"])
    assert result["prompt"].startswith("Report on the Front door. [[reply:")
    assert 'Answer with only a JSON object like {"title": "...", "summary": "...", "people": 0, "vehicle": false}' \
        in result["prompt"]
    assert '- "people" (integer >= 0 and <= 20): How many people.' in result["prompt"]
    assert model_prompts(tmp_path)[-1] == "<image>" + result["prompt"]
    states = retained(broker, make_recorder, f"{config.base_topic}/front_door")
    assert states[daemon.topic("front_door", "fields")].json() == answer
    assert states[daemon.topic("front_door", "description")].payload.decode() == answer["summary"]
    attributes = states[daemon.topic("front_door", "attributes")].json()
    assert (attributes["title"], attributes["fields"], attributes["id"]) == (answer["title"], answer, result["id"])
    described = daemon.event("front_door", result["id"], "described").json()
    assert (described["title"], described["fields"], described["description"]) == (
        answer["title"], answer, answer["summary"])

    chatty = daemon.trigger("front_door", "c1", profile="chatty")
    assert chatty["fields"] == {"title": "Car", "summary": "A car waits", "people": 2, "vehicle": True}
    assert "retry" not in chatty["timings_ms"]  # accepted at once
    assert daemon.recorder.wait_for(daemon.topic("front_door", "fields"),
                                    lambda m: m.json()["title"] == "Car").json() == chatty["fields"]


def test_a_malformed_answer_is_asked_again_once_then_reported(
        broker: Mosquitto, make_daemon: Daemons, make_recorder: Recorders,
        npu_backend: Callable[[], dict[str, Any]], tmp_path: Path) -> None:
    count = {"people": {"type": "integer", "description": "How many people."}}
    config = app_config(broker.port, backend=npu_backend(), profiles={
        # The first answer is prose; the retry (the last [[reply:]] in its prompt wins) is valid.
        "fixable": {"prompt": "Count them. [[reply:There are two people.]]", "fields": count,
                    "retry_prompt": '{prompt}\nWrong: {error}. [[reply:{"people": 2}]]'},
        # Invalid both times (the default retry, a follow-up, gets the test runtime's echo).
        "hopeless": {"prompt": 'Count all. [[reply:{"people": "many"}]]', "fields": count},
    }, cameras=[{"id": "front_door"}])
    daemon = Daemon(broker, make_daemon, make_recorder, config)
    daemon.snapshot("front_door", images.sample("front_door"))

    fixed = daemon.trigger("front_door", "f1", profile="fixable")

    assert fixed["fields"] == {"people": 2}
    assert fixed["text"] == '{"people": 2}'
    assert "retry" in fixed["timings_ms"]
    retry = fixed["prompt"] + '\nWrong: no JSON object in the answer. [[reply:{"people": 2}]]'
    assert model_prompts(tmp_path)[-2:] == ["<image>" + fixed["prompt"], retry]  # a follow-up: no image again
    runs = [c for c in model_calls(tmp_path) if c["event"] == "rkllm_run_done"][-2:]
    assert [(r["image_tokens"], r["kv_before"] > 0) for r in runs] == [(16, False), (0, True)]
    assert daemon.recorder.wait_for(daemon.topic("front_door", "fields")).json() == {"people": 2}
    daemon.event("front_door", "f1", "described")
    assert [e["event_type"] for e in daemon.events("front_door", "f1")] == ["pending", "described"]

    before = len(model_prompts(tmp_path))
    error = daemon.trigger("front_door", "h1", profile="hopeless")

    assert (error["error"], error["id"], error["camera"]) == ("bad_answer", "h1", "front_door")
    assert "people should be a number" in error["message"]
    assert "(answer: 'Test runtime answered from the image in its cache" in error["message"]  # what it said again
    asked = model_prompts(tmp_path)[before:]
    assert len(asked) == 2  # the question and one retry, no more
    assert asked[1] == DEFAULT_RETRY_PROMPT.replace("{error}", "people should be a number")
    failed = daemon.event("front_door", "h1", "failed").json()
    assert (failed["error"], failed["message"]) == ("bad_answer", error["message"])
    assert [e["event_type"] for e in daemon.events("front_door", "h1")] == ["pending", "failed"]
    # A failed answer changes no state: the fields are still the last good ones.
    assert [m.json() for m in daemon.recorder.on(daemon.topic("front_door", "fields"))] == [{"people": 2}]


# 4. Alerts


def test_alert_rules_of_each_kind_fire_with_a_retained_state_and_an_event(
        broker: Mosquitto, make_daemon: Daemons, make_recorder: Recorders,
        npu_backend: Callable[[], dict[str, Any]], tmp_path: Path) -> None:
    answer = {"title": "Courier", "summary": "A courier leaves a parcel", "people": 3, "vehicle": True}
    alerts = [
        {"name": "parcel", "keywords": ["package", "parcel"]},
        {"name": "courier", "regex": r"cour(i|e)er\b"},
        {"name": "crowd", "field": "people", "above": 2},
        {"name": "van", "field": "vehicle", "equals": True},
        # answered "yes" only while the image is in the model's context (tests/native: [[see:]])
        {"name": "dog", "question": "Is a dog there? [[see:Yes, a small dog.]]"},
        {"name": "rain", "question": "Is it raining? [[reply:No.]]"},
        {"name": "cat", "keywords": ["cat"]},
        {"name": "empty", "field": "people", "equals": 0},
    ]
    fired = ["parcel", "courier", "crowd", "van", "dog"]
    config = app_config(broker.port, backend=npu_backend(), profiles={
        "report": {"prompt": f"Report. [[reply:{json.dumps(answer)}]]", "fields": REPORT},
    }, cameras=[{"id": "front_door", "profile": "report", "alerts": alerts}])
    daemon = Daemon(broker, make_daemon, make_recorder, config)
    alert_events = daemon.topic("front_door", "alerts")

    result = daemon.snapshot("front_door", images.sample("front_door"))

    assert result["alerts"] == fired
    assert result["answers"] == {"dog": True, "rain": False}
    asked = model_prompts(tmp_path)[-3:]  # the description, then each question, a follow-up without the image
    assert asked[1:] == ["Is a dog there? [[see:Yes, a small dog.]] Answer with yes or no only.",
                         "Is it raining? [[reply:No.]] Answer with yes or no only."]
    calls = last_call(tmp_path, "rkllm_clear_kv_cache")
    runs = [c for c in calls if c["event"] == "rkllm_run"][-3:]
    assert [(r["keep_history"], r["max_new_tokens"]) for r in runs] == [(1, 0), (1, YES_NO_TOKENS), (1, YES_NO_TOKENS)]
    assert [r["image_tokens"] for r in calls if r["event"] == "rkllm_run_done"][-3:] == [16, 0, 0]
    assert calls[-1]["event"] == "rkllm_clear_kv_cache"  # the conversation over, the frame forgotten
    # What it cost the NPU, by the runtime's figures: three turns, one encoder pass, the image prefilled once
    npu = result["npu"]
    assert (npu["turns"], npu["encoder_passes"]) == (3, 1)
    done = [c for c in calls if c["event"] == "rkllm_run_done"][-3:]
    assert npu["prefill_tokens"] == sum(d["image_tokens"] + d["prompt_tokens"] for d in done)
    assert npu["generated_tokens"] == sum(d["generated_tokens"] for d in done)
    assert result["timings_ms"]["prefill"] == npu["prefill_ms"]
    # ...and which camera used the NPU in the last hour, in the diagnostics
    diagnostics = daemon.recorder.wait_for(f"{config.base_topic}/{config.node_id}/diagnostics",
                                           lambda m: "front_door" in m.json()["npu_s_last_hour"]).json()
    assert diagnostics["npu_s_last_hour"]["front_door"] == round(npu["seconds"], 1)
    # Sent after the description they belong to (its result, its described event), in order.
    daemon.recorder.wait_for(alert_events, lambda m: m.json()["event_type"] == fired[-1])
    events = [m.json() for m in daemon.recorder.on(alert_events)]
    assert [e["event_type"] for e in events] == fired
    described = daemon.recorder.wait_for(daemon.topic("front_door", "event"),
                                         lambda m: m.json()["event_type"] == "described")
    assert all(m.index > described.index for m in daemon.recorder.on(alert_events))
    for event in events:
        assert (event["rule"], event["camera"], event["id"]) == (event["event_type"], "front_door", result["id"])
        assert (event["description"], event["title"], event["suppressed"]) == (answer["summary"], "Courier", 0)
    for rule in fired:
        state = daemon.recorder.wait_for(f"{config.base_topic}/front_door/alert/{rule}",
                                         lambda m: m.json()["state"] == "ON").json()
        assert (state["rule"], state["id"], state["description"], state["title"]) == (
            rule, result["id"], answer["summary"], "Courier")
    for rule in ("rain", "cat", "empty"):
        assert [m.json()["state"] for m in daemon.recorder.on(f"{config.base_topic}/front_door/alert/{rule}")] == [
            "OFF"]
    described = daemon.event("front_door", result["id"], "described").json()
    assert described["alerts"] == fired

    states = retained(broker, make_recorder, f"{config.base_topic}/front_door")
    for rule in fired:
        assert states[f"{config.base_topic}/front_door/alert/{rule}"].json()["state"] == "ON"
    for rule in ("rain", "cat", "empty"):
        assert states[f"{config.base_topic}/front_door/alert/{rule}"].json() == {"state": "OFF"}
    assert alert_events not in states  # an event, never retained


def test_an_alert_holds_repeats_back_in_its_cooldown_and_turns_itself_off(
        broker: Mosquitto, make_daemon: Daemons, make_recorder: Recorders) -> None:
    cooldown = 3.0
    alerts = [
        {"name": "person", "keywords": ["person"], "cooldown_s": cooldown, "off_after_s": 1},
        # The opencv backend's details (people, faces, light, ...) serve as fields.
        {"name": "faces", "field": "faces", "above": 0, "cooldown_s": 0, "off_after_s": 1},
        {"name": "day", "regex": r"\bdaylight\b", "cooldown_s": 0},
    ]
    config = app_config(broker.port, cameras=[{"id": "front_door", "alerts": alerts}])
    daemon = Daemon(broker, make_daemon, make_recorder, config)
    person = f"{config.base_topic}/front_door/alert/person"

    started = time.monotonic()
    first = daemon.snapshot("front_door", images.sample("front_door"))
    assert first["alerts"] == ["person", "faces", "day"]
    on = daemon.recorder.wait_for(person, lambda m: m.json()["state"] == "ON")
    on_received = time.monotonic()
    assert on.json()["suppressed"] == 0
    # At once again: held back by the cooldown, and counted; the other rules have none.
    again = daemon.trigger("front_door", "r1")
    assert time.monotonic() - started < cooldown, "the machine is too slow for this test's timing"
    assert again["alerts"] == ["faces", "day"]
    held_back = 1

    # The state turns off by itself after off_after_s, not before.
    off = daemon.recorder.wait_for(person, lambda m: m.index > on.index, timeout=10)
    assert off.json() == {"state": "OFF", "rule": "person", "camera": "front_door"}
    assert time.monotonic() - on_received >= 0.8
    # After the cooldown the next match is sent, with the count of those held back.
    for n in range(100):
        outcome = daemon.trigger("front_door", f"later{n}")
        if "person" in outcome["alerts"]:
            break
        held_back += 1
    else:
        pytest.fail("the cooldown never ended")
    assert time.monotonic() - started >= cooldown
    alert_topic = daemon.topic("front_door", "alerts")
    # They follow the result, in the rules' order: once the last rule's is in, all of them are.
    daemon.recorder.wait_for(alert_topic, lambda m: (m.json()["id"], m.json()["event_type"]) == (outcome["id"], "day"))
    events = [m.json() for m in daemon.recorder.on(alert_topic) if m.json()["event_type"] == "person"]
    assert [(e["id"], e["suppressed"]) for e in events] == [(first["id"], 0), (outcome["id"], held_back)]
    state = daemon.recorder.wait_for(person, lambda m: m.index > off.index).json()
    assert (state["state"], state["id"], state["suppressed"]) == ("ON", outcome["id"], held_back)
    # The rule without a cooldown fired every time, never holding anything back.
    faces = [m.json() for m in daemon.recorder.on(daemon.topic("front_door", "alerts"))
             if m.json()["event_type"] == "faces"]
    assert len(faces) == held_back + 2
    assert {e["suppressed"] for e in faces} == {0}


# 5. Notify fast: a job's life on the event topic


def test_a_job_is_announced_at_once_then_described_or_superseded(
        broker: Mosquitto, make_daemon: Daemons, make_recorder: Recorders) -> None:
    backend = GatedBackend()  # holds every job until the gate opens
    config = app_config(broker.port)
    daemon = Daemon(broker, make_daemon, make_recorder, config, backend)
    front = images.sample("front_door")
    recorder = daemon.recorder

    daemon.publish("front_door", "snapshot", front)
    assert backend.entered.wait(10)  # in flight, held at the gate
    pending = recorder.wait_for(daemon.topic("front_door", "event"), lambda m: m.json()["event_type"] == "pending")
    snapshot_id = pending.json()["id"]
    assert pending.json()["origin"] == "snapshot"
    assert pending.json()["image_topic"] == daemon.topic("front_door", "image")
    image = recorder.wait_for(daemon.topic("front_door", "image"))
    assert image.payload == front
    # Two triggers while it runs: the second replaces the first, which is told so.
    daemon.publish("front_door", "trigger", json.dumps({"id": "t1"}))
    daemon.event("front_door", "t1", "pending")
    daemon.publish("front_door", "trigger", json.dumps({"id": "t2"}))
    superseded = daemon.event("front_door", "t1", "superseded").json()
    assert superseded["by"] == "t2"
    t2_pending = daemon.event("front_door", "t2", "pending")
    # A snapshot does not replace a trigger that waits: it joins it, and is told so at once.
    joining = images.jpeg(seed=3)
    daemon.publish("front_door", "snapshot", joining)
    joined = recorder.wait_for(daemon.topic("front_door", "event"),
                               lambda m: m.json()["origin"] == "snapshot" and m.json()["id"] != snapshot_id).json()
    assert (joined["event_type"], joined["by"]) == ("superseded", "t2")
    # Nothing is described while the gate is closed.
    assert recorder.on(daemon.topic("front_door", "description")) == []
    assert recorder.on(daemon.topic("front_door", "result")) == []

    backend.gate.set()

    described = daemon.event("front_door", snapshot_id, "described")
    assert described.json()["description"] == FRONT_DOOR_TEXT
    result = recorder.wait_for(daemon.topic("front_door", "result"))
    assert image.index < pending.index < result.index < described.index
    # t1's and t2's frames were shown since: the description goes out with its own frame again.
    shown = [m for m in recorder.on(daemon.topic("front_door", "image")) if t2_pending.index < m.index < result.index]
    assert [m.payload for m in shown] == [front]
    last = daemon.event("front_door", "t2", "described").json()
    assert last["superseded_ids"] == ["t1", joined["id"]]
    assert [e["event_type"] for e in daemon.events("front_door", snapshot_id)] == ["pending", "described"]
    assert [e["event_type"] for e in daemon.events("front_door", "t1")] == ["pending", "superseded"]
    assert [e["event_type"] for e in daemon.events("front_door", "t2")] == ["pending", "described"]
    assert [e["event_type"] for e in daemon.events("front_door", joined["id"])] == ["superseded"]
    # The image of a frame that will not be described is never shown.
    assert joining not in [m.payload for m in recorder.on(daemon.topic("front_door", "image"))]


def test_a_failing_backend_fails_the_announced_job(broker: Mosquitto, make_daemon: Daemons,
                                                   make_recorder: Recorders) -> None:
    config = app_config(broker.port)
    daemon = Daemon(broker, make_daemon, make_recorder, config, FailingBackend("front_door"))

    for n in range(10):  # a backend that fails at once must not overtake the announcement
        error = daemon.snapshot("front_door", images.jpeg(seed=n))
        assert error["error"] == "backend_failed"
        failed = daemon.event("front_door", error["id"], "failed").json()
        assert (failed["error"], failed["message"]) == ("backend_failed", "model crashed")
        assert [e["event_type"] for e in daemon.events("front_door", error["id"])] == ["pending", "failed"]
    error = daemon.trigger("front_door", "f1")
    assert error["error"] == "backend_failed"
    daemon.event("front_door", "f1", "failed")
    assert [e["event_type"] for e in daemon.events("front_door", "f1")] == ["pending", "failed"]


# 6. Controls survive a restart


def test_controls_set_in_home_assistant_survive_a_restart_without_flipping(
        broker: Mosquitto, make_daemon: Daemons, make_recorder: Recorders) -> None:
    extra = f"{own_prefix()}/front_door/+/snapshot"  # a Frigate-style topic of the camera's
    config = app_config(broker.port, profiles={"quick": {"prompt": "Quick look."}},
                        cameras=[{"id": "front_door", "snapshot_topics": [extra]}, {"id": "driveway"}])
    first = Daemon(broker, make_daemon, make_recorder, config)
    recorder = first.recorder
    first.set("front_door", "enabled", "OFF")
    first.set("driveway", "cooldown", "3600")
    first.set("driveway", "profile", "quick")
    settings = {("front_door", "enabled"): b"OFF", ("front_door", "cooldown"): b"0",
                ("front_door", "profile"): b"default", ("front_door", "prompt"): b"",
                ("driveway", "enabled"): b"ON", ("driveway", "cooldown"): b"3600",
                ("driveway", "profile"): b"quick", ("driveway", "prompt"): b""}
    first.service.stop()

    since = len(recorder.messages)
    second = Daemon(broker, make_daemon, make_recorder, config, recorder=recorder)

    # The switched-off camera ignores an automatic snapshot without a word, and refuses a trigger.
    before = len(recorder.messages)
    recorder.publish(extra.replace("+", "person"), images.sample("front_door"))
    refused = second.trigger("front_door", "off1")  # handled after the snapshot: in order
    assert (refused["error"], refused["id"]) == ("camera_disabled", "off1")
    assert "switched off in Home Assistant" in refused["message"]
    # The error, and the failed step Home Assistant's event entity shows: the button press was refused.
    recorder.wait_for(second.topic("front_door", "event"), lambda m: m.index >= before and m.json()["id"] == "off1")
    outputs = [second.topic("front_door", leaf) for leaf in ("event", "image", "result", "description", "error")]
    said = [m.topic for m in recorder.messages[before:] if m.topic in outputs]
    assert said == [second.topic("front_door", "error"), second.topic("front_door", "event")]
    # The driveway asks with the profile picked, and its cooldown holds back the next snapshot.
    described = second.snapshot("driveway", images.sample("driveway"))
    assert described["prompt"] == "Quick look."
    skipped = second.snapshot("driveway", images.sample("front_door"))
    assert skipped["skipped"] is True
    assert skipped["reason"] == "within the camera's cooldown of 3600 s"
    # Each state was read back and announced again as it was: never a flip.
    for (camera, name), value in settings.items():
        published = [m.payload for m in recorder.messages[since:] if m.topic == second.topic(camera, name)]
        assert published, f"{camera}/{name} was not announced again"
        assert set(published) == {value}, f"{camera}/{name} flipped: {published}"
