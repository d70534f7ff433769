"""Frigate's review items without a broker (ingest.frigate_reviews): which become descriptions, when
one is described again, and whose snapshot pictures it; payloads as tests.support.frigate_payloads
builds them from each release's code."""

from __future__ import annotations

import time

import pytest

from edge_vlm.config.models import AppConfig
from edge_vlm.core.contracts import Origin
from edge_vlm.inference.prompts import placeholder_values
from edge_vlm.ingest import frigate_reviews
from edge_vlm.ingest.frigate import FrigateEvents
from edge_vlm.ingest.frigate_reviews import FrigateReviews, parse_review
from edge_vlm.ingest.trigger import Trigger
from edge_vlm.mqtt.inbox import Received
from tests.support.frigate_payloads import EVENTS_BESIDE, REVIEW_VERSIONS, event_message, review_message, review_segment

REVIEW_ID = "1718987129.308396-fqk5ka"


def received(topic: str, payload: bytes) -> Received:
    return Received(topic, payload, retain=False, received_at=time.monotonic(), wall_time=time.time(),
                    size=len(payload))


@pytest.mark.parametrize("version", REVIEW_VERSIONS)
def test_every_releases_review_item_reads_the_same_and_fills_the_placeholders(version: str) -> None:
    after = review_segment(version, REVIEW_ID, "front", "alert", {"e2": "car", "e1": "person-verified"},
                           sub_labels={"e1": "Bob"}, zones=("porch", "path"))
    review = parse_review(review_message(version, "update", None, after))
    assert (review.id, review.type, review.camera, review.severity, review.detections, sorted(review.objects),
            review.sub_labels, review.zones) == (
        REVIEW_ID, "update", "front", "alert", ("e1", "e2"), ["car", "person"], ("Bob",), ("porch", "path"))
    values = placeholder_values(camera="Porch", previous=None, language=None, event=review.summary(0))
    assert (sorted(values["label"].split(", ")), values["sub_label"], values["zones"]) == (
        ["car", "person"], "Bob", "porch, path")


def test_a_message_that_is_no_review_item_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    reviews = Reviews()
    reviews.handle(b'{"type": "new", "after": {"id": "x"}}')
    assert reviews.triggers == [] and "not a Frigate review item: KeyError" in caplog.text


class Reviews:
    """Review items and the events before them, handed over as the service wires them."""

    def __init__(self, cameras: list[dict[str, object]] | None = None) -> None:
        frigate = {"enabled": True, "api_url": "http://frigate:5000"}
        self.config = AppConfig.model_validate({"frigate": frigate, "cameras": cameras or [
            {"id": "porch", "frigate": {"camera": "front", "reviews": ["alert"], "labels": ["person", "car"],
                                        "prompts": {"car": "Which car?", "default": "Who is {sub_label}?"}}}]})
        self.triggers: list[Trigger] = []
        self.events = FrigateEvents(self.config, self.triggers.append)
        self.reviews = FrigateReviews(self.config, self.triggers.append, self.events.recent)

    def event(self, event_id: str, label: str = "person", version: str = "0.18", **fields: object) -> None:
        self.events.handle(received("frigate/events", event_message(version, "new", event_id, label=label,
                                                                    **fields)))  # type: ignore[arg-type]

    def handle(self, payload: bytes) -> None:
        self.reviews.handle(received("frigate/reviews", payload))

    def review(self, kind: str, severity: str, detections: dict[str, str], version: str = "0.18",
               **fields: object) -> None:
        after = review_segment(version, REVIEW_ID, "front", severity, detections, **fields)  # type: ignore[arg-type]
        self.handle(review_message(version, kind, None, after))

    def described(self) -> list[tuple[int, str | None, str | None]]:
        """(revision, the pictured event, the prompt) of each description asked for."""
        return [(t.revision, t.frigate.id if t.frigate else None, t.prompt) for t in self.triggers]


@pytest.mark.parametrize("version", REVIEW_VERSIONS)
def test_a_review_item_is_described_once_then_again_each_time_it_grows(version: str) -> None:
    reviews, events = Reviews(), EVENTS_BESIDE[version]
    reviews.event("e1", version=events)
    reviews.review("new", "detection", {"e1": "person"}, version)  # not an alert (yet): not for this camera
    reviews.review("update", "alert", {"e1": "person"}, version)
    reviews.review("update", "alert", {"e1": "person"}, version, zones=("porch",))  # a zone is no growth
    reviews.event("e2", label="car", version=events)
    reviews.review("update", "alert", {"e1": "person", "e2": "car"}, version)  # another object
    reviews.event("e1", sub_label="Bob", version=events)
    reviews.review("update", "alert", {"e1": "person-verified", "e2": "car"}, version, sub_labels={"e1": "Bob"})
    reviews.review("end", "alert", {"e1": "person-verified", "e2": "car"}, version, sub_labels={"e1": "Bob"},
                   ended=True)

    assert reviews.described() == [(0, "e1", "Who is {sub_label}?"), (1, "e1", "Who is {sub_label}?"),
                                    (2, "e1", "Who is {sub_label}?")]
    last = reviews.triggers[-1]
    assert (last.request_id, last.origin, last.camera) == (REVIEW_ID, Origin.FRIGATE, "porch")
    assert last.event == {"source": "frigate_review", "id": REVIEW_ID, "type": "update", "severity": "alert",
                          "label": "car, person", "sub_label": "Bob", "objects": ["car", "person"],
                          "sub_labels": ["Bob"], "zones": [], "detections": ["e1", "e2"], "revision": 2}


