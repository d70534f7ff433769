"""Frigate without a broker: which events become triggers (ingest.frigate), and which snapshot an
event is described from (frames.sources.frigate)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from edge_vlm.config.models import AppConfig
from edge_vlm.core.contracts import Origin
from edge_vlm.core.errors import ErrorCode, InputError
from edge_vlm.frames import Frame
from edge_vlm.frames.sources import frigate as frigate_snapshots
from edge_vlm.frames.sources.frigate import FrigateSnapshots
from edge_vlm.ingest.frigate import FrigateEvent, FrigateEvents, parse_event
from edge_vlm.ingest.trigger import Trigger
from edge_vlm.mqtt.inbox import Received
from tests.support import images
from tests.support.frigate_api import frigate_api
from tests.support.frigate_payloads import EVENT_VERSIONS, event_message

CONFIG = AppConfig.model_validate({"frigate": {"enabled": True}, "cameras": [
    {"id": "porch", "frigate": {"camera": "front", "labels": ["person", "car"], "zones": ["steps"], "min_score": 0.6,
                                "prompts": {"car": "Which car is it?"}}},
]})


def event(event_id: str, kind: str = "new", label: str = "person", zones: list[str] | None = None,
          score: float = 0.8, camera: str = "front", at: float | None = None, **fields: Any) -> Received:
    """An event message that arrived ``at`` seconds after a start two minutes ago (default: now)."""
    after: dict[str, Any] = {"id": event_id, "camera": camera, "label": label, "top_score": score,
                             "current_zones": ["steps"] if zones is None else zones, "sub_label": ["Ann", 0.9],
                             **fields}
    payload = json.dumps({"type": kind, "before": {}, "after": after}).encode()
    return arrived("frigate/events", payload, at)


def test_events_that_pass_the_filters_become_one_trigger_each() -> None:
    triggers: list[Trigger] = []
    events = FrigateEvents(CONFIG, triggers.append)
    for message in [event("e1"), event("e1", "update"), event("e1", "end"),  # once per event
                    event("e2", label="dog"), event("e3", zones=["lawn"]), event("e4", score=0.5),
                    event("e5", camera="back"), event("e6", label="car")]:
        events.handle(message)
    events.handle(Received("frigate/events", b"{not json", retain=False, received_at=0.0, wall_time=0.0, size=9))

    assert [(t.request_id, t.camera, t.origin, t.prompt) for t in triggers] == [
        ("e1", "porch", Origin.FRIGATE, None), ("e6", "porch", Origin.FRIGATE, "Which car is it?")]
    first = triggers[0]
    assert first.frigate is not None and first.own_image
    assert first.event == {"source": "frigate", "id": "e1", "type": "new", "label": "person", "sub_label": "Ann",
                           "zones": ["steps"], "score": 0.8, "revision": 0}


def snapshot(label: str, payload: bytes, *, retain: bool = False, at: float | None = None) -> Received:
    return arrived(f"frigate/front/{label}/snapshot", payload, at, retain=retain)


def arrived(topic: str, payload: bytes, at: float | None, *, retain: bool = False) -> Received:
    """A message that arrived ``at`` seconds after a start two minutes ago (so that nothing waits)."""
    ago = 0.0 if at is None else 120 - at
    return Received(topic, payload, retain=retain, received_at=time.monotonic() - ago, wall_time=time.time() - ago,
                    size=len(payload))


def decode(data: bytes, camera: str, captured_at: float) -> Frame:
    return Frame(camera, images.scene(4, 4), (4, 4), data, "JPEG", captured_at)


class Timeline:
    """Frigate's messages as they arrived, at times chosen in the past (so that nothing waits), handed
    over as the service wires them; then the snapshot each event is described with."""

    def __init__(self, config: AppConfig = CONFIG) -> None:
        self.config = config
        self.triggers: list[Trigger] = []
        self.store = FrigateSnapshots(config, decode)
        self.events = FrigateEvents(config, self.triggers.append, seen=self.store.note_event)
        self.store.on_unpictured(self.events.unpictured)

    def event(self, at: float, event_id: str, kind: str = "new", **fields: Any) -> None:
        self.events.handle(event(event_id, kind, at=at, **fields))

    def snapshot(self, at: float, payload: bytes, label: str = "person") -> None:
        self.store.handle(snapshot(label, payload, at=at))

    def picture(self, event_id: str) -> bytes | ErrorCode:
        trigger = [t for t in self.triggers if t.request_id == event_id][-1]  # its latest
        assert trigger.frigate is not None
        try:
            return self.store.grab(self.config.cameras[0], trigger.frigate, trigger.received_at).encoded
        except InputError as exc:
            return exc.code


def test_an_event_is_described_from_its_own_snapshot_never_an_older_retained_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frigate_snapshots, "SNAPSHOT_WAIT_S", 0.2)
    frigate = Timeline()
    frigate.store.handle(snapshot("person", b"old", retain=True))  # from before we subscribed: whose?
    frigate.event(0, "e1")
    assert frigate.picture("e1") == ErrorCode.NO_FRAME
    frigate.snapshot(0.5, b"other label", label="car")
    frigate.snapshot(0.6, b"fresh")
    assert frigate.picture("e1") == b"fresh"


def test_two_people_at_once_never_get_each_others_picture() -> None:
    """Issue 15: two person events 1.5 s apart, each followed by a snapshot: both were described
    with the first one's. The topic cannot say whose the second is while the first is still about."""
    frigate = Timeline()
    frigate.event(0.0, "a")
    frigate.snapshot(0.1, b"a's")
    frigate.event(1.5, "b")
    frigate.snapshot(1.6, b"b's, or a's better one")
    assert frigate.picture("a") == ErrorCode.NO_FRAME  # b appeared within 5 s of a's picture: it may be b's
    assert frigate.picture("b") == ErrorCode.NO_FRAME
    frigate.event(30, "a", "end")
    frigate.event(31, "b", "end")
    frigate.snapshot(31.2, b"best of the label again")  # up to 0.15, at an end: whose?
    frigate.event(40, "c")
    frigate.snapshot(40.1, b"c's")
    assert frigate.picture("c") == b"c's"


