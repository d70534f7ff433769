"""Home Assistant MQTT discovery messages, built by pure functions.

Device-based discovery (Home Assistant 2024.11 and later): one retained payload per device.
The daemon is one device (``<prefix>/device/edge_vlm_<node>/config``, discovery_node); each camera
is another (discovery_camera), linked to it with ``via_device``, at
``<prefix>/device/edge_vlm_<node>/<camera>/config``, so that one wildcard subscription finds every
camera this node ever announced and the ones no longer configured can be removed with an empty
retained payload.

``unique_id`` is ``edge_vlm_<node>_<camera>_<entity>``: derived, stable, never asked of the user.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from edge_vlm.config.models import AppConfig
from edge_vlm.core.topics import CONFIGURED, DESCRIPTION, Outbound, Topics
from edge_vlm.publish.discovery_camera import (
    camera_device_payload,
    camera_payload,
    control_components,
    event_components,
    field_components,
    stream_components,
)
from edge_vlm.publish.discovery_node import node_device_payload

# The builders, for tests that check one part of a payload.
__all__ = [
    "camera_device_payload",
    "camera_payload",
    "control_components",
    "discovery_messages",
    "event_components",
    "field_components",
    "node_device_payload",
    "removal_message",
    "stream_components",
]


def _payload(value: dict[str, Any]) -> bytes:
    # Stable serialisation: the same config always gives the same bytes.
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def discovery_messages(config: AppConfig, topics: Topics,
                       diagnostics: Mapping[str, Any] | None = None) -> list[Outbound]:
    """Every discovery payload for this config: the daemon first, then each camera. ``diagnostics``:
    the values this board reports; the board readings it has none of are not announced."""
    messages = [Outbound(topics.node_device_config, _payload(node_device_payload(config, topics, diagnostics)),
                         True)]
    messages += [Outbound(topics.camera_device_config(camera.id), _payload(camera_payload(config, camera, topics)),
                          True) for camera in config.cameras]
    return messages


def removal_message(config_topic: str) -> Outbound:
    """Deletes a device and all its entities from Home Assistant."""
    return Outbound(config_topic, b"", True)


MAX_STALE_CONFIG_BYTES = 1_000_000  # ours is a few kB for a camera with many fields and rules
# A camera's retained topics that no entity of its device names.
UNANNOUNCED_RETAINED = (DESCRIPTION, CONFIGURED)


def stale_camera_messages(config_topic: str, payload: bytes, camera: str, topics: Topics) -> list[Outbound]:
    """For a camera no longer configured: its device removed from Home Assistant, and its retained
    topics cleared from the broker (an image, a description, its settings, its alerts' states):
    those its device's entities read, as the stale discovery payload names them, and the ones no
    entity reads. Only topics under ``<base>/<camera>/`` are cleared, whatever the payload says."""
    own = f"{topics.base}/{camera}/"
    named: list[str] = [topics.camera(camera, leaf) for leaf in UNANNOUNCED_RETAINED]
    try:
        device = json.loads(payload) if len(payload) <= MAX_STALE_CONFIG_BYTES else {}
    except (RecursionError, ValueError):
        device = {}
    components = device.get("cmps") if isinstance(device, dict) else None
    for component in components.values() if isinstance(components, dict) else []:
        if isinstance(component, dict):
            named += [value for key, value in component.items()
                      if key in ("state_topic", "json_attributes_topic", "image_topic") and isinstance(value, str)]
    cleared = [topic for topic in dict.fromkeys(named)
               if topic.startswith(own) and "+" not in topic and "#" not in topic]
    return [removal_message(config_topic), *(Outbound(topic, b"", True) for topic in cleared)]
