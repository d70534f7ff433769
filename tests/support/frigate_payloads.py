"""Frigate's MQTT messages as each release publishes them, built field for field from Frigate's code
(github.com/blakeblackshear/frigate, at the tags named):

- ``<prefix>/events``: ``{"before", "after", "type"}`` where ``after`` is ``TrackedObject.to_dict()``;
  0.13: frigate/object_processing.py (v0.13.2), 0.15: frigate/track/tracked_object.py (v0.15.2),
  0.17: the same file at v0.17.2 (the newest release), 0.18: at v0.18.0-beta1, published by
  object_processing.py's
  ``update`` and ``end`` callbacks. ``sub_label`` and ``recognized_license_plate`` are Python tuples
  (name, score) there, so JSON lists.
- ``<prefix>/reviews``: ``{"type", "before", "after"}`` where ``after`` is
  ``PendingReviewSegment.get_data()`` of frigate/review/maintainer.py; 0.14 (v0.14.0: ``sub_labels``
  from a set), 0.15 (v0.15.2), 0.17 (v0.17.2) and 0.18 (v0.18.0-beta1): ``verified_objects``,
  ``thumb_time``, ``metadata``. An object with a recognised name is listed as ``<label>-verified``.
- ``<prefix>/<camera>/<label>/snapshot``: the JPEG itself.
"""

from __future__ import annotations

import json
import time
from typing import Any

EVENT_VERSIONS = ("0.13", "0.15", "0.17", "0.18")
REVIEW_VERSIONS = ("0.14", "0.15", "0.17", "0.18")
EVENTS_BESIDE = {"0.14": "0.13", "0.15": "0.15", "0.17": "0.17", "0.18": "0.18"}  # 0.14's to_dict is 0.13's


def tracked_object(version: str, event_id: str, camera: str, label: str, *, sub_label: str | None = None,
                   zones: tuple[str, ...] = (), score: float = 0.9, stationary: bool = False,
                   position_changes: int = 1, has_snapshot: bool = True, plate: str | None = None,
                   start_time: float | None = None, end_time: float | None = None) -> dict[str, Any]:
    """``TrackedObject.to_dict()`` of Frigate ``version``."""
    now = time.time()
    start = now - 1 if start_time is None else start_time
    box, region = [120, 80, 360, 470], [0, 0, 640, 640]
    after: dict[str, Any] = {
        "id": event_id, "camera": camera, "frame_time": now,
        "snapshot": {"frame_time": now, "box": box, "area": 93600, "region": region, "score": score,
                     "attributes": []},
        "label": label, "sub_label": None if sub_label is None else [sub_label, 0.93],
        "top_score": score, "false_positive": False, "start_time": start, "end_time": end_time,
        "score": score, "box": box, "area": 93600, "ratio": 0.61, "region": region,
    }
    if version != "0.13":
        after["active"] = not stationary
    after.update({
        "stationary": stationary, "motionless_count": 40 if stationary else 0, "position_changes": position_changes,
        "current_zones": list(zones), "entered_zones": list(zones), "has_clip": True, "has_snapshot": has_snapshot,
        "attributes": {"face": 0.86} if label == "person" else {}, "current_attributes": [],
    })
    if version == "0.13":
        return after
    after.update({"pending_loitering": False, "max_severity": "alert"})
    if version == "0.15":
        return after
    if version == "0.18":  # inserted after "snapshot" and "score" in its to_dict; order does not matter to JSON
        after.update({"snapshot_clean": True, "computed_score": score})
    after.update({"current_estimated_speed": 0, "average_estimated_speed": 0,
                  "velocity_angle": 0, "path_data": [[[0.4, 0.6], now]],
                  "recognized_license_plate": None if plate is None else [plate, 0.96]})
    return after


def event_message(version: str, kind: str, event_id: str, camera: str = "front", label: str = "person",
                  **fields: Any) -> bytes:
    """An ``<prefix>/events`` message: ``before`` is the object as last published (here the same)."""
    after = tracked_object(version, event_id, camera, label, **fields)
    return json.dumps({"before": after, "after": after, "type": kind}).encode()


def review_segment(version: str, review_id: str, camera: str, severity: str, detections: dict[str, str], *,
                   sub_labels: dict[str, str] | None = None, zones: tuple[str, ...] = (),
                   ended: bool = False) -> dict[str, Any]:
    """``PendingReviewSegment.get_data()`` of Frigate ``version``; ``detections``: event id -> label
    (``person-verified`` once named, as the maintainer stores it), ``sub_labels``: event id -> name."""
    start = float(review_id.split("-", maxsplit=1)[0])
    names = sub_labels or {}
    data: dict[str, Any] = {
        "detections": list(set(detections)), "objects": list(set(detections.values())),
        "sub_labels": list(set(names.values())) if version == "0.14" else list(names.values()),
        "zones": list(zones), "audio": [],
    }
    if version in ("0.17", "0.18"):
        data = {"detections": data["detections"], "objects": data["objects"],
                "verified_objects": [o for o in detections.values() if "-verified" in o],
                "sub_labels": data["sub_labels"], "zones": data["zones"], "audio": [], "thumb_time": start + 0.5,
                "metadata": None}
    return {"id": review_id, "camera": camera, "start_time": start, "end_time": start + 20 if ended else None,
            "severity": severity, "thumb_path": f"/media/frigate/clips/review/thumb-{camera}-{review_id}.webp",
            "data": data}


def review_message(version: str, kind: str, before: dict[str, Any] | None, after: dict[str, Any]) -> bytes:
    """A ``<prefix>/reviews`` message; a ``new`` one has ``before`` = ``after``."""
    return json.dumps({"type": kind, "before": after if before is None else before, "after": after}).encode()
