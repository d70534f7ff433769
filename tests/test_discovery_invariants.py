"""Invariants of the discovery payloads, over configs from plain to busy.

Every entity's ``unique_id`` is unique; every topic a payload names is a valid MQTT topic; every
topic an entity reads is one the daemon publishes (events on topics it never retains: Home
Assistant's event entity drops retained messages), and every topic it commands is one the daemon
subscribes to. What the daemon publishes and listens on is modelled here from edge_vlm.core.topics, as
the publishing code (publish.messages, publish.alerts, ingest.controls, cameras) uses it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.client import topic_matches_sub

from edge_vlm.config import AppConfig, load_config
from edge_vlm.config.models import CameraConfig
from edge_vlm.config.sources import RtspSourceConfig
from edge_vlm.core.topics import (
    ALERTS,
    ATTRIBUTES,
    DESCRIBED_IMAGE,
    DESCRIPTION,
    ERROR,
    EVENT,
    FIELDS,
    IMAGE,
    MOTION,
    RESULT,
    STREAM,
    TRIGGER,
    Topics,
)
from edge_vlm.publish.discovery import discovery_messages
from tests.test_discovery import CONFIG, HA_ENTITY_ID

EXAMPLE = Path(__file__).parent.parent / "config" / "edge_vlm.example.yaml"
# Home Assistant's settings per camera (edge_vlm.ingest.controls); MOTION too where the stream is watched.
SETTINGS = ("enabled", "cooldown", "profile", "prompt")
# Payload keys that name a topic Home Assistant reads, and the one it publishes commands to.
READ_KEYS = ("state_topic", "json_attributes_topic", "image_topic", "availability_topic", "topic")
COMMAND_KEYS = ("command_topic",)


def _house() -> AppConfig:
    """Several cameras of every kind: Frigate events, alert rules of each sort, structured profiles,
    RTSP streams with and without motion detection, an HTTP snapshot, a deeper base topic."""
    return AppConfig.model_validate({
        "node_id": "attic-board", "base_topic": "home/cams/edge", "discovery": {"prefix": "ha-disc"},
        "mqtt": {"shared_group": "boards"},
        "frigate": {"enabled": True, "topic_prefix": "nvr/frigate", "api_url": "http://frigate:5000"},
        "backend": {"type": "vlm", "family": "qwen2-vl-2b", "encoder": {"type": "rknn", "model": "/m/enc.rknn"},
                    "llm": {"model": "/m/llm.rkllm"}},
        "profiles": {
            "porch": {"prompt": "Describe {camera}.", "fields": {
                "summary": {"type": "string", "description": "One sentence."},
                "people": {"type": "integer", "description": "How many people.", "minimum": 0, "unit": "people"},
                "parcel": {"type": "boolean", "description": "A parcel lies there."}}},
            "yard": {"prompt": "Describe.", "fields": {
                "people": {"type": "integer", "description": "How many."},
                "car_count": {"type": "number", "description": "Cars.", "unit": "cars"}}},
            "plain": {"prompt": "What is there?"},
        },
        "cameras": [
            {"id": "front_door", "name": "Front door", "profile": "porch",
             "frigate": {"labels": ["person"], "snapshot": "http"},
             "alerts": [{"name": "person", "keywords": ["person", "visitor"]},
                        {"name": "crowd", "field": "people", "above": 3},
                        {"name": "door-open", "question": "Is the door open?"},
                        {"name": "night", "regex": "night|dark"}]},
            {"id": "gate", "source": {"type": "rtsp", "url": "rtsp://cam1/stream", "mode": "persistent"},
             "motion": {"enabled": True}, "alerts": [{"name": "parcel", "field": "parcel", "equals": True}]},
            {"id": "garage-2", "source": {"type": "rtsp", "url": "rtsp://cam2/stream", "mode": "on_demand"},
             "frigate": {"camera": "garage"}},
            {"id": "back_yard", "source": {"type": "http", "url": "http://cam3/snapshot.jpg"}, "profile": "yard"},
            {"id": "shed", "source": {"type": "rtsp", "url": "rtsp://cam4/stream"}},
        ],
    })


CONFIGS: dict[str, Callable[[], AppConfig]] = {
    "example": lambda: load_config(EXAMPLE).config,
    "two cameras": lambda: CONFIG,
    "house": _house,
    "twenty cameras": lambda: AppConfig.model_validate({"cameras": [{"id": f"cam-{i}"} for i in range(20)]}),
}


@pytest.fixture(params=list(CONFIGS))
def config(request: pytest.FixtureRequest) -> AppConfig:
    return CONFIGS[request.param]()


def components(config: AppConfig) -> Iterator[dict[str, Any]]:
    for message in discovery_messages(config, Topics.from_config(config)):
        # A component sent as its platform alone removes it from Home Assistant: no entity to check.
        yield from (c for c in json.loads(message.payload)["cmps"].values() if set(c) != {"p"})


def topic_values(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """Every (key, topic) in a payload, at any depth (``availability`` is a list of ``{topic: …}``)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from topic_values(v, k)
    elif isinstance(value, list):
        for item in value:
            yield from topic_values(item, key)
    elif key == "topic" or key.endswith("_topic"):
        yield key, value


def _settings(camera: CameraConfig) -> tuple[str, ...]:
    return (*SETTINGS, MOTION) if camera.watches_stream else SETTINGS