def test_a_new_objects_picture_before_its_event_message_is_its_own_if_no_other_came() -> None:
    frigate = Timeline()
    frigate.event(0.8, "a")
    frigate.snapshot(2.1, b"a's")
    assert frigate.picture("a") == b"a's"
    frigate.event(5.0, "a", "end")
    frigate.snapshot(8.0, b"first sight of someone")  # Frigate 0.16+: on the first frame, before the message
    frigate.event(9.0, "late")
    assert frigate.picture("late") == b"first sight of someone"
    frigate.event(12.0, "other")  # within 5 s of that picture: it may have been other's first sight
    assert frigate.picture("late") == ErrorCode.NO_FRAME  # why a picture is taken only after 5 s


def test_a_car_that_parks_blocks_only_until_it_is_said_to_stand_still() -> None:
    config = AppConfig.model_validate({"frigate": {"enabled": True}, "cameras": [
        {"id": "porch", "frigate": {"camera": "front"}}]})
    frigate = Timeline(config)
    frigate.event(0.0, "a", label="car")
    frigate.event(1.0, "b", label="car")
    frigate.snapshot(2.0, b"a's or b's", label="car")  # both moving: whose?
    frigate.event(20.0, "a", "update", label="car", stationary=True)  # a has parked since
    assert frigate.picture("b") == ErrorCode.NO_FRAME  # the picture from before may still be a's
    frigate.snapshot(25.0, b"b's", label="car")
    assert frigate.picture("b") == b"b's"


def test_a_stationary_object_is_not_pictured_so_it_does_not_make_others_ambiguous() -> None:
    config = AppConfig.model_validate({"frigate": {"enabled": True}, "cameras": [
        {"id": "porch", "frigate": {"camera": "front"}}]})
    frigate = Timeline(config)
    frigate.event(0.0, "parked", label="car", stationary=True)
    frigate.event(10.0, "arriving", label="car")
    frigate.snapshot(10.1, b"the arriving car", label="car")
    assert frigate.picture("arriving") == b"the arriving car"
    assert [t.request_id for t in frigate.triggers] == ["arriving"]  # the parked one is not described


