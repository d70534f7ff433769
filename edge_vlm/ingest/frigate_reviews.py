"""Frigate's review items: what Frigate itself notifies about, described as one result each.

Frigate 0.14+ publishes ``<prefix>/reviews`` as JSON ``{type: new|update|end, before, after}``, where
``after`` is a review segment (frigate/review/maintainer.py, ``get_data``): its id, camera,
severity (``alert`` or ``detection``) and ``data`` with the tracked objects' event ids
(``detections``), their labels (``objects``: ``person-verified`` once a face is recognised),
recognised names (``sub_labels``) and zones. An update comes when the item grows: another object,
a name, a detection becoming an alert.

A camera with ``frigate.reviews`` describes each review item of those severities once it passes the
camera's label and zone filters, and again (the same id, ``event.revision`` counting up) each time
it grows, at most ``MAX_REVISIONS`` times. Its picture is the snapshot of one of its objects (a named
one first, else the best scored), taken as an event's is (edge_vlm.frames.sources.frigate): never
another object's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.config.sources import FrigateCameraConfig
from edge_vlm.core.contracts import Failure, Origin
from edge_vlm.core.errors import ErrorCode, TriggerError
from edge_vlm.ingest.frigate import REMEMBERED_EVENTS, FrigateEvent
from edge_vlm.ingest.trigger import Trigger
from edge_vlm.mqtt.inbox import Received

logger = logging.getLogger(__name__)

MAX_REVISIONS = 4  # descriptions of one review item after its first
VERIFIED = "-verified"  # Frigate's object label once a name was recognised on it


@dataclass(frozen=True)
class FrigateReview:
    id: str
    type: str
    camera: str
    severity: str
    detections: tuple[str, ...]  # the tracked objects' event ids
    objects: tuple[str, ...]  # their labels (a name's ``-verified`` taken off)
    sub_labels: tuple[str, ...]
    zones: tuple[str, ...]

    def summary(self, revision: int) -> dict[str, Any]:
        return {"source": "frigate_review", "id": self.id, "type": self.type, "severity": self.severity,
                "objects": list(self.objects), "sub_labels": list(self.sub_labels), "zones": list(self.zones),
                "detections": list(self.detections), "revision": revision}

    @property
    def growth(self) -> tuple[str, frozenset[str], frozenset[str]]:
        """What makes it worth describing again when it changes."""
        return self.severity, frozenset(self.objects), frozenset(self.sub_labels)


def parse_review(payload: bytes) -> FrigateReview:
    try:
        message = json.loads(payload)
        after = message["after"]
        data = after["data"]

        def texts(key: str) -> tuple[str, ...]:
            return tuple(dict.fromkeys(str(v) for v in data.get(key) or [] if v))

        return FrigateReview(str(after["id"]), str(message["type"]), str(after["camera"]), str(after["severity"]),
                             tuple(sorted(texts("detections"))), tuple(dict.fromkeys(
                                 o.removesuffix(VERIFIED) for o in texts("objects"))),
                             texts("sub_labels"), texts("zones"))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TriggerError(f"not a Frigate review item: {type(exc).__name__}: {exc}") from None


def refusal(review: FrigateReview, config: FrigateCameraConfig, labels: set[str]) -> str | None:
    """Why ``review`` is not to be described for this camera, or None (``labels``: its objects'
    labels, with those of its events as their messages said)."""
    if review.severity not in config.reviews:
        return f"severity {review.severity} not in {config.reviews}"
    if config.labels and not labels & set(config.labels):
        return f"objects {sorted(labels)} not in {config.labels}"
    if config.zones and not set(config.zones) & set(review.zones):
        return f"zones {list(review.zones)} not in {config.zones}"
    return None


class FrigateReviews:
    """Frigate's review items topic, as the router hands it over."""

    def __init__(self, config: AppConfig, submit: Callable[[Trigger], None], refuse: Callable[[Failure], None],
                 recent: Callable[[str], FrigateEvent | None]) -> None:
        """``refuse``: a review item that cannot be pictured; ``recent``: an event's newest message
        (ingest.frigate), to tell its objects apart."""
        self._submit = submit
        self._refuse = refuse
        self._recent = recent
        self._has_api = config.frigate.api_url is not None
        self._cameras: dict[str, list[CameraConfig]] = {}
        for camera in config.cameras:
            if camera.frigate is not None and camera.frigate.reviews:
                self._cameras.setdefault(camera.frigate.camera or camera.id, []).append(camera)
        # (camera, review id) -> what it had when last described, and how often it was described again
        self._described: dict[tuple[str, str], tuple[tuple[str, frozenset[str], frozenset[str]], int]] = {}

    def handle(self, message: Received) -> None:
        """The dispatcher thread."""
        try:
            review = parse_review(message.payload)
        except TriggerError as exc:
            logger.warning("Ignoring a message on %s: %s", message.topic, exc)
            return
        for camera in self._cameras.get(review.camera, []):
            self._consider(camera, review, message)

    def _consider(self, camera: CameraConfig, review: FrigateReview, message: Received) -> None:
        assert camera.frigate is not None
        events = [e for e in map(self._recent, review.detections) if e is not None]
        if (reason := refusal(review, camera.frigate, {*review.objects, *(e.label for e in events)})) is not None:
            logger.debug("Frigate review %s on %s not described for %s: %s", review.id, review.camera, camera.id,
                         reason)
            return
        key = (camera.id, review.id)
        described = self._described.get(key)
        if described is not None and (described[0] == review.growth or described[1] >= MAX_REVISIONS):
            return
        revision = 0 if described is None else described[1] + 1
        self._described.pop(key, None)
        self._described[key] = (review.growth, revision)
        if len(self._described) > REMEMBERED_EVENTS:
            del self._described[next(iter(self._described))]
        pictured = self._pictured(camera.frigate, review, events)
        if pictured is None:
            self._refuse(Failure(camera.id, ErrorCode.NO_FRAME, f"Frigate review item {review.id}: none of its "
                                 f"objects' event messages came (edge_vlm subscribed after they began?), so their "
                                 f"snapshots cannot be told apart (set frigate.api_url to fetch them from Frigate)",
                                 review.id, message.topic, origin=Origin.FRIGATE))
            return
        prompts = camera.frigate.prompts
        template = prompts.get(pictured.label) or prompts.get("default")  # the pictured object's label
        self._submit(Trigger(camera.id, Origin.FRIGATE, template, review.id, message.topic, message.received_at,
                             message.wall_time, review.summary(revision), frigate=pictured, revision=revision))

    def _pictured(self, config: FrigateCameraConfig, review: FrigateReview,
                  events: list[FrigateEvent]) -> FrigateEvent | None:
        """Whose snapshot shows the review item: a named object first, else the best scored of those
        the camera takes; one that sent no message only from Frigate's API."""
        wanted = [e for e in events if not config.labels or e.label in config.labels] or events
        if wanted:
            return max(wanted, key=lambda e: (e.sub_label is not None, not e.stationary, e.score))
        if not self._has_api or not review.detections:
            return None
        return FrigateEvent(review.detections[0], review.type, review.camera, (review.objects or ("object",))[0],
                            None, review.zones, 0.0)
