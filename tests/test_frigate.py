"""Frigate's events through the whole daemon, shaped as Frigate publishes them: which are described,
and with whose picture (issue 15: two events 1.5 s apart were both described with the first one's)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from edge_vlm.config.sources import FrigateCameraConfig
from edge_vlm.frames.sources import frigate as frigate_snapshots
from edge_vlm.ingest.frigate import parse_event, refusal
from edge_vlm.service import Service
from tests.conftest import app_config
from tests.support import images
from tests.support.broker import Mosquitto
from tests.support.frigate_api import FrigateApi, frigate_api
from tests.support.frigate_payloads import (
    EVENT_VERSIONS,
    EVENTS_BESIDE,
    REVIEW_VERSIONS,
    event_message,
    review_message,
    review_segment,
)
from tests.support.mqtt import Message, Recorder
from tests.test_cameras import online, watch

pytestmark = pytest.mark.mqtt

Daemon = Callable[..., Service]
Recorders = Callable[..., Recorder]
PORCH, STREET = images.sample("front_door"), images.sample("driveway")  # 1 person / no people
PORCH_TEXT, STREET_TEXT = "1 person; 1 face visible; daylight", "No people; dusk light"


def frigate_event(event_id: str, kind: str = "new", label: str = "person", zones: tuple[str, ...] = ("porch",),
                  score: float = 0.9, camera: str = "front", **after: Any) -> str:
    """An event message as Frigate publishes it on <prefix>/events (the fields edge_vlm reads)."""
    fields = {"id": event_id, "camera": camera, "label": label, "sub_label": ["Alice", 0.8], "top_score": score,
              "current_zones": list(zones), "entered_zones": [], "start_time": time.time() - 1,
              "stationary": False, "position_changes": 1, "has_snapshot": True, **after}
    return json.dumps({"type": kind, "before": fields, "after": fields})


def outcome_of(camera_topic: str, event_id: str) -> Callable[[Message], bool]:
    """Matches the result or the error of one event on a camera's topics."""
    return lambda m: m.topic in (f"{camera_topic}/result", f"{camera_topic}/error") and m.json().get("id") == event_id


@pytest.fixture
def api() -> Iterator[FrigateApi]:
    with frigate_api() as server:
        yield server


def start(make_daemon: Daemon, make_recorder: Recorders, broker: Mosquitto, cameras: list[dict[str, Any]],
          api_url: str | None = None) -> tuple[str, str, Recorder]:
    """A daemon taking Frigate's events under a prefix of its own: (prefix, base topic, recorder)."""
    prefix = f"frigate{time.monotonic_ns()}"
    frigate: dict[str, Any] = {"enabled": True, "topic_prefix": prefix}
    if api_url is not None:
        frigate["api_url"] = api_url
    config = app_config(broker.port, frigate=frigate, cameras=cameras)
    recorder = watch(make_recorder, broker, config)
    make_daemon(config)
    online(recorder, config)
    return prefix, config.base_topic, recorder


def test_events_that_pass_the_filters_are_described_keyed_by_their_id(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders, api: FrigateApi) -> None:
    frigate = {"camera": "front", "labels": ["person"], "zones": ["porch"], "min_score": 0.7,
               "prompts": {"person": "Is {sub_label} the {label} at the {zones} of the {camera}?"}}
    prefix, base, recorder = start(make_daemon, make_recorder, broker, [{"id": "front_door", "frigate": frigate}],
                                   api.url)
    api.snapshots.update(e1=PORCH, e2=STREET)
    for event in (frigate_event("e1"), frigate_event("x1", label="car"), frigate_event("x2", score=0.5),
                  frigate_event("x3", zones=("street",)), frigate_event("x4", kind="end"),
                  frigate_event("x5", stationary=True), frigate_event("x6", position_changes=0),
                  frigate_event("e1", "update"), frigate_event("e2")):
        recorder.publish(f"{prefix}/events", event)

    # each event is its own question: e2 never replaces e1 while it waits
    results = {m.json()["id"]: m.json() for m in recorder.count(f"{base}/front_door/result", 2)}
    second = results["e2"]
    assert (second["text"], second["superseded_ids"]) == (STREET_TEXT, [])  # its own picture
    first = results["e1"]
    assert first["origin"] == "frigate"
    assert first["prompt"] == "Is Alice the person at the porch of the Front door?"
    assert first["event"] == {"source": "frigate", "id": "e1", "type": "new", "label": "person",
                              "sub_label": "Alice", "zones": ["porch"], "score": 0.9, "revision": 0}
    assert first["text"] == PORCH_TEXT
    # the refused events were never fetched (several person events at once: each from the API)
    assert sorted(path.split("/")[3] for path in api.requests) == ["e1", "e2"]


