"""Home Assistant MQTT discovery payloads, built by pure functions.

Device-based discovery (Home Assistant 2024.11 and later): one retained payload per device.
The daemon is one device (``<prefix>/device/edge_vlm_<node>/config``); each camera is another,
linked to it with ``via_device``, at ``<prefix>/device/edge_vlm_<node>/<camera>/config``, so
that one wildcard subscription finds every camera this node ever announced and the ones no longer
configured can be removed with an empty retained payload.

``unique_id`` is ``edge_vlm_<node>_<camera>_<entity>``: derived, stable, never asked of the user.
"""

from __future__ import annotations

import json
import re
from typing import Any

from edge_vlm import __version__
from edge_vlm.config.automation import FieldSpec
from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.ingest.controls import COOLDOWN_MAX_S, TEXT_MAX
from edge_vlm.stats import STAGES
from edge_vlm.topics import (
    ALERTS,
    ATTRIBUTES,
    DESCRIPTION,
    EVENT,
    FIELDS,
    IMAGE,
    MOTION,
    STREAM,
    TRIGGER,
    Outbound,
    Topics,
)

ORIGIN = {"name": "edge_vlm", "sw": __version__}
MANUFACTURER = "edge_vlm"
# The payload HA's "Describe now" button sends to the trigger topic: an empty JSON request.
BUTTON_PAYLOAD = "{}"
# A description's life on <base>/<cam>/event (edge_vlm.service).
JOB_EVENT_TYPES = ["pending", "described", "failed", "superseded"]
# The daemon's "Last … time" sensors, one per stage of edge_vlm.stats.STAGES.
STAGE_NAMES = {"capture": "capture time", "preprocess": "preprocess time", "queued": "queue wait",
               "encoder": "encoder time", "prefill": "prefill time", "decode": "decode time",
               "publish": "publish time"}


def entity_id(platform: str, name: str) -> str:
    """A ``default_entity_id`` Home Assistant accepts: ids may hold ``-``, entity ids only ``[a-z0-9_]``
    (no ``__``, no ``_`` at either end)."""
    return f"{platform}.{re.sub(r'[^a-z0-9]+', '_', name.lower()).strip('_')}"


