"""A camera's Home Assistant device and its entities, linked to the daemon's with ``via_device``.

What the camera publishes (description, image, events, alerts, structured fields, stream state),
what Home Assistant can set on it (edge_vlm.ingest.controls) and its "Describe now" button.
``unique_id`` is ``edge_vlm_<node>_<camera>_<entity>``; ``default_entity_id`` leaves the node out.
"""

from __future__ import annotations

from typing import Any

from edge_vlm.camera_state import COOLDOWN_MAX_S, TEXT_MAX
from edge_vlm.config.automation import FieldSpec
from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.config.vlm import VlmBackendConfig
from edge_vlm.core.topics import (
    ALERTS,
    ATTRIBUTES,
    DESCRIBED_IMAGE,
    ERROR,
    EVENT,
    FIELDS,
    IMAGE,
    MOTION,
    STREAM,
    TRIGGER,
    Topics,
)
from edge_vlm.publish.discovery_device import MANUFACTURER, device_payload, entity_ids

# The payload HA's "Describe now" button sends to the trigger topic: an empty JSON request.
BUTTON_PAYLOAD = "{}"
# A description's life on <base>/<cam>/event (edge_vlm.service).
JOB_EVENT_TYPES = ["pending", "described", "failed", "superseded"]


def _names(camera: CameraConfig, topics: Topics) -> tuple[str, str]:
    """The camera's ``unique_id`` prefix and the stem of its entities' ``default_entity_id``."""
    return f"{topics.discovery_node}_{camera.id}", f"edge_vlm_{camera.id}"


def camera_device_payload(camera: CameraConfig, topics: Topics) -> dict[str, Any]:
    prefix, entity = _names(camera, topics)
    available = {"availability_topic": topics.status}
    device = {
        "ids": [prefix],
        "name": camera.display_name,
        "mf": MANUFACTURER,
        "mdl": "Described camera",
        "via_device": topics.discovery_node,
    }
    return device_payload(device, {
        "description": {
            # name null: the description is the camera device's main entity.
            "p": "sensor", "unique_id": f"{prefix}_description",
            **entity_ids("sensor", f"{entity}_description"), "name": None,
            # State and attributes from one message: they change together, once per description.
            "state_topic": topics.camera(camera.id, ATTRIBUTES), "value_template": "{{ value_json.description }}",
            "json_attributes_topic": topics.camera(camera.id, ATTRIBUTES),
            "icon": "mdi:text-box-outline", **available,
        },
        "image": {
            "p": "image", "unique_id": f"{prefix}_image",
            **entity_ids("image", f"{entity}_image"),
            "name": "Described image", "image_topic": topics.camera(camera.id, IMAGE),
            "content_type": "image/jpeg", **available,
        },
        "described_image": {
            # Changes with the description, never before: what a notification of it shows.
            "p": "image", "unique_id": f"{prefix}_described_image",
            **entity_ids("image", f"{entity}_described_image"),
            "name": "Last described image", "image_topic": topics.camera(camera.id, DESCRIBED_IMAGE),
            "content_type": "image/jpeg", **available,
        },
        "describe": {
            "p": "button", "unique_id": f"{prefix}_describe",
            **entity_ids("button", f"{entity}_describe"), "name": "Describe now",
            "command_topic": topics.camera(camera.id, TRIGGER), "payload_press": BUTTON_PAYLOAD,
            "icon": "mdi:text-recognition", **available,
        },
        "latency": {
            "p": "sensor", "unique_id": f"{prefix}_latency",
            **entity_ids("sensor", f"{entity}_latency"), "name": "Last latency",
            "state_topic": topics.camera(camera.id, ATTRIBUTES),
            "value_template": "{{ value_json.latency_ms }}", "unit_of_measurement": "ms",
            "device_class": "duration", "state_class": "measurement",
            "entity_category": "diagnostic", **available,
        },
        "last_error": {
            # What the last refused or failed input of this camera was: its code, message and id.
            "p": "sensor", "unique_id": f"{prefix}_last_error",
            **entity_ids("sensor", f"{entity}_last_error"), "name": "Last error",
            "state_topic": topics.camera(camera.id, ERROR), "value_template": "{{ value_json.error }}",
            "json_attributes_topic": topics.camera(camera.id, ERROR), "icon": "mdi:alert-circle-outline",
            "entity_category": "diagnostic", **available,
        },
    })


def control_components(config: AppConfig, camera: CameraConfig, topics: Topics) -> dict[str, Any]:
    """What Home Assistant can set per camera (edge_vlm.ingest.controls): state on ``…/<name>``, commands
    on ``…/<name>/set``."""
    prefix, entity = _names(camera, topics)

    def control(name: str, platform: str, title: str, icon: str, **values: Any) -> dict[str, Any]:
        return {
            "p": platform, "unique_id": f"{prefix}_{name}",
            **entity_ids(platform, f"{entity}_{name}"),
            "name": title, "entity_category": "config", "icon": icon, "state_topic": topics.camera(camera.id, name),
            "command_topic": topics.camera(camera.id, f"{name}/set"), "availability_topic": topics.status, **values,
        }

    return {
        "enabled": control("enabled", "switch", "Descriptions", "mdi:eye-check-outline",
                           payload_on="ON", payload_off="OFF"),
        "cooldown": control("cooldown", "number", "Cooldown", "mdi:timer-sand", min=0, max=COOLDOWN_MAX_S, step=1,
                            mode="box", unit_of_measurement="s"),
        "profile": control("profile", "select", "Prompt profile", "mdi:format-list-bulleted",
                           options=config.profile_names),
        "prompt": control("prompt", "text", "Custom prompt", "mdi:comment-edit-outline", min=0, max=TEXT_MAX,
                          mode="text"),
    }


