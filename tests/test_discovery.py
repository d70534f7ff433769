"""Home Assistant discovery: exact payloads, invariants, and the lifecycle over a real broker."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from edge_vlm import __version__
from edge_vlm.config.models import AppConfig
from edge_vlm.config.vlm import VlmBackendConfig
from edge_vlm.core.topics import Topics
from edge_vlm.publish.discovery import (
    camera_device_payload,
    camera_payload,
    control_components,
    discovery_messages,
    event_components,
    field_components,
    node_device_payload,
    stale_camera_messages,
)
from edge_vlm.publish.discovery_node import measured
from edge_vlm.service import Service
from tests.conftest import app_config
from tests.support import images
from tests.support.broker import Mosquitto
from tests.support.mqtt import Recorder

CONFIG = AppConfig.model_validate({
    "node_id": "garage-board",
    "cameras": [{"id": "front_door", "name": "Front door"}, {"id": "back_yard"}],
})
TOPICS = Topics.from_config(CONFIG)
AVAILABLE = {"availability_topic": "edge_vlm/garage-board/status"}
ORIGIN = {"name": "edge_vlm", "sw": __version__}


def test_node_device_payload() -> None:
    diag = "edge_vlm/garage-board/diagnostics"
    node = "edge_vlm_garage-board"
    entity = "edge_vlm_garage_board"  # an entity id has no "-"

    def counter(key: str, name: str, icon: str) -> dict[str, object]:
        return {"p": "sensor", "unique_id": f"{node}_{key}", "default_entity_id": f"sensor.{entity}_{key}",
        "object_id": f"{entity}_{key}",
                "name": name, "entity_category": "diagnostic", "state_topic": diag,
                "value_template": f"{{{{ value_json.{key} }}}}", "state_class": "total_increasing",
                "icon": icon, **AVAILABLE}

    def stage(stage: str, name: str) -> dict[str, object]:
        return {"p": "sensor", "unique_id": f"{node}_latency_{stage}",
                "default_entity_id": f"sensor.{entity}_latency_{stage}",
                "object_id": f"{entity}_latency_{stage}", "name": name,
                "entity_category": "diagnostic", "state_topic": diag,
                "value_template": f"{{{{ value_json.stages_ms.{stage} }}}}", "unit_of_measurement": "ms",
                "state_class": "measurement", "device_class": "duration",
                "availability": [{"topic": "edge_vlm/garage-board/status"},
                                 {"topic": diag, "value_template":
                                  f"{{{{ 'online' if value_json.stages_ms.{stage} is number else 'offline' }}}}"}],
                "availability_mode": "all"}

    assert node_device_payload(CONFIG, TOPICS) == {
        "dev": {"ids": [node], "name": "edge_vlm garage-board", "mf": "edge_vlm",
                "mdl": "Camera describer", "sw": __version__},
        "o": ORIGIN,
        "qos": 1,
        "cmps": {
            "status": {"p": "binary_sensor", "unique_id": f"{node}_status",
                       "default_entity_id": f"binary_sensor.{entity}_status",
                       "object_id": f"{entity}_status", "name": "Status",
                       "device_class": "connectivity", "entity_category": "diagnostic",
                       "state_topic": "edge_vlm/garage-board/status", "payload_on": "online",
                       "payload_off": "offline"},
            "model": {"p": "binary_sensor", "unique_id": f"{node}_model",
                      "default_entity_id": f"binary_sensor.{entity}_model",
                      "object_id": f"{entity}_model", "name": "Model",
                      "device_class": "running", "entity_category": "diagnostic",
                      "state_topic": "edge_vlm/garage-board/model", "value_template": "{{ value_json.state }}",
                      "payload_on": "ready", "payload_off": "unavailable",
                      "json_attributes_topic": "edge_vlm/garage-board/model", **AVAILABLE},
            "backend": {"p": "sensor", "unique_id": f"{node}_backend",
                        "default_entity_id": f"sensor.{entity}_backend",
                        "object_id": f"{entity}_backend", "name": "Backend",
                        "entity_category": "diagnostic", "state_topic": diag,
                        "value_template": "{{ value_json.backend }}", "icon": "mdi:chip", **AVAILABLE},
            "queue_depth": {"p": "sensor", "unique_id": f"{node}_queue_depth",
                            "default_entity_id": f"sensor.{entity}_queue_depth",
                            "object_id": f"{entity}_queue_depth", "name": "Jobs waiting",
                            "entity_category": "diagnostic", "state_topic": diag,
                            "value_template": "{{ value_json.queue_depth }}", "state_class": "measurement",
                            "icon": "mdi:tray-full", **AVAILABLE},
            "jobs_done": counter("jobs_done", "Jobs done", "mdi:check-circle-outline"),
            "jobs_failed": counter("jobs_failed", "Jobs failed", "mdi:alert-circle-outline"),
            "jobs_coalesced": counter("jobs_coalesced", "Jobs coalesced", "mdi:call-merge"),
            "jobs_skipped": counter("jobs_skipped", "Jobs skipped", "mdi:debug-step-over"),
            "inputs_refused": counter("inputs_refused", "Inputs refused", "mdi:cancel"),
            "latency": {"p": "sensor", "unique_id": f"{node}_latency", "default_entity_id": f"sensor.{entity}_latency",
            "object_id": f"{entity}_latency",
                        "name": "Last latency", "entity_category": "diagnostic", "state_topic": diag,
                        "value_template": "{{ value_json.last_latency_ms }}", "unit_of_measurement": "ms",
                        "device_class": "duration", "state_class": "measurement", **AVAILABLE},
            "latency_capture": stage("capture", "Last capture time"),
            "latency_preprocess": stage("preprocess", "Last preprocess time"),
            "latency_queued": stage("queued", "Last queue wait"),
            # encoder, prefill and decode: the vlm backend's only (test_readings_are_announced_where_they_exist);
            # with opencv, their platform alone: removed from Home Assistant if an earlier version announced them
            "latency_encoder": {"p": "sensor"}, "latency_prefill": {"p": "sensor"}, "latency_decode": {"p": "sensor"},
            "latency_publish": stage("publish", "Last publish time"),
            "npu_load": {"p": "sensor", "unique_id": f"{node}_npu_load",
                         "default_entity_id": f"sensor.{entity}_npu_load",
                         "object_id": f"{entity}_npu_load", "name": "NPU load",
                         "entity_category": "diagnostic", "state_topic": diag,
                         "value_template": "{{ value_json.npu_load }}", "unit_of_measurement": "%",
                         "state_class": "measurement", "icon": "mdi:gauge", "json_attributes_topic": diag,
                         "json_attributes_template": "{{ (value_json.npu_load_cores or {}) | tojson }}",
                         "availability": [{"topic": "edge_vlm/garage-board/status"},
                                          {"topic": diag, "value_template":
                                           "{{ 'online' if value_json.npu_load is number else 'offline' }}"}],
                         "availability_mode": "all"},
            "soc_temperature": {"p": "sensor", "unique_id": f"{node}_soc_temperature",
                                "default_entity_id": f"sensor.{entity}_soc_temperature",
                                "object_id": f"{entity}_soc_temperature", "name": "SoC temperature",
                                "entity_category": "diagnostic", "state_topic": diag,
                                "value_template": "{{ value_json.soc_temperature_c }}", "unit_of_measurement": "°C",
                                "state_class": "measurement", "device_class": "temperature",
                                "availability": [{"topic": "edge_vlm/garage-board/status"},
                                                 {"topic": diag, "value_template": "{{ 'online' if "
                                                  "value_json.soc_temperature_c is number else 'offline' }}"}],
                                "availability_mode": "all"},
            "memory": {"p": "sensor", "unique_id": f"{node}_memory", "default_entity_id": f"sensor.{entity}_memory",
            "object_id": f"{entity}_memory",
                       "name": "Memory", "entity_category": "diagnostic", "state_topic": diag,
                       "value_template": "{{ value_json.memory_mib }}", "unit_of_measurement": "MiB",
                       "state_class": "measurement", "device_class": "data_size",
                       "availability": [{"topic": "edge_vlm/garage-board/status"},
                                        {"topic": diag, "value_template":
                                         "{{ 'online' if value_json.memory_mib is number else 'offline' }}"}],
                       "availability_mode": "all"},
            "worker_memory": {"p": "sensor", "unique_id": f"{node}_worker_memory",
                              "default_entity_id": f"sensor.{entity}_worker_memory",
                              "object_id": f"{entity}_worker_memory", "name": "Inference worker memory",
                              "entity_category": "diagnostic", "state_topic": diag,
                              "value_template": "{{ value_json.worker_memory_mib }}", "unit_of_measurement": "MiB",
                              "state_class": "measurement", "device_class": "data_size",
                              "availability": [{"topic": "edge_vlm/garage-board/status"},
                                               {"topic": diag, "value_template": "{{ 'online' if "
                                                "value_json.worker_memory_mib is number else 'offline' }}"}],
                              "availability_mode": "all"},
        },
    }


def test_camera_device_payload() -> None:
    prefix = "edge_vlm_garage-board_front_door"
    assert camera_device_payload(CONFIG.cameras[0], TOPICS) == {
        "dev": {"ids": [prefix], "name": "Front door", "mf": "edge_vlm", "mdl": "Described camera",
                "via_device": "edge_vlm_garage-board"},
        "o": ORIGIN,
        "qos": 1,
        "cmps": {
            "description": {"p": "sensor", "unique_id": f"{prefix}_description",
                            "default_entity_id": "sensor.edge_vlm_front_door_description",
                            "object_id": "edge_vlm_front_door_description", "name": None,
                            "state_topic": "edge_vlm/front_door/attributes",
                            "value_template": "{{ value_json.description }}",
                            "json_attributes_topic": "edge_vlm/front_door/attributes",
                            "icon": "mdi:text-box-outline", **AVAILABLE},
            "image": {"p": "image", "unique_id": f"{prefix}_image",
                      "default_entity_id": "image.edge_vlm_front_door_image",
                      "object_id": "edge_vlm_front_door_image", "name": "Described image",
                      "image_topic": "edge_vlm/front_door/image", "content_type": "image/jpeg", **AVAILABLE},
            "described_image": {"p": "image", "unique_id": f"{prefix}_described_image",
                                "default_entity_id": "image.edge_vlm_front_door_described_image",
                                "object_id": "edge_vlm_front_door_described_image",
                                "name": "Last described image", "image_topic": "edge_vlm/front_door/described_image",
                                "content_type": "image/jpeg", **AVAILABLE},
            "describe": {"p": "button", "unique_id": f"{prefix}_describe",
                         "default_entity_id": "button.edge_vlm_front_door_describe",
                         "object_id": "edge_vlm_front_door_describe", "name": "Describe now",
                         "command_topic": "edge_vlm/front_door/trigger", "payload_press": "{}",
                         "icon": "mdi:text-recognition", **AVAILABLE},
            "latency": {"p": "sensor", "unique_id": f"{prefix}_latency",
                        "default_entity_id": "sensor.edge_vlm_front_door_latency",
                        "object_id": "edge_vlm_front_door_latency", "name": "Last latency",
                        "state_topic": "edge_vlm/front_door/attributes",
                        "value_template": "{{ value_json.latency_ms }}", "unit_of_measurement": "ms",
                        "device_class": "duration", "state_class": "measurement",
                        "entity_category": "diagnostic", **AVAILABLE},
            "last_error": {"p": "sensor", "unique_id": f"{prefix}_last_error",
                           "default_entity_id": "sensor.edge_vlm_front_door_last_error",
                           "object_id": "edge_vlm_front_door_last_error", "name": "Last error",
                           "state_topic": "edge_vlm/front_door/error", "value_template": "{{ value_json.error }}",
                           "json_attributes_topic": "edge_vlm/front_door/error", "icon": "mdi:alert-circle-outline",
                           "entity_category": "diagnostic", **AVAILABLE},
        },
    }


def test_a_streaming_camera_also_has_its_stream_state_and_motion_switch() -> None:
    config = AppConfig.model_validate({
        "node_id": "garage-board", "cameras": [{"id": "gate", "source": {"type": "rtsp", "url": "rtsp://x/s"}}],
    })
    (_, camera) = discovery_messages(config, Topics.from_config(config))
    components = json.loads(camera.payload)["cmps"]
    prefix = "edge_vlm_garage-board_gate"
    assert components["stream"] == {
        "p": "binary_sensor", "unique_id": f"{prefix}_stream",
        "default_entity_id": "binary_sensor.edge_vlm_gate_stream",
        "object_id": "edge_vlm_gate_stream", "name": "Stream",
        "device_class": "connectivity", "entity_category": "diagnostic",
        "state_topic": "edge_vlm/gate/stream", "payload_on": "ON", "payload_off": "OFF", **AVAILABLE,
    }
    assert components["motion"] == {
        "p": "switch", "unique_id": f"{prefix}_motion", "default_entity_id": "switch.edge_vlm_gate_motion",
        "object_id": "edge_vlm_gate_motion",
        "name": "Motion trigger", "entity_category": "config", "icon": "mdi:motion-sensor",
        "state_topic": "edge_vlm/gate/motion", "command_topic": "edge_vlm/gate/motion/set",
        "payload_on": "ON", "payload_off": "OFF", **AVAILABLE,
    }
    assert "stream" not in camera_device_payload(CONFIG.cameras[0], TOPICS)["cmps"]  # an MQTT camera has none


def test_every_camera_has_its_controls() -> None:
    config = AppConfig.model_validate({
        "node_id": "garage-board", "profiles": {"parcels": {"prompt": "Any parcel at {camera}?"}},
        "cameras": [{"id": "front_door"}],
    })
    prefix, state = "edge_vlm_garage-board_front_door", "edge_vlm/front_door"

    def control(name: str, platform: str, title: str, icon: str) -> dict[str, object]:
        return {"p": platform, "unique_id": f"{prefix}_{name}",
                "default_entity_id": f"{platform}.edge_vlm_front_door_{name}",
                "object_id": f"edge_vlm_front_door_{name}", "name": title,
                "entity_category": "config", "icon": icon, "state_topic": f"{state}/{name}",
                "command_topic": f"{state}/{name}/set", **AVAILABLE}

    assert control_components(config, config.cameras[0], Topics.from_config(config)) == {
        "enabled": {**control("enabled", "switch", "Descriptions", "mdi:eye-check-outline"),
                    "payload_on": "ON", "payload_off": "OFF"},
        "cooldown": {**control("cooldown", "number", "Cooldown", "mdi:timer-sand"),
                     "min": 0, "max": 86400, "step": 1, "mode": "box", "unit_of_measurement": "s"},
        "profile": {**control("profile", "select", "Prompt profile", "mdi:format-list-bulleted"),
                    "options": ["default", "parcels"]},
        "prompt": {**control("prompt", "text", "Custom prompt", "mdi:comment-edit-outline"),
                   "min": 0, "max": 255, "mode": "text"},
    }


def test_events_and_alerts() -> None:
    config = AppConfig.model_validate({
        "node_id": "garage-board",
        "cameras": [{"id": "front_door", "alerts": [
            {"name": "person", "keywords": ["person"]},
            {"name": "crowd", "field": "people", "above": 3, "title": "Crowd at the Door", "device_class": "occupancy",
             "icon": "mdi:account-group"}]}],
    })
    prefix = "edge_vlm_garage-board_front_door"
    components = event_components(config.cameras[0], Topics.from_config(config))
    assert components == {
        "event": {"p": "event", "unique_id": f"{prefix}_event",
                  "default_entity_id": "event.edge_vlm_front_door_description",
                  "object_id": "edge_vlm_front_door_description", "name": "Description",
                  "state_topic": "edge_vlm/front_door/event",
                  "event_types": ["pending", "described", "failed", "superseded"],
                  "icon": "mdi:text-box-search-outline", **AVAILABLE},
        "alerts": {"p": "event", "unique_id": f"{prefix}_alerts",
                   "default_entity_id": "event.edge_vlm_front_door_alert",
                   "object_id": "edge_vlm_front_door_alert", "name": "Alert",
                   "state_topic": "edge_vlm/front_door/alerts", "event_types": ["person", "crowd"],
                   "icon": "mdi:alarm-light-outline", **AVAILABLE},
        "alert_person": {"p": "binary_sensor", "unique_id": f"{prefix}_alert_person",
                         "default_entity_id": "binary_sensor.edge_vlm_front_door_alert_person",
                         "object_id": "edge_vlm_front_door_alert_person", "name": "Person",
                         "device_class": "problem", "state_topic": "edge_vlm/front_door/alert/person",
                         "value_template": "{{ value_json.state }}", "payload_on": "ON", "payload_off": "OFF",
                         "json_attributes_topic": "edge_vlm/front_door/alert/person", **AVAILABLE},
        "alert_crowd": {"p": "binary_sensor", "unique_id": f"{prefix}_alert_crowd",
                        "default_entity_id": "binary_sensor.edge_vlm_front_door_alert_crowd",
                        "object_id": "edge_vlm_front_door_alert_crowd",
                        "name": "Crowd at the Door", "device_class": "occupancy", "icon": "mdi:account-group",
                        "state_topic": "edge_vlm/front_door/alert/crowd", "value_template": "{{ value_json.state }}",
                        "payload_on": "ON", "payload_off": "OFF",
                        "json_attributes_topic": "edge_vlm/front_door/alert/crowd", **AVAILABLE},
    }
    without_alerts = event_components(CONFIG.cameras[0], TOPICS)
    assert list(without_alerts) == ["event"]


def test_each_structured_field_is_an_entity() -> None:
    config = AppConfig.model_validate({
        "node_id": "garage-board",
        "backend": {"type": "vlm", "family": "qwen2-vl-2b", "encoder": {"type": "rknn", "model": "/m/enc.rknn"},
                    "llm": {"model": "/m/llm.rkllm"}},
        "profiles": {
            "porch": {"prompt": "Describe.", "fields": {
                "summary": {"type": "string", "description": "One sentence."},
                "people": {"type": "integer", "description": "How many people.", "minimum": 0,
                           "unit": "people"},
                "package": {"type": "boolean", "description": "A parcel is there."}}},
            "night": {"prompt": "Describe.", "fields": {
                "people": {"type": "number", "description": "Counted twice, announced once."}}},
        },
        "cameras": [{"id": "front_door"}],
    })
    prefix, state = "edge_vlm_garage-board_front_door", "edge_vlm/front_door/fields"

    def field(name: str, platform: str, title: str) -> dict[str, object]:
        return {"p": platform, "unique_id": f"{prefix}_field_{name}",
                "default_entity_id": f"{platform}.edge_vlm_front_door_{name}",
                "object_id": f"edge_vlm_front_door_{name}", "name": title,
                "state_topic": state, **AVAILABLE}

    def kept(name: str) -> str:
        return f"{{{{ value_json['{name}'] if '{name}' in value_json else '' }}}}"

    assert field_components(config, config.cameras[0], Topics.from_config(config)) == {
        "field_summary": {**field("summary", "sensor", "Summary"), "value_template": kept("summary")},
        "field_people": {**field("people", "sensor", "People"), "state_class": "measurement",
                         "unit_of_measurement": "people",
                         "value_template": kept("people")},
        "field_package": {**field("package", "binary_sensor", "Package"), "payload_on": "ON", "payload_off": "OFF",
                          "value_template": "{{ ('ON' if value_json['package'] else 'OFF') "
                                            "if 'package' in value_json else '' }}"},
    }


def test_default_camera_name_comes_from_its_id() -> None:
    assert camera_device_payload(CONFIG.cameras[1], TOPICS)["dev"]["name"] == "Back yard"


# What HA's discovery accepts (homeassistant/components/mqtt/discovery.py TOPIC_MATCHER).
HA_TOPIC = re.compile(r"^[^/]+/device/(?:[a-zA-Z0-9_-]+/)?[a-zA-Z0-9_-]+/config$")
# What HA takes as an entity id (homeassistant/core.py VALID_ENTITY_ID).
HA_ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")


def test_every_payload_has_unique_ids_valid_topics_and_stable_bytes() -> None:
    config = AppConfig.model_validate({"cameras": [{"id": f"cam-{i}"} for i in range(20)]})
    messages = discovery_messages(config, Topics.from_config(config))
    announced = [c for m in messages for c in json.loads(m.payload)["cmps"].values() if set(c) != {"p"}]
    unique_ids = [c["unique_id"] for c in announced]
    entity_ids = [c["default_entity_id"] for c in announced]
    assert len(unique_ids) == len(set(unique_ids)) == 18 + 20 * 11
    assert len(entity_ids) == len(set(entity_ids))
    assert all(HA_ENTITY_ID.match(e) for e in entity_ids), entity_ids  # "cam-1" is a valid camera id, not entity id
    assert all(HA_TOPIC.match(m.topic) and m.retain for m in messages)
    assert len({m.topic for m in messages}) == len(messages)
    assert discovery_messages(config, Topics.from_config(config)) == messages


Daemon = Callable[..., Service]
Recorders = Callable[..., Recorder]


@pytest.mark.mqtt
def test_home_assistant_restart_gets_discovery_again(broker: Mosquitto, make_daemon: Daemon,
                                                     make_recorder: Recorders) -> None:
    config = app_config(broker.port)
    recorder = make_recorder(broker.port, [f"{config.discovery.prefix}/#", f"{config.base_topic}/#"])
    # HA's birth message is retained: it reaches the daemon on subscribe, which is no news.
    recorder.publish(config.discovery.ha_status_topic, "online", retain=True)
    make_daemon(config)
    device_topic = f"{config.discovery.prefix}/device/edge_vlm_{config.node_id}/front_door/config"
    first = recorder.wait_for(device_topic)
    # Events are handled in order: once this error is out, the retained birth has been handled.
    recorder.publish(f"{config.base_topic}/nowhere/trigger", "{}")
    recorder.wait_for(f"{config.base_topic}/nowhere/error")
    assert len(recorder.on(device_topic)) == 1

    recorder.publish(config.discovery.ha_status_topic, "online")  # HA (re)started just now

    again = recorder.wait_for(device_topic, recorder.since(first.index + 1))
    assert again.payload == first.payload
    recorder.publish(config.discovery.ha_status_topic, b"", retain=True)


@pytest.mark.mqtt
def test_removed_camera_is_removed_from_home_assistant_on_next_start(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    config = app_config(broker.port, cameras=[{"id": "front_door"}, {"id": "old_shed", "alerts": [
        {"name": "cat", "keywords": ["cat"]}]}])
    shed = f"{config.base_topic}/old_shed"
    recorder = make_recorder(broker.port, [f"{config.discovery.prefix}/#", f"{shed}/#"])
    shed_topic = f"{config.discovery.prefix}/device/edge_vlm_{config.node_id}/old_shed/config"
    daemon = make_daemon(config)
    recorder.wait_for(shed_topic, lambda m: m.payload != b"")
    recorder.publish(f"{shed}/snapshot", images.jpeg(seed=7))
    # What the camera leaves retained on the broker: its frame, description, settings, alert.
    retained = [f"{shed}/{leaf}" for leaf in ("image", "description", "attributes", "enabled", "cooldown", "profile",
                                              "configured", "alert/cat")]  # (an empty prompt is no retained message)
    for topic in retained:
        recorder.wait_for(topic, lambda m: m.payload != b"")
    daemon.stop()

    make_daemon(config.model_copy(update={"cameras": config.cameras[:1]}))

    removal = recorder.wait_for(shed_topic, lambda m: m.payload == b"")
    for topic in retained:  # its retained topics are cleared too: a 27 kB image must not stay on the broker
        recorder.wait_for(topic, lambda m: m.payload == b"")
    front_topic = f"{config.discovery.prefix}/device/edge_vlm_{config.node_id}/front_door/config"
    assert recorder.on(front_topic)[-1].payload != b""
    # The broker no longer keeps a config for the removed camera.
    late = make_recorder(broker.port, [shed_topic, f"{shed}/#", front_topic])
    late.wait_for(front_topic)
    assert [m.topic for m in late.messages if m.topic != front_topic] == []
    assert removal.retain is False  # a fresh publish by the daemon, not a replay


def test_a_stale_camera_clears_only_its_own_retained_topics() -> None:
    config_topic = "homeassistant/device/edge_vlm_garage-board/shed/config"
    payload = json.dumps({"cmps": {
        "image": {"p": "image", "image_topic": "edge_vlm/shed/image"},
        "alert": {"p": "binary_sensor", "state_topic": "edge_vlm/shed/alert/cat",
                  "json_attributes_topic": "edge_vlm/shed/alert/cat"},
        "planted": {"p": "sensor", "state_topic": "zigbee2mqtt/front_lock"},  # not ours: never cleared
        "wild": {"p": "sensor", "state_topic": "edge_vlm/shed/#"},
    }}).encode()
    cleared = stale_camera_messages(config_topic, payload, "shed", TOPICS)
    assert [(m.topic, m.payload, m.retain) for m in cleared] == [
        (config_topic, b"", True), ("edge_vlm/shed/description", b"", True), ("edge_vlm/shed/configured", b"", True),
        ("edge_vlm/shed/image", b"", True), ("edge_vlm/shed/alert/cat", b"", True)]
    assert [m.topic for m in stale_camera_messages(config_topic, b"[[[not json", "shed", TOPICS)] == [
        config_topic, "edge_vlm/shed/description", "edge_vlm/shed/configured"]


def test_a_camera_shows_its_npu_time_with_the_vlm_backend_only() -> None:
    """Issue 13, point 6: the NPU seconds the camera's jobs took in the last hour, from the diagnostics."""
    fields: dict[str, Any] = {"type": "vlm"}  # only its type matters here
    vlm = CONFIG.model_copy(update={"backend": VlmBackendConfig.model_construct(**fields)})
    camera = CONFIG.cameras[0]
    assert camera_payload(vlm, camera, TOPICS)["cmps"]["npu_time"] == {
        "p": "sensor", "unique_id": f"edge_vlm_garage-board_{camera.id}_npu_time",
        "default_entity_id": f"sensor.edge_vlm_{camera.id}_npu_time", "object_id": f"edge_vlm_{camera.id}_npu_time",
        "name": "NPU time, last hour", "state_topic": "edge_vlm/garage-board/diagnostics",
        "value_template": f"{{{{ value_json.npu_s_last_hour.get('{camera.id}', 0) }}}}",
        "unit_of_measurement": "s", "device_class": "duration", "state_class": "measurement", "icon": "mdi:chip",
        "entity_category": "diagnostic", **AVAILABLE}
    assert "npu_time" not in camera_payload(CONFIG, camera, TOPICS)["cmps"]  # opencv: no NPU


