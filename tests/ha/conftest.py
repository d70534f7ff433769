"""A real Home Assistant per release for the whole session, and a daemon per test against its broker.

These tests run only with ``-m ha`` or ``EDGE_VLM_HA=1`` (``scripts/test-ha``): the first run installs
each release (minutes), and even a cached start takes 10-20 s, which the default run should not pay.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from edge_vlm.config.models import AppConfig
from edge_vlm.inference.backends import Backend
from edge_vlm.service import Service
from tests.conftest import app_config
from tests.support import ha
from tests.support.ha import HomeAssistant, Release
from tests.support.ha_websocket import HaWebSocket
from tests.support.mqtt import Recorder

NODE = "edge"  # every test's daemon is this node; each test removes its entities when it ends
BASE = "edge_vlm"  # the documented topics; each test clears its retained messages when it ends
DISCOVERY = {"prefix": "homeassistant", "ha_status_topic": "homeassistant/status"}


def _wanted(config: pytest.Config) -> bool:
    return os.environ.get("EDGE_VLM_HA") == "1" or re.search(r"\bha\b", config.getoption("markexpr") or "") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _wanted(config):
        return
    skip = pytest.mark.skip(reason="a real Home Assistant: run with -m ha or EDGE_VLM_HA=1 (scripts/test-ha)")
    for item in items:
        if item.get_closest_marker("ha") is not None:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if ha.REPORT:
        terminalreporter.section("Home Assistant")
        for line in ha.REPORT:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session", params=ha.releases(), ids=lambda release: f"ha{release.version}")
def home_assistant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HomeAssistant]:
    """Home Assistant ``release`` and its mosquitto, started once for every test that uses it."""
    release: Release = request.param
    if (why := release.unavailable()) is not None:
        pytest.skip(why)
    hass = ha.start(release, tmp_path_factory.mktemp(f"ha-{release.version}"))
    ha.REPORT.append(f"{release.version}: started in {hass.start_s:.1f} s "
                     f"({'installed before' if hass.installed_before else 'installed by this run'}); "
                     f"log {hass.log}")
    yield hass
    began = time.monotonic()
    hass.stop()
    ha.REPORT.append(f"{release.version}: stopped in {time.monotonic() - began:.1f} s")


@dataclass
class HaDaemon:
    """The daemon (the real Service, opencv backend) as Home Assistant sees it."""

    hass: HomeAssistant
    config: AppConfig
    service: Service
    recorder: Recorder
    ws: HaWebSocket
    changes: int  # the websocket subscription to state_changed, from before the daemon started
    entities: dict[str, str] = field(default_factory=dict)  # unique_id -> entity_id
    log_start: int = 0

    def entity(self, key: str) -> str:
        """The entity id Home Assistant gave ``edge_vlm_<node>_<key>`` (e.g. ``front_door_description``)."""
        return self.entities[f"edge_vlm_{NODE}_{key}"]

    def topic(self, camera: str, leaf: str) -> str:
        return f"{self.config.base_topic}/{camera}/{leaf}"

    def state(self, key: str) -> dict[str, Any]:
        state = self.hass.state(self.entity(key))
        assert state is not None, f"Home Assistant has no state for {self.entity(key)}"
        return state

    def changes_of(self, entity_id: str, since: int = 0) -> list[dict[str, Any]]:
        """The new states ``entity_id`` went through, from the ``since``-th state_changed event on."""
        return [e["data"]["new_state"] for e in self.ws.events(self.changes)[since:]
                if e["data"]["entity_id"] == entity_id]

    def mark(self) -> int:
        """Where the state changes are now, for ``changes_of(…, since=mark)``."""
        return len(self.ws.events(self.changes))

    def wait_change(self, entity_id: str, where: Callable[[dict[str, Any]], bool], since: int,
                    what: str) -> dict[str, Any]:
        """The first new state of ``entity_id`` after ``since`` for which ``where`` holds."""
        def wanted(event: dict[str, Any]) -> bool:
            new = event["data"]["new_state"]
            return event["data"]["entity_id"] == entity_id and new is not None and where(new)

        event = self.ws.wait_event(self.changes, wanted, since=since, timeout=ha.WAIT_S, what=what)
        state: dict[str, Any] = event["data"]["new_state"]
        return state

    def problems(self) -> list[str]:
        """Home Assistant's warnings and errors since this test began (its templates' among them)."""
        lines = self.hass.log_text()[self.log_start:].splitlines()
        return [line for line in lines if re.search(r"^\S+ \S+ (WARNING|ERROR) ", line)]

    def mqtt_problems(self) -> list[str]:
        """Home Assistant's warnings and errors about MQTT since this test began."""
        return [line for line in self.problems() if "[homeassistant.components.mqtt" in line]