def event_components(camera: CameraConfig, topics: Topics) -> dict[str, Any]:
    """Home Assistant event entities: each description's steps, and the camera's alerts."""
    prefix, entity = _names(camera, topics)
    available = {"availability_topic": topics.status}
    components = {
        "event": {
            "p": "event", "unique_id": f"{prefix}_event",
            **entity_ids("event", f"{entity}_description"),
            "name": "Description", "state_topic": topics.camera(camera.id, EVENT), "event_types": JOB_EVENT_TYPES,
            "icon": "mdi:text-box-search-outline", **available,
        },
    }
    if camera.alerts:
        components["alerts"] = {
            "p": "event", "unique_id": f"{prefix}_alerts", **entity_ids("event", f"{entity}_alert"),
            "name": "Alert", "state_topic": topics.camera(camera.id, ALERTS),
            "event_types": [rule.name for rule in camera.alerts], "icon": "mdi:alarm-light-outline", **available,
        }
    for rule in camera.alerts:
        components[f"alert_{rule.name}"] = {
            "p": "binary_sensor", "unique_id": f"{prefix}_alert_{rule.name}",
            **entity_ids("binary_sensor", f"{entity}_alert_{rule.name}"),
            "name": rule.display_name, "device_class": rule.device_class,
            **({"icon": rule.icon} if rule.icon else {}),
            "state_topic": topics.alert(camera.id, rule.name), "value_template": "{{ value_json.state }}",
            "payload_on": "ON", "payload_off": "OFF", "json_attributes_topic": topics.alert(camera.id, rule.name),
            **available,
        }
    return components


def field_components(config: AppConfig, camera: CameraConfig, topics: Topics) -> dict[str, Any]:
    """One entity per structured field any profile asks for (the profile is picked in Home Assistant,
    so every profile's fields). A field the current profile lacks renders empty, which Home Assistant
    ignores: the entity keeps its last state. ``value_json['x']``, not ``value_json.x``: Jinja would
    find a dict's method (``items``, ``keys``…) before the key."""
    prefix, entity = _names(camera, topics)
    fields: dict[str, FieldSpec] = {}
    for profile in config.profiles.values():
        fields.update({name: spec for name, spec in profile.fields.items() if name not in fields})
    components = {}
    for name, spec in fields.items():
        value = f"value_json['{name}']"
        keep = f" if '{name}' in value_json else ''"
        platform = "binary_sensor" if spec.type == "boolean" else "sensor"
        component: dict[str, Any] = {
            "p": platform, "unique_id": f"{prefix}_field_{name}",
            **entity_ids(platform, f"{entity}_{name}"),
            "name": name.replace("_", " ").capitalize(), "state_topic": topics.camera(camera.id, FIELDS),
            "availability_topic": topics.status,
        }
        if spec.type == "boolean":
            component.update(value_template=f"{{{{ ('ON' if {value} else 'OFF'){keep} }}}}", payload_on="ON",
                             payload_off="OFF")
        else:
            component["value_template"] = f"{{{{ {value}{keep} }}}}"
            if spec.type != "string":
                component["state_class"] = "measurement"
            if spec.unit is not None:
                component["unit_of_measurement"] = spec.unit
        components[f"field_{name}"] = component
    return components


def stream_components(camera: CameraConfig, topics: Topics) -> dict[str, Any]:
    """A persistent stream's own entities: connected or not, and the motion trigger's switch."""
    prefix, entity = _names(camera, topics)
    available = {"availability_topic": topics.status}
    return {
        "stream": {
            "p": "binary_sensor", "unique_id": f"{prefix}_stream",
            **entity_ids("binary_sensor", f"{entity}_stream"), "name": "Stream",
            "device_class": "connectivity", "entity_category": "diagnostic",
            "state_topic": topics.camera(camera.id, STREAM), "payload_on": "ON", "payload_off": "OFF", **available,
        },
        "motion": {
            "p": "switch", "unique_id": f"{prefix}_motion",
            **entity_ids("switch", f"{entity}_motion"),
            "name": "Motion trigger", "entity_category": "config", "icon": "mdi:motion-sensor",
            "state_topic": topics.camera(camera.id, MOTION), "command_topic": topics.camera(camera.id, f"{MOTION}/set"),
            "payload_on": "ON", "payload_off": "OFF", **available,
        },
    }


def npu_components(camera: CameraConfig, topics: Topics) -> dict[str, Any]:
    """How much NPU time the camera's jobs took in the last hour (the vlm backend's figures, from the
    daemon's diagnostics): which camera eats the board."""
    prefix, entity = _names(camera, topics)
    return {
        "npu_time": {
            "p": "sensor", "unique_id": f"{prefix}_npu_time", **entity_ids("sensor", f"{entity}_npu_time"),
            "name": "NPU time, last hour", "state_topic": topics.diagnostics,
            "value_template": f"{{{{ value_json.npu_s_last_hour.get('{camera.id}', 0) }}}}",
            "unit_of_measurement": "s", "device_class": "duration", "state_class": "measurement",
            "icon": "mdi:chip", "entity_category": "diagnostic", "availability_topic": topics.status,
        },
    }


def camera_payload(config: AppConfig, camera: CameraConfig, topics: Topics) -> dict[str, Any]:
    """The camera's device with every entity its config gives it."""
    payload = camera_device_payload(camera, topics)
    if isinstance(config.backend, VlmBackendConfig):  # only it measures NPU time
        payload["cmps"].update(npu_components(camera, topics))
    payload["cmps"].update(control_components(config, camera, topics))
    payload["cmps"].update(event_components(camera, topics))
    payload["cmps"].update(field_components(config, camera, topics))
    if camera.watches_stream:
        payload["cmps"].update(stream_components(camera, topics))
    return payload
