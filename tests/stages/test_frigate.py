"""Frigate without a broker: which events become triggers (ingest.frigate), and which snapshot an
event is described from (frames.sources.frigate)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from edge_vlm.config.models import AppConfig
from edge_vlm.core.contracts import Origin
from edge_vlm.core.errors import ErrorCode, InputError
from edge_vlm.frames import Frame
from edge_vlm.frames.sources import frigate as frigate_snapshots
from edge_vlm.frames.sources.frigate import FrigateSnapshots
from edge_vlm.ingest.frigate import FrigateEvents
from edge_vlm.ingest.trigger import Trigger
from edge_vlm.mqtt.inbox import Received
from tests.support import images

CONFIG = AppConfig.model_validate({"frigate": {"enabled": True}, "cameras": [
    {"id": "porch", "frigate": {"camera": "front", "labels": ["person", "car"], "zones": ["steps"], "min_score": 0.6,
                                "prompts": {"car": "Which car is it?"}}},
]})


def event(event_id: str, kind: str = "new", label: str = "person", zones: list[str] | None = None,
          score: float = 0.8, camera: str = "front") -> Received:
    after: dict[str, Any] = {"id": event_id, "camera": camera, "label": label, "top_score": score,
                             "current_zones": ["steps"] if zones is None else zones, "sub_label": ["Ann", 0.9]}
    payload = json.dumps({"type": kind, "before": {}, "after": after}).encode()
    return Received("frigate/events", payload, retain=False, received_at=time.monotonic(), wall_time=time.time(),
                    size=len(payload))


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
                           "zones": ["steps"], "score": 0.8}


def snapshot(label: str, payload: bytes, *, retain: bool = False, wall_time: float | None = None) -> Received:
    return Received(f"frigate/front/{label}/snapshot", payload, retain=retain, received_at=time.monotonic(),
                    wall_time=time.time() if wall_time is None else wall_time, size=len(payload))


def decode(data: bytes, camera: str, captured_at: float) -> Frame:
    return Frame(camera, images.scene(4, 4), (4, 4), data, "JPEG", captured_at)


def test_an_event_is_described_from_its_own_snapshot_never_an_older_retained_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frigate_snapshots, "SNAPSHOT_WAIT_S", 0.2)
    triggers: list[Trigger] = []
    FrigateEvents(CONFIG, triggers.append).handle(event("e1"))
    trigger = triggers[0]
    assert trigger.frigate is not None
    camera = CONFIG.cameras[0]
    store = FrigateSnapshots(CONFIG, decode)

    store.handle(snapshot("person", b"old", retain=True))  # from an earlier event: its time is unknown
    with pytest.raises(InputError) as missing:
        store.grab(camera, trigger.frigate, trigger.wall_time)
    assert missing.value.code == ErrorCode.NO_FRAME

    store.handle(snapshot("car", b"other label"))
    store.handle(snapshot("person", b"fresh"))
    frame = store.grab(camera, trigger.frigate, trigger.wall_time)
    assert (frame.camera, frame.encoded) == ("porch", b"fresh")
