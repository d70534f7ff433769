"""Frigate's review items: what Frigate itself notifies about, described as one result each.

Frigate 0.14+ publishes ``<prefix>/reviews`` as JSON ``{type: new|update|end, before, after}``, where
``after`` is a review segment (frigate/review/maintainer.py, ``get_data``): its id, camera,
severity (``alert`` or ``detection``) and ``data`` with the tracked objects' event ids
(``detections``), their labels (``objects``: ``person-verified`` once a face is recognised, an
attribute such as ``amazon`` for a car it was seen on), recognised names (``sub_labels``) and zones.
An update comes when the item grows: another object, a name, a detection becoming an alert.

A camera with ``frigate.reviews`` describes each review item of those severities once it passes the
camera's label and zone filters, and again (the same id, ``event.revision`` counting up) each time
it grows, at most ``MAX_REVISIONS`` times. Its picture is the snapshot of one of its objects of the
camera's labels (a named one first, else the best scored), taken as an event's is
(edge_vlm.frames.sources.frigate): never another object's. An item without objects (audio, a manual
event) is not described.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.config.sources import FrigateCameraConfig
from edge_vlm.core.contracts import Origin
from edge_vlm.core.errors import TriggerError
from edge_vlm.ingest.frigate import FrigateEvent, Key, frigate_cameras, remember
from edge_vlm.ingest.trigger import Trigger
from edge_vlm.mqtt.inbox import Received

logger = logging.getLogger(__name__)

MAX_REVISIONS = 4  # descriptions of one review item after its first
VERIFIED = "-verified"  # Frigate's object label once a name was recognised on it

Growth = tuple[str, frozenset[str], frozenset[str]]  # severity, objects (event ids), names


@dataclass(frozen=True)
class FrigateReview:
    id: str
    type: str
    camera: str
    severity: str
    detections: tuple[str, ...]  # the tracked objects' event ids, sorted (oldest first: ids start with a time)
    objects: tuple[str, ...]  # their labels, sorted (a name's ``-verified`` taken off)
    sub_labels: tuple[str, ...]
    zones: tuple[str, ...]

    def summary(self, revision: int) -> dict[str, Any]:
        """The result's ``event``; ``label`` and ``sub_label`` fill a prompt's placeholders."""
        return {"source": "frigate_review", "id": self.id, "type": self.type, "severity": self.severity,
                "label": ", ".join(self.objects), "sub_label": ", ".join(self.sub_labels) or None,
                "objects": list(self.objects), "sub_labels": list(self.sub_labels), "zones": list(self.zones),
                "detections": list(self.detections), "revision": revision}

    @property
    def growth(self) -> Growth:
        """What makes it worth describing again when it changes."""
        return self.severity, frozenset(self.detections), frozenset(self.sub_labels)


def parse_review(payload: bytes) -> FrigateReview:
    try:
        message = json.loads(payload)
        after = message["after"]
        data = after["data"]

        def texts(key: str) -> tuple[str, ...]:
            return tuple(dict.fromkeys(str(v) for v in data.get(key) or [] if v))

        return FrigateReview(str(after["id"]), str(message["type"]), str(after["camera"]), str(after["severity"]),
                             tuple(sorted(texts("detections"))),
                             tuple(sorted({o.removesuffix(VERIFIED) for o in texts("objects")})),
                             texts("sub_labels"), texts("zones"))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TriggerError(f"not a Frigate review item: {type(exc).__name__}: {exc}") from None


def refusal(review: FrigateReview, config: FrigateCameraConfig, labels: set[str]) -> str | None:
    """Why ``review`` is not to be described for this camera, or None (``labels``: its objects'
    labels, with those of its events as their messages said)."""
    if not review.detections:
        return "it has no objects (audio, or a manual event)"
    if review.severity not in config.reviews:
        return f"severity {review.severity} not in {config.reviews}"
    if config.labels and not labels & set(config.labels):
        return f"objects {sorted(labels)} not in {config.labels}"
    if config.zones and not set(config.zones) & set(review.zones):
        return f"zones {list(review.zones)} not in {config.zones}"
    return None


class FrigateReviews:
    """Frigate's review items topic, as the router hands it over (the dispatcher thread)."""

    def __init__(self, config: AppConfig, submit: Callable[[Trigger], None],
                 recent: Callable[[str], FrigateEvent | None]) -> None:
        """``recent``: an event's newest message (ingest.frigate), to tell its objects apart."""
        self._submit = submit
        self._recent = recent
        self._cameras = frigate_cameras(config, reviews=True)  # one per Frigate camera (checked)
        self._described: dict[Key, tuple[Growth, int]] = {}  # -> what it had when last described, its revision

    def handle(self, message: Received) -> None:
        try:
            review = parse_review(message.payload)
        except TriggerError as exc:
            logger.warning("Ignoring a message on %s: %s", message.topic, exc)
            return
        for camera in self._cameras.get(review.camera, []):
            self._consider(camera, review, message)

    def _consider(self, camera: CameraConfig, review: FrigateReview, message: Received) -> None:
        config = camera.frigate
        assert config is not None
        heard = {d: e for d in review.detections if (e := self._recent(d)) is not None}
        pictured = self._pictured(config, review, heard)
        labels = {*review.objects, *(e.label for e in heard.values())}
        if (reason := refusal(review, config, labels) or (None if pictured else "no object of the camera's labels "
                                                          "can be told apart")) is not None:
            logger.debug("Frigate review %s on %s not described for %s: %s", review.id, review.camera, camera.id,
                         reason)
            return
        assert pictured is not None
        key = (camera.id, review.id)
        described = self._described.get(key)
        if described is not None and (described[0] == review.growth or described[1] >= MAX_REVISIONS):
            return
        revision = 0 if described is None else described[1] + 1
        remember(self._described, key, (review.growth, revision))
        prompts = config.prompts
        template = prompts.get(pictured.label) or prompts.get("default")  # the pictured object's label
        self._submit(Trigger(camera.id, Origin.FRIGATE, template, review.id, message.topic, message.received_at,
                             message.wall_time, review.summary(revision), frigate=pictured, revision=revision,
                             clip=config.clip or None))

    @staticmethod
    def _pictured(config: FrigateCameraConfig, review: FrigateReview,
                  heard: dict[str, FrigateEvent]) -> FrigateEvent | None:
        """Whose snapshot shows the review item: of the camera's labels, a named object first, then a
        moving one, then the best scored; else one whose messages did not come here (it began before
        the daemon started, or another board heard them), fetched by its id from Frigate's API, when
        it cannot be of another label."""
        wanted = [e for e in heard.values() if not config.labels or e.label in config.labels]
        if wanted:
            return max(wanted, key=lambda e: (e.sub_label is not None, not e.stationary, e.score))
        unheard = [d for d in review.detections if d not in heard]
        missing = sorted(set(review.objects) - {e.label for e in heard.values()})  # no heard object has these
        if len(unheard) == 1 and len(missing) == 1:
            label = missing[0]  # the one object not heard has the one label no heard one has
        elif not config.labels or set(review.objects) <= set(config.labels):
            label = (missing or [*review.objects, "object"])[0]  # any object of the item will do
        else:
            return None  # an unheard one may be of another label: whose picture?
        if not unheard or (config.labels and label not in config.labels):
            return None
        return FrigateEvent(unheard[0], review.type, review.camera, label, None, review.zones, 0.0)