def test_a_review_item_is_described_again_at_most_max_revisions_times(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frigate_reviews, "MAX_REVISIONS", 1)
    reviews = Reviews()
    for n in range(1, 4):
        reviews.event(f"e{n}")
        reviews.review("update", "alert", {f"e{i}": "person" for i in range(1, n + 1)}, sub_labels={
            f"e{i}": f"name{i}" for i in range(1, n + 1)})
    assert [revision for revision, *_ in reviews.described()] == [0, 1]


def test_its_picture_is_a_named_object_first_else_the_best_scored_of_the_cameras_labels() -> None:
    reviews = Reviews([{"id": "porch", "frigate": {"camera": "front", "reviews": ["alert", "detection"],
                                                   "labels": ["person"]}}])
    reviews.event("dog", label="dog", score=0.99)
    reviews.event("low", score=0.6)
    reviews.event("high", score=0.8)
    reviews.review("new", "detection", {"dog": "dog", "low": "person", "high": "person"})
    reviews.event("low", score=0.6, sub_label="Ann")
    reviews.review("update", "alert", {"dog": "dog", "low": "person-verified", "high": "person"},
                   sub_labels={"low": "Ann"})
    assert [(revision, pictured) for revision, pictured, _ in reviews.described()] == [(0, "high"), (1, "low")]


def test_a_review_item_of_other_labels_or_zones_is_not_described() -> None:
    reviews = Reviews([{"id": "porch", "frigate": {"camera": "front", "reviews": ["alert"], "labels": ["person"],
                                                   "zones": ["porch"]}}])
    reviews.event("c1", label="car")
    reviews.review("new", "alert", {"c1": "car"}, zones=("porch",))
    reviews.event("p1")
    reviews.review("update", "alert", {"p1": "person"}, zones=("street",))
    assert reviews.triggers == []


def test_an_object_whose_messages_did_not_come_is_pictured_from_the_api_when_it_can_only_be_the_cameras() -> None:
    reviews = Reviews([{"id": "porch", "frigate": {"camera": "front", "reviews": ["alert"], "labels": ["person"]}}])
    reviews.review("new", "alert", {"unheard": "person"})
    reviews.event("car", label="car")
    reviews.review("update", "alert", {"unheard": "person", "car": "car"})  # another object: described again
    assert [(revision, pictured) for revision, pictured, _ in reviews.described()] == [(0, "unheard"), (1, "unheard")]
    assert [t.frigate.label for t in reviews.triggers if t.frigate] == ["person", "person"]

    mixed = Reviews([{"id": "porch", "frigate": {"camera": "front", "reviews": ["alert"], "labels": ["person"]}}])
    mixed.review("new", "alert", {"x1": "person", "x2": "car"})  # which unheard one is the person?
    mixed.event("car1", label="car")
    mixed.review("update", "alert", {"car1": "car", "car2": "car", "x3": "person"})  # car2 or x3?
    assert mixed.triggers == []


def test_an_item_without_objects_audio_or_a_manual_event_is_not_described() -> None:
    reviews = Reviews()
    after = review_segment("0.18", REVIEW_ID, "front", "alert", {})
    after["data"]["audio"] = ["speech"]
    reviews.handle(review_message("0.18", "new", None, after))
    assert reviews.triggers == []


def test_a_camera_on_review_items_does_not_describe_each_event() -> None:
    reviews = Reviews()
    reviews.event("e1", zones=("porch",))
    assert reviews.triggers == []


def test_a_camera_with_frigate_clip_asks_for_a_clip_of_each_review_item_and_event() -> None:
    clip: dict[str, object] = {"id": "porch", "clip": {},
                               "frigate": {"camera": "front", "reviews": ["alert"], "clip": True}}
    plain: dict[str, object] = {"id": "yard", "frigate": {"camera": "back"}}
    reviews = Reviews([clip, plain])
    reviews.event("e1")
    reviews.review("new", "alert", {"e1": "person"})
    reviews.events.handle(received("frigate/events", event_message("0.18", "new", "e9", camera="back")))
    assert [(t.camera, t.clip) for t in reviews.triggers] == [("porch", True), ("yard", None)]