def test_two_events_at_once_never_take_each_others_picture(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders, monkeypatch: pytest.MonkeyPatch) -> None:
    # Frigate (up to 0.15) may picture the label again right after an object's end: within AFTER_END_S
    # the picture stays ambiguous. Taken as none here, so that the scene below needs no waiting.
    monkeypatch.setattr(frigate_snapshots, "AFTER_END_S", 0.0)
    prefix, base, recorder = start(make_daemon, make_recorder, broker, [{"id": "front", "frigate": {}}])
    recorder.publish(f"{prefix}/events", frigate_event("a1"))
    recorder.publish(f"{prefix}/front/person/snapshot", PORCH)  # the one person about: a1's
    first = recorder.wait_json(f"{base}/front/result", id="a1")
    assert (first["text"], first["image_size"]) == (PORCH_TEXT, [512, 512])

    # a second person while a1 is still tracked: the topic does not say whose picture comes next
    recorder.publish(f"{prefix}/events", frigate_event("b1"))
    recorder.publish(f"{prefix}/front/person/snapshot", STREET)
    error = recorder.wait_json(f"{base}/front/error", id="b1")
    assert error["error"] == "no_frame"
    assert "1 other person object(s) of front were about too" in error["message"]
    assert "set frigate.api_url" in error["message"]
    assert not [m for m in recorder.on(f"{base}/front/result") if m.json()["id"] == "b1"]

    # a1 leaves; Frigate pictures b1 again; b1's next message tries again, and now the picture is its own
    recorder.publish(f"{prefix}/events", frigate_event("a1", "end"))
    recorder.publish(f"{prefix}/front/person/snapshot", STREET)
    recorder.publish(f"{prefix}/events", frigate_event("b1", "update"))
    retried = recorder.wait_json(f"{base}/front/result", id="b1")
    assert (retried["text"].startswith(STREET_TEXT), retried["event"]["revision"]) == (True, 0)



def test_with_frigates_api_each_event_gets_its_own_snapshot_in_every_release(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders, api: FrigateApi) -> None:
    prefix, base, recorder = start(make_daemon, make_recorder, broker, [{"id": "front", "frigate": {}}], api.url)
    texts = {}
    for version in EVENT_VERSIONS:  # two people at once, as each release publishes them
        first, second = f"{version}-a", f"{version}-b"
        api.snapshots.update({first: PORCH, second: STREET})
        recorder.publish(f"{prefix}/events", event_message(version, "new", first, zones=("porch",)))
        recorder.publish(f"{prefix}/front/person/snapshot", PORCH)
        recorder.publish(f"{prefix}/events", event_message(version, "new", second, zones=("porch",)))
        recorder.publish(f"{prefix}/front/person/snapshot", STREET)
        for event_id in (first, second):
            outcome = recorder.wait_where(outcome_of(f"{base}/front", event_id)).json()
            texts[event_id] = outcome.get("text") or outcome["error"]
    # each its own, from MQTT when it was alone, else from the API: never the other's
    assert texts == {f"{v}-{n}": text for v in EVENT_VERSIONS for n, text in (("a", PORCH_TEXT), ("b", STREET_TEXT))}

    # an event Frigate keeps no snapshot of: said as such, not as a camera that is down
    recorder.publish(f"{prefix}/events", frigate_event("n3"))
    recorder.publish(f"{prefix}/front/person/snapshot", PORCH)
    error = recorder.wait_json(f"{base}/front/error", id="n3")
    assert error["error"] == "no_frame" and "Frigate has no snapshot of it (HTTP 404" in error["message"]