def test_with_frigates_api_the_events_own_snapshot_is_fetched_when_the_topic_cannot_tell() -> None:
    with frigate_api() as api:
        config = AppConfig.model_validate({"frigate": {"enabled": True, "api_url": api.url}, "cameras": [
            {"id": "porch", "frigate": {"camera": "front"}}]})
        api.snapshots["b"] = images.sample("driveway")
        frigate = Timeline(config)
        frigate.event(0.0, "a")
        frigate.snapshot(0.1, images.sample("front_door"))
        frigate.event(1.5, "b")
        assert frigate.picture("b") == images.sample("driveway")
        assert frigate.picture("a") == ErrorCode.NO_FRAME  # Frigate answers 404: it keeps no snapshot of a
        assert [path.split("/")[3] for path in api.requests] == ["b", "a"]

        # an event described at its end, which Frigate says it kept no snapshot of: not asked for
        ends = Timeline(AppConfig.model_validate({"frigate": {"enabled": True, "api_url": api.url}, "cameras": [
            {"id": "porch", "frigate": {"camera": "front", "event_types": ["end"]}}]}))
        ends.event(0.0, "c", "end", has_snapshot=False)
        assert ends.picture("c") == ErrorCode.NO_FRAME
        assert len(api.requests) == 2


def names(triggers: list[Trigger]) -> list[tuple[str | None, Any]]:
    return [(t.request_id, (t.event or {}).get("sub_label")) for t in triggers]


def test_an_event_waits_a_bounded_time_for_a_recognised_name() -> None:
    config = AppConfig.model_validate({"frigate": {"enabled": True}, "cameras": [
        {"id": "porch", "frigate": {"camera": "front", "name_wait_s": 0.5}}]})
    triggers: list[Trigger] = []
    arrived = threading.Event()

    def submit(trigger: Trigger) -> None:
        triggers.append(trigger)
        arrived.set()

    events = FrigateEvents(config, submit)
    try:
        events.handle(event("f1", sub_label=None))  # a face not recognised yet
        events.handle(event("f1", "update", sub_label=None))
        assert triggers == []
        events.handle(event("f1", "update", sub_label=["Bob", 0.91]))  # Frigate's face recognition named it
        assert names(triggers) == [("f1", "Bob")]  # at once
        events.handle(event("f1", "update", sub_label=["Bob", 0.93]))
        assert len(triggers) == 1  # once per event

        arrived.clear()
        started = time.monotonic()
        events.handle(event("p1", label="car", sub_label=None, recognized_license_plate=None))
        assert arrived.wait(5) and time.monotonic() - started >= 0.5  # no name came: described after the wait
        assert names(triggers[1:]) == [("p1", None)]
        events.handle(event("p2", label="car", sub_label=None, recognized_license_plate=["AB123CD", 0.95]))
        assert names(triggers[-1:]) == [("p2", "AB123CD")]  # a plate read stands for a name

        arrived.clear()
        events.handle(event("s1", sub_label=None))
    finally:
        events.stop()
    assert not arrived.wait(1.0)  # stopping dropped what waited (twice its wait)
    assert [t.request_id for t in triggers] == ["f1", "p1", "p2"]


@pytest.mark.parametrize("version", EVENT_VERSIONS)
def test_every_releases_event_message_reads_the_same(version: str) -> None:
    payload = event_message(version, "update", "1607123955.475377-mxklsc", "driveway", "car", zones=("drive",),
                            score=0.84, sub_label="Ann's car", position_changes=0)
    assert parse_event(payload) == FrigateEvent("1607123955.475377-mxklsc", "update", "driveway", "car", "Ann's car",
                                                ("drive",), 0.84, stationary=False, moved=False, has_snapshot=True)
    plate_only = parse_event(event_message(version, "update", "p", label="car", plate="AB123"))
    assert plate_only.sub_label == ("AB123" if version in ("0.17", "0.18") else None)  # read plates came with 0.16