def published(config: AppConfig) -> dict[str, bool]:
    """Every topic the daemon publishes for ``config``, and whether retained: the status (the
    connection, its will), diagnostics and the model's state (stats), each camera's outcomes
    (publish.messages), alerts (publish.alerts), settings (ingest.controls) and stream state (cameras)."""
    topics = Topics.from_config(config)
    out = {topics.status: True, topics.diagnostics: True, topics.model: True}
    for camera in config.cameras:
        leaves = {DESCRIPTION: True, ATTRIBUTES: True, FIELDS: True, IMAGE: True, DESCRIBED_IMAGE: True,
                  RESULT: False, ERROR: False,
                  EVENT: False, **dict.fromkeys(_settings(camera), True)}
        if camera.alerts:
            leaves[ALERTS] = False
        if isinstance(camera.source, RtspSourceConfig):
            leaves[STREAM] = True
        out |= {topics.camera(camera.id, leaf): retain for leaf, retain in leaves.items()}
        out |= {topics.alert(camera.id, rule.name): True for rule in camera.alerts}
    return out


def command_filters(config: AppConfig) -> list[str]:
    """What the daemon subscribes to that Home Assistant commands: any camera's trigger (ingest.trigger_topics),
    each setting's ``…/set`` (ingest.controls)."""
    topics = Topics.from_config(config)
    return [topics.any_camera(TRIGGER),
            *(f"{topics.camera(c.id, s)}/set" for c in config.cameras for s in _settings(c))]


# What a topic published to may not be (MQTT 5.0 §4.7), and why.
TOPIC_RULES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("empty", lambda topic: not topic),
    ("longer than 65535 bytes", lambda topic: len(topic.encode()) > 65535),
    ("holds NUL", lambda topic: "\0" in topic),
    ("holds a wildcard", lambda topic: "+" in topic or "#" in topic),
    ("a $ topic is the broker's", lambda topic: topic.startswith("$")),
    ("an empty level", lambda topic: "" in topic.split("/")),
)


def topic_problems(topic: object) -> list[str]:
    if not isinstance(topic, str):
        return ["not a string"]
    return [why for why, broken in TOPIC_RULES if broken(topic)]


@pytest.mark.parametrize(("topic", "problems"), [
    ("edge_vlm/front_door/description", []),
    ("", ["empty", "an empty level"]),
    (None, ["not a string"]),
    ("a/" + "b" * 65535, ["longer than 65535 bytes"]),
    ("a/b\0c", ["holds NUL"]),
    ("a/+/c", ["holds a wildcard"]),
    ("a/#", ["holds a wildcard"]),
    ("$SYS/x", ["a $ topic is the broker's"]),
    ("a//c", ["an empty level"]),
    ("/a", ["an empty level"]),
    ("a/", ["an empty level"]),
])
def test_the_topic_rules(topic: object, problems: list[str]) -> None:
    assert topic_problems(topic) == problems


def test_every_unique_id_is_unique(config: AppConfig) -> None:
    unique_ids = [component["unique_id"] for component in components(config)]
    assert len(unique_ids) == len(set(unique_ids)) > 0


def test_every_entity_id_is_valid_and_unique(config: AppConfig) -> None:
    entity_ids = [component["default_entity_id"] for component in components(config)]
    assert [e for e in entity_ids if not HA_ENTITY_ID.match(e)] == []
    assert len(entity_ids) == len(set(entity_ids))


def test_availability_is_given_one_way(config: AppConfig) -> None:
    # Home Assistant refuses a component with both availability_topic and availability.
    assert [c["unique_id"] for c in components(config) if "availability_topic" in c and "availability" in c] == []


def test_every_camera_device_hangs_off_the_node(config: AppConfig) -> None:
    node, *cameras = [json.loads(m.payload)["dev"] for m in discovery_messages(config, Topics.from_config(config))]
    assert [camera["via_device"] for camera in cameras] == [node["ids"][0]] * len(config.cameras)
    identifiers = [i for device in [node, *cameras] for i in device["ids"]]
    assert len(identifiers) == len(set(identifiers)) == len(config.cameras) + 1


def test_every_topic_is_valid(config: AppConfig) -> None:
    messages = discovery_messages(config, Topics.from_config(config))
    named = [topic for component in components(config) for _, topic in topic_values(component)]
    named += [m.topic for m in messages]
    assert {topic: problems for topic in named if (problems := topic_problems(topic))} == {}
    assert len(named) > len(messages)


def test_every_topic_key_is_read_or_commanded(config: AppConfig) -> None:
    # A new kind of topic key (url_topic, mode_state_topic...) must be classified here first.
    keys = {key for component in components(config) for key, _ in topic_values(component)}
    assert keys <= {*READ_KEYS, *COMMAND_KEYS}
    assert {"state_topic", "command_topic", "availability_topic", "image_topic", "topic"} <= keys


def test_every_topic_an_entity_reads_is_published(config: AppConfig) -> None:
    ours = published(config)
    unread = {(component["unique_id"], topic) for component in components(config)
              for key, topic in topic_values(component) if key in READ_KEYS and topic not in ours}
    assert unread == set()


def test_event_entities_read_topics_that_are_never_retained(config: AppConfig) -> None:
    ours = published(config)
    events = [c for c in components(config) if c["p"] == "event"]
    assert len(events) >= len(config.cameras)
    assert {c["unique_id"]: c["state_topic"] for c in events if ours[c["state_topic"]]} == {}


def test_every_command_topic_is_subscribed_to_and_not_published(config: AppConfig) -> None:
    filters, ours = command_filters(config), published(config)
    commands = [(c["unique_id"], topic) for c in components(config)
                for key, topic in topic_values(c) if key in COMMAND_KEYS]
    assert len(commands) >= 5 * len(config.cameras)  # the button and four settings at least
    assert [(uid, t) for uid, t in commands if not any(topic_matches_sub(f, t) for f in filters)] == []
    assert [(uid, t) for uid, t in commands if t in ours] == []  # a command echoed back as a state