def test_readings_are_announced_where_they_exist() -> None:
    """The vlm backend's stage times only with it; a board reading only where the board gives one:
    never an entity that stays unavailable."""
    fields: dict[str, Any] = {"type": "vlm"}  # only its type matters here
    vlm = CONFIG.model_copy(update={"backend": VlmBackendConfig.model_construct(**fields)})
    stages = {f"latency_{stage}" for stage in ("capture", "preprocess", "queued", "publish")}
    npu = {f"latency_{stage}" for stage in ("encoder", "prefill", "decode")}
    board = {"npu_load": 12.5, "soc_temperature_c": 47.2, "memory_mib": 100.0, "worker_memory_mib": 80.0}
    x86 = {**board, "npu_load": None, "soc_temperature_c": None}
    assert measured(CONFIG, x86) == stages | {"memory", "worker_memory"}
    assert measured(vlm, board) == stages | npu | {"npu_load", "soc_temperature", "memory", "worker_memory"}
    assert measured(CONFIG, None) == stages | {"npu_load", "soc_temperature", "memory", "worker_memory"}
    shown = node_device_payload(CONFIG, TOPICS, x86)["cmps"]
    assert [shown[key] for key in ("npu_load", "soc_temperature", "latency_encoder")] == [{"p": "sensor"}] * 3
    assert {"memory", "worker_memory", "latency_capture"} <= set(shown)
