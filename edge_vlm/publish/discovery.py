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
from typing import Any

from edge_vlm.config.models import AppConfig
from edge_vlm.publish.discovery_camera import (
    camera_device_payload,
    camera_payload,
    control_components,
    event_components,
    field_components,
    stream_components,
)
from edge_vlm.publish.discovery_node import node_device_payload
from edge_vlm.topics import Outbound, Topics

# The builders, for tests that check one part of a payload.
__all__ = [
    "camera_device_payload",
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


def discovery_messages(config: AppConfig, topics: Topics) -> list[Outbound]:
    """Every discovery payload for this config: the daemon first, then each camera."""
    messages = [Outbound(topics.node_device_config, _payload(node_device_payload(config, topics)), True)]
    messages += [Outbound(topics.camera_device_config(camera.id), _payload(camera_payload(config, camera, topics)),
                          True) for camera in config.cameras]
    return messages


def removal_message(config_topic: str) -> Outbound:
    """Deletes a device and all its entities from Home Assistant."""
    return Outbound(config_topic, b"", True)