def _payload(value: dict[str, Any]) -> bytes:
    # Stable serialisation: the same config always gives the same bytes.
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def node_device_payload(config: AppConfig, topics: Topics) -> dict[str, Any]:
    node = topics.discovery_node
    available = {"availability_topic": topics.status}
    diagnostics = topics.diagnostics

    def counter(key: str, name: str, icon: str) -> dict[str, Any]:
        return {
            "p": "sensor", "unique_id": f"{node}_{key}", "default_entity_id": entity_id("sensor", f"{node}_{key}"),
            "name": name, "entity_category": "diagnostic", "state_topic": diagnostics,
            "value_template": f"{{{{ value_json.{key} }}}}", "state_class": "total_increasing",
            "icon": icon, **available,
        }

    def measured(key: str, name: str, value: str, unit: str, **more: Any) -> dict[str, Any]:
        """A value of the diagnostics JSON that is not always there (null: this board or backend
        has none): the entity is unavailable then, rather than showing a stale or made-up number."""
        return {
            "p": "sensor", "unique_id": f"{node}_{key}", "default_entity_id": entity_id("sensor", f"{node}_{key}"),
            "name": name, "entity_category": "diagnostic", "state_topic": diagnostics,
            "value_template": f"{{{{ value_json.{value} }}}}", "unit_of_measurement": unit,
            "state_class": "measurement", **more,
            "availability": [
                {"topic": topics.status},
                {"topic": diagnostics, "value_template": f"{{{{ 'online' if value_json.{value} is number else "
                                                         "'offline' }}"},
            ],
            "availability_mode": "all",
        }

    stages = {f"latency_{stage}": measured(f"latency_{stage}", f"Last {STAGE_NAMES[stage]}", f"stages_ms.{stage}",
                                           "ms", device_class="duration") for stage in STAGES}

    return {
        "dev": {
            "ids": [node],
            "name": f"edge_vlm {config.node_id}",
            "mf": MANUFACTURER,
            "mdl": "Camera describer",
            "sw": __version__,
        },
        "o": ORIGIN,
        "qos": 1,
        "cmps": {
            "status": {
                "p": "binary_sensor", "unique_id": f"{node}_status",
                "default_entity_id": entity_id("binary_sensor", f"{node}_status"), "name": "Status",
                "device_class": "connectivity", "entity_category": "diagnostic",
                "state_topic": topics.status, "payload_on": "online", "payload_off": "offline",
            },
            "model": {
                "p": "binary_sensor", "unique_id": f"{node}_model",
                "default_entity_id": entity_id("binary_sensor", f"{node}_model"),
                "name": "Model", "device_class": "running", "entity_category": "diagnostic",
                "state_topic": topics.model, "value_template": "{{ value_json.state }}",
                "payload_on": "ready", "payload_off": "unavailable", "json_attributes_topic": topics.model,
                **available,
            },
            "backend": {
                "p": "sensor", "unique_id": f"{node}_backend",
                "default_entity_id": entity_id("sensor", f"{node}_backend"),
                "name": "Backend", "entity_category": "diagnostic", "state_topic": diagnostics,
                "value_template": "{{ value_json.backend }}", "icon": "mdi:chip", **available,
            },
            "queue_depth": {
                # Jobs waiting for the backend, not counting the one it runs.
                "p": "sensor", "unique_id": f"{node}_queue_depth",
                "default_entity_id": entity_id("sensor", f"{node}_queue_depth"), "name": "Jobs waiting",
                "entity_category": "diagnostic", "state_topic": diagnostics,
                "value_template": "{{ value_json.queue_depth }}", "state_class": "measurement",
                "icon": "mdi:tray-full", **available,
            },
            "jobs_done": counter("jobs_done", "Jobs done", "mdi:check-circle-outline"),
            "jobs_failed": counter("jobs_failed", "Jobs failed", "mdi:alert-circle-outline"),
            "jobs_coalesced": counter("jobs_coalesced", "Jobs coalesced", "mdi:call-merge"),
            "jobs_skipped": counter("jobs_skipped", "Jobs skipped", "mdi:debug-step-over"),
            "inputs_refused": counter("inputs_refused", "Inputs refused", "mdi:cancel"),
            "latency": {
                "p": "sensor", "unique_id": f"{node}_latency",
                "default_entity_id": entity_id("sensor", f"{node}_latency"),
                "name": "Last latency", "entity_category": "diagnostic", "state_topic": diagnostics,
                "value_template": "{{ value_json.last_latency_ms }}", "unit_of_measurement": "ms",
                "device_class": "duration", "state_class": "measurement", **available,
            },
            **stages,
            "npu_load": measured("npu_load", "NPU load", "npu_load", "%", icon="mdi:gauge",
                                 json_attributes_topic=diagnostics,
                                 json_attributes_template="{{ (value_json.npu_load_cores or {}) | tojson }}"),
            "soc_temperature": measured("soc_temperature", "SoC temperature", "soc_temperature_c", "°C",
                                        device_class="temperature"),
            "memory": measured("memory", "Memory", "memory_mib", "MiB", device_class="data_size"),
            "worker_memory": measured("worker_memory", "Inference worker memory", "worker_memory_mib", "MiB",
                                      device_class="data_size"),
        },
    }


def camera_device_payload(camera: CameraConfig, topics: Topics) -> dict[str, Any]:
    prefix = f"{topics.discovery_node}_{camera.id}"
    entity = f"edge_vlm_{camera.id}"
    available = {"availability_topic": topics.status}
    return {
        "dev": {
            "ids": [prefix],
            "name": camera.display_name,
            "mf": MANUFACTURER,
            "mdl": "Described camera",
            "via_device": topics.discovery_node,
        },
        "o": ORIGIN,
        "qos": 1,
        "cmps": {
            "description": {
                # name null: the description is the camera device's main entity.
                "p": "sensor", "unique_id": f"{prefix}_description",
                "default_entity_id": entity_id("sensor", f"{entity}_description"), "name": None,
                "state_topic": topics.camera(camera.id, DESCRIPTION),
                "json_attributes_topic": topics.camera(camera.id, ATTRIBUTES),
                "icon": "mdi:text-box-outline", **available,
            },
            "image": {
                "p": "image", "unique_id": f"{prefix}_image",
                "default_entity_id": entity_id("image", f"{entity}_image"),
                "name": "Described image", "image_topic": topics.camera(camera.id, IMAGE),
                "content_type": "image/jpeg", **available,
            },
            "describe": {
                "p": "button", "unique_id": f"{prefix}_describe",
                "default_entity_id": entity_id("button", f"{entity}_describe"), "name": "Describe now",
                "command_topic": topics.camera(camera.id, TRIGGER), "payload_press": BUTTON_PAYLOAD,
                "icon": "mdi:text-recognition", **available,
            },
            "latency": {
                "p": "sensor", "unique_id": f"{prefix}_latency",
                "default_entity_id": entity_id("sensor", f"{entity}_latency"), "name": "Last latency",
                "state_topic": topics.camera(camera.id, ATTRIBUTES),
                "value_template": "{{ value_json.latency_ms }}", "unit_of_measurement": "ms",
                "device_class": "duration", "state_class": "measurement",
                "entity_category": "diagnostic", **available,
            },
        },
    }