def _announced(recorder: Recorder) -> dict[str, dict[str, Any]]:
    """unique_id -> component, from every discovery payload of this node on the broker."""
    components: dict[str, dict[str, Any]] = {}
    for message in recorder.messages:
        if message.topic.endswith("/config") and message.payload:
            for component in json.loads(message.payload).get("cmps", {}).values():
                if set(component) != {"p"}:  # a platform alone removes an entity: none to wait for
                    components[component["unique_id"]] = component
    return components


def _registry(ws: HaWebSocket) -> dict[str, dict[str, Any]]:
    entries: list[dict[str, Any]] = ws.command("config/entity_registry/list")
    ours = f"edge_vlm_{NODE}_"
    return {e["unique_id"]: e for e in entries if e["platform"] == "mqtt" and e["unique_id"].startswith(ours)}


@pytest.fixture
def daemon_settings() -> dict[str, Any]:
    """What a test module changes in the daemon's configuration (it overrides this fixture)."""
    return {}


@pytest.fixture
def daemon_backend() -> Backend | None:
    """The backend a test module gives the daemon (None: the configured one, opencv)."""
    return None


@pytest.fixture
def ha_daemon(home_assistant: HomeAssistant, make_daemon: Callable[..., Service],
              make_recorder: Callable[..., Recorder], daemon_settings: dict[str, Any],
              daemon_backend: Backend | None) -> Iterator[HaDaemon]:
    """A daemon with two cameras whose every announced entity Home Assistant has registered; when the
    test ends its discovery and retained messages are cleared and Home Assistant has removed its
    entities again, so the next test's entities get the same ids and its settings the file's values."""
    hass = home_assistant
    config = app_config(hass.mqtt_port, **{"node_id": NODE, "base_topic": BASE, "discovery": DISCOVERY,
                                           **daemon_settings})
    discovery = f"{DISCOVERY['prefix']}/device/edge_vlm_{NODE}"
    recorder = make_recorder(hass.mqtt_port, [f"{config.base_topic}/#", f"{discovery}/#"])
    ws = hass.websocket()
    try:
        assert not _registry(ws), "entities of an earlier test are still in Home Assistant"
        changes = ws.subscribe("state_changed")
        log_start = len(hass.log_text())
        service = make_daemon(config, daemon_backend)
        for device in ["", *(f"/{camera.id}" for camera in config.cameras)]:
            recorder.wait_for(f"{discovery}{device}/config")
        announced = _announced(recorder)
        registry = ha.wait_until(lambda: (r := _registry(ws)).keys() >= announced.keys() and r, what=(
            f"Home Assistant {hass.release.version} registering the {len(announced)} entities announced"))
        entities = {unique_id: registry[unique_id]["entity_id"] for unique_id in announced}
        ha.wait_until(lambda: all(hass.state(e) is not None for e in entities.values()), what="their states")
        # the daemon's status and settings, retained, have reached Home Assistant: it shows the daemon online
        settled = [entities[f"edge_vlm_{NODE}_status"],
                   *(entities[f"edge_vlm_{NODE}_{camera.id}_enabled"] for camera in config.cameras)]
        ha.wait_until(lambda: all((hass.state(e) or {}).get("state") == "on" for e in settled),
                      what=f"{', '.join(settled)} on")
        yield HaDaemon(hass, config, service, recorder, ws, changes, entities, log_start)
        service.stop()
        topics = list(dict.fromkeys(m.topic for m in list(recorder.messages)))
        for topic in topics:
            if topic.startswith(discovery) and topic.endswith("/config"):
                recorder.publish(topic, b"", retain=True)
        ha.wait_until(lambda: not _registry(ws), what="Home Assistant removing this test's entities")
        for topic in topics:
            if topic.startswith(f"{config.base_topic}/"):
                recorder.publish(topic, b"", retain=True)
    finally:
        ws.close()