def test_two_of_our_cameras_share_one_frigate_camera_by_label(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    cameras = [{"id": "people", "frigate": {"camera": "yard", "labels": ["person"]}},
               {"id": "cars", "frigate": {"camera": "yard", "labels": ["car"]}}]
    prefix, base, recorder = start(make_daemon, make_recorder, broker, cameras)
    recorder.publish(f"{prefix}/events", frigate_event("p1", camera="yard"))
    recorder.publish(f"{prefix}/yard/person/snapshot", PORCH)
    recorder.publish(f"{prefix}/events", frigate_event("c1", camera="yard", label="car"))
    recorder.publish(f"{prefix}/yard/car/snapshot", STREET)
    assert recorder.wait_json(f"{base}/people/result", id="p1")["text"] == PORCH_TEXT
    assert recorder.wait_json(f"{base}/cars/result", id="c1")["text"] == STREET_TEXT
    assert not [m for m in recorder.on(f"{base}/people/result") if m.json()["id"] == "c1"]


def test_a_retained_snapshot_is_never_an_events_picture(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    prefix = f"frigate{time.monotonic_ns()}"
    config = app_config(broker.port, frigate={"enabled": True, "topic_prefix": prefix},
                        cameras=[{"id": "front", "frigate": {}}])
    recorder = watch(make_recorder, broker, config)
    # Left by an earlier event: it arrives as a retained message when the daemon subscribes.
    recorder.publish(f"{prefix}/front/person/snapshot", STREET, retain=True)
    make_daemon(config)
    online(recorder, config)

    recorder.publish(f"{prefix}/events", frigate_event("old1"))
    error = recorder.wait_json(f"{config.base_topic}/front/error", id="old1")
    assert error["error"] == "no_frame"
    assert "no snapshot on" in error["message"] and "within 3 s" in error["message"]

    recorder.publish(f"{prefix}/front/dog/snapshot", PORCH)  # fresh, and the one dog about
    recorder.publish(f"{prefix}/events", frigate_event("new1", label="dog"))
    assert recorder.wait_json(f"{config.base_topic}/front/result", id="new1")["details"]["faces"] == 1
    recorder.publish(f"{prefix}/front/person/snapshot", b"", retain=True)


def test_a_stationary_or_never_moved_object_is_left_out_unless_asked() -> None:
    config = FrigateCameraConfig()
    parked = parse_event(frigate_event("s1", stationary=True).encode())
    never_moved = parse_event(frigate_event("s2", position_changes=0).encode())
    older = parse_event(json.dumps({"type": "new", "after": {"id": "s3", "camera": "c", "label": "car"}}).encode())
    assert (refusal(parked, config), refusal(never_moved, config)) == ("stationary", "it has never moved")
    assert refusal(older, config) is None  # a Frigate that does not say: taken as moving
    assert refusal(parked, FrigateCameraConfig(include_stationary=True)) is None


def test_a_description_is_written_back_into_frigate_when_asked(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders, api: FrigateApi) -> None:
    prefix = f"frigate{time.monotonic_ns()}"
    config = app_config(broker.port, frigate={"enabled": True, "topic_prefix": prefix, "api_url": api.url,
                                              "write_descriptions": True},
                        cameras=[{"id": "front", "frigate": {"snapshot": "http"}}])
    recorder = watch(make_recorder, broker, config)
    make_daemon(config)
    online(recorder, config)
    api.snapshots["w1"] = PORCH
    api.events["w1"] = time.time()  # ended by the time it is described
    recorder.publish(f"{prefix}/events", frigate_event("w1"))
    result = recorder.wait_json(f"{config.base_topic}/front/result", id="w1")
    assert api.wait_for_description("w1") == result["text"] == PORCH_TEXT


def test_a_review_item_is_one_result_updated_as_it_grows_and_a_name_updates_an_event(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders, api: FrigateApi) -> None:
    cameras: list[dict[str, Any]] = [{"id": "porch", "frigate": {"camera": "front", "reviews": ["alert"],
                                           "prompts": {"default": "Who ({sub_label}) and what ({label})?"}}},
               {"id": "drive", "cooldown_s": 600, "frigate": {"camera": "drive", "again_when_named": True,
                                                              "snapshot": "http"}}]
    prefix, base, recorder = start(make_daemon, make_recorder, broker, cameras, api.url)
    for version in REVIEW_VERSIONS:
        person, review_id = f"{version}-p", f"{time.time():.6f}-{version.replace('.', '')}rv"
        api.snapshots[person] = PORCH
        recorder.publish(f"{prefix}/events", event_message(EVENTS_BESIDE[version], "new", person))
        new = review_segment(version, review_id, "front", "alert", {person: "person"})
        recorder.publish(f"{prefix}/reviews", review_message(version, "new", None, new))
        first = recorder.wait_json(f"{base}/porch/result", id=review_id)
        recorder.publish(f"{prefix}/events", event_message(EVENTS_BESIDE[version], "update", person, sub_label="Bob"))
        named = review_segment(version, review_id, "front", "alert", {person: "person-verified"},
                               sub_labels={person: "Bob"})
        recorder.publish(f"{prefix}/reviews", review_message(version, "update", new, named))
        recorder.publish(f"{prefix}/reviews", review_message(version, "end", named, {**named, "end_time": 1.0}))
        again = recorder.wait_where(lambda m, r=review_id: m.topic == f"{base}/porch/result"  # type: ignore[misc]
                                    and m.json()["id"] == r and m.json()["event"]["revision"] == 1).json()
        assert (first["prompt"], first["text"].startswith(PORCH_TEXT), first["event"]["revision"]) == (
            "Who () and what (person)?", True, 0)
        assert (again["prompt"], again["event"]["sub_labels"]) == ("Who (Bob) and what (person)?", ["Bob"])

    # an event described before its name came: again when it comes, past the camera's cooldown
    api.snapshots["car1"] = STREET
    recorder.publish(f"{prefix}/events", event_message("0.18", "new", "car1", camera="drive", label="car"))
    assert recorder.wait_json(f"{base}/drive/result", id="car1")["event"]["sub_label"] is None
    recorder.publish(f"{prefix}/events", event_message("0.18", "update", "car1", camera="drive", label="car",
                                                       plate="AB123"))
    named_car = recorder.wait_where(lambda m: m.topic == f"{base}/drive/result" and m.json()["id"] == "car1"
                                    and m.json()["event"]["revision"] == 1).json()
    assert (named_car["event"]["sub_label"], named_car["text"].startswith(STREET_TEXT)) == ("AB123", True)
    # one result per growth: the ends, which brought nothing new and came long before, were not described
    assert len(recorder.on(f"{base}/porch/result")) == 2 * len(REVIEW_VERSIONS)