def control_components(config: AppConfig, camera: CameraConfig, topics: Topics) -> dict[str, Any]:
    """What Home Assistant can set per camera (edge_vlm.ingest.controls): state on ``…/<name>``, commands
    on ``…/<name>/set``."""
    prefix = f"{topics.discovery_node}_{camera.id}"
    entity = f"edge_vlm_{camera.id}"

    def control(name: str, platform: str, title: str, icon: str, **values: Any) -> dict[str, Any]:
        return {
            "p": platform, "unique_id": f"{prefix}_{name}",
            "default_entity_id": entity_id(platform, f"{entity}_{name}"),
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
    prefix = f"{topics.discovery_node}_{camera.id}"
    entity = f"edge_vlm_{camera.id}"
    available = {"availability_topic": topics.status}
    components = {
        "event": {
            "p": "event", "unique_id": f"{prefix}_event",
            "default_entity_id": entity_id("event", f"{entity}_description"),
            "name": "Description", "state_topic": topics.camera(camera.id, EVENT), "event_types": JOB_EVENT_TYPES,
            "icon": "mdi:text-box-search-outline", **available,
        },
    }
    if camera.alerts:
        components["alerts"] = {
            "p": "event", "unique_id": f"{prefix}_alerts", "default_entity_id": entity_id("event", f"{entity}_alert"),
            "name": "Alert", "state_topic": topics.camera(camera.id, ALERTS),
            "event_types": [rule.name for rule in camera.alerts], "icon": "mdi:alarm-light-outline", **available,
        }
    for rule in camera.alerts:
        components[f"alert_{rule.name}"] = {
            "p": "binary_sensor", "unique_id": f"{prefix}_alert_{rule.name}",
            "default_entity_id": entity_id("binary_sensor", f"{entity}_alert_{rule.name}"),
            "name": f"Alert {rule.name}",
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
    prefix = f"{topics.discovery_node}_{camera.id}"
    entity = f"edge_vlm_{camera.id}"
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
            "default_entity_id": entity_id(platform, f"{entity}_{name}"),
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
    prefix = f"{topics.discovery_node}_{camera.id}"
    entity = f"edge_vlm_{camera.id}"
    available = {"availability_topic": topics.status}
    return {
        "stream": {
            "p": "binary_sensor", "unique_id": f"{prefix}_stream",
            "default_entity_id": entity_id("binary_sensor", f"{entity}_stream"), "name": "Stream",
            "device_class": "connectivity", "entity_category": "diagnostic",
            "state_topic": topics.camera(camera.id, STREAM), "payload_on": "ON", "payload_off": "OFF", **available,
        },
        "motion": {
            "p": "switch", "unique_id": f"{prefix}_motion",
            "default_entity_id": entity_id("switch", f"{entity}_motion"),
            "name": "Motion trigger", "entity_category": "config", "icon": "mdi:motion-sensor",
            "state_topic": topics.camera(camera.id, MOTION), "command_topic": topics.camera(camera.id, f"{MOTION}/set"),
            "payload_on": "ON", "payload_off": "OFF", **available,
        },
    }


def discovery_messages(config: AppConfig, topics: Topics) -> list[Outbound]:
    """Every discovery payload for this config: the daemon first, then each camera."""
    messages = [Outbound(topics.node_device_config, _payload(node_device_payload(config, topics)), True)]
    for camera in config.cameras:
        payload = camera_device_payload(camera, topics)
        payload["cmps"].update(control_components(config, camera, topics))
        payload["cmps"].update(event_components(camera, topics))
        payload["cmps"].update(field_components(config, camera, topics))
        if camera.watches_stream:
            payload["cmps"].update(stream_components(camera, topics))
        messages.append(Outbound(topics.camera_device_config(camera.id), _payload(payload), True))
    return messages


def removal_message(config_topic: str) -> Outbound:
    """Deletes a device and all its entities from Home Assistant."""
    return Outbound(config_topic, b"", True)