def test_an_event_described_before_its_name_came_is_described_again_once_when_it_comes() -> None:
    config = AppConfig.model_validate({"frigate": {"enabled": True}, "cameras": [
        {"id": "porch", "frigate": {"camera": "front", "again_when_named": True, "event_types": ["new"]}}]})
    triggers: list[Trigger] = []
    events = FrigateEvents(config, triggers.append)
    for kind, name in (("new", None), ("update", None), ("update", "Bob"), ("update", "Bob"), ("end", "Bob")):
        # Bob stands at the door while his face is recognised: stationary, still him
        events.handle(received(event_message("0.18", kind, "e1", sub_label=name, stationary=name is not None)))
    events.handle(received(event_message("0.18", "new", "e2", sub_label="Ann")))  # named at once: once
    events.handle(received(event_message("0.18", "end", "e2", sub_label="Ann")))
    events.handle(received(event_message("0.18", "new", "e3")))
    events.handle(received(event_message("0.18", "end", "e3", sub_label="Cy")))  # a name in the end message counts
    assert [(t.request_id, t.revision, (t.event or {}).get("revision"), (t.event or {}).get("sub_label"))
            for t in triggers] == [("e1", 0, 0, None), ("e1", 1, 1, "Bob"), ("e2", 0, 0, "Ann"), ("e3", 0, 0, None),
                                   ("e3", 1, 1, "Cy")]


def received(payload: bytes) -> Received:
    return arrived("frigate/events", payload, None)


def test_an_event_that_had_no_picture_is_tried_again_on_its_next_message_twice_at_most() -> None:
    config = AppConfig.model_validate({"frigate": {"enabled": True}, "cameras": [
        {"id": "porch", "frigate": {"camera": "front", "event_types": ["new"]}}]})
    frigate = Timeline(config)
    frigate.event(0.0, "a")
    frigate.event(0.5, "b")  # two people: no picture from the topic can be a's
    frigate.snapshot(0.6, b"a's or b's")
    assert frigate.picture("a") == ErrorCode.NO_FRAME
    frigate.event(9.0, "b", "end")
    frigate.snapshot(12.0, b"a's, b gone")
    frigate.event(20.0, "a", "update")  # its next message tries again, though event_types has only new
    assert [t.request_id for t in frigate.triggers] == ["a", "b", "a"]
    assert frigate.picture("a") == b"a's, b gone"

    frigate.event(30.0, "c")
    frigate.event(30.5, "d")
    for at in (31.0, 32.0, 33.0):
        assert frigate.picture("c") == ErrorCode.NO_FRAME  # d is about all along
        frigate.event(at, "c", "update")
    assert [t.request_id for t in frigate.triggers].count("c") == 3  # the first, and two tries again


def test_a_revision_without_a_picture_is_asked_again_when_named_and_an_older_failure_is_ignored() -> None:
    config = AppConfig.model_validate({"frigate": {"enabled": True}, "cameras": [
        {"id": "porch", "frigate": {"camera": "front", "again_when_named": True}}]})
    triggers: list[Trigger] = []
    events = FrigateEvents(config, triggers.append)
    events.handle(received(event_message("0.18", "new", "e1")))
    events.handle(received(event_message("0.18", "update", "e1", sub_label="Bob")))  # revision 1
    events.unpictured("porch", "e1", 0)  # revision 0's failure, come late: revision 1 was asked for since
    events.handle(received(event_message("0.18", "update", "e1", sub_label="Bob")))
    events.unpictured("porch", "e1", 1)  # revision 1 had no picture: the next named message asks again
    events.handle(received(event_message("0.18", "update", "e1", sub_label="Bob", stationary=True)))
    events.handle(received(event_message("0.18", "update", "e1", sub_label="Bob")))
    assert [(t.request_id, t.revision) for t in triggers] == [("e1", 0), ("e1", 1), ("e1", 1)]
