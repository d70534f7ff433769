"""The daemon against a real Home Assistant: what a user sees, read from Home Assistant's own API.

Every test runs on each release in tests.support.ha.releases() (the oldest this machine runs and
the newest): entities and their ids, a snapshot's description, the "Describe now" button on a
camera that can and cannot describe, and availability when the daemon stops (issue 12).
"""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path

import pytest

from tests.ha.conftest import DISCOVERY, NODE, HaDaemon
from tests.support import ha, images
from tests.support.notify import DaemonProcess, write_config

pytestmark = [
    pytest.mark.ha,
    # a start that installs takes minutes, a cached one 10-20 s; the waits in a test are bounded by ha.WAIT_S
    pytest.mark.timeout(int((ha.START_TIMEOUT_S if all(r.installed for r in ha.releases()) else ha.INSTALL_TIMEOUT_S)
                            + 120)),
]

# What docs/home-assistant.md documents, by unique_id suffix.
DOCUMENTED_IDS = {
    "front_door_description": "sensor.edge_vlm_front_door_description",
    "front_door_image": "image.edge_vlm_front_door_image",
    "front_door_described_image": "image.edge_vlm_front_door_described_image",
    "front_door_describe": "button.edge_vlm_front_door_describe",
    "front_door_event": "event.edge_vlm_front_door_description",
    "front_door_enabled": "switch.edge_vlm_front_door_enabled",
}


def _described(daemon: HaDaemon, snapshot: bytes, since: int) -> tuple[dict[str, object], dict[str, object]]:
    """Publish ``snapshot`` for front_door; its result, and the ``described`` step Home Assistant's
    event entity shows for it (which comes after the description and its attributes)."""
    daemon.recorder.publish(daemon.topic("front_door", "snapshot"), snapshot)
    result = daemon.recorder.wait_for(daemon.topic("front_door", "result"), daemon.recorder.since(since)).json()
    described = daemon.wait_change(
        daemon.entity("front_door_event"),
        lambda s: s["attributes"].get("event_type") == "described" and s["attributes"].get("id") == result["id"],
        since=0, what=f"the event entity's described step for {result['id']}")
    return result, described


def test_entities_of_the_node_and_each_camera_appear(ha_daemon: HaDaemon) -> None:
    daemon = ha_daemon
    version = daemon.hass.release.version
    devices = {d["id"]: d for d in daemon.ws.command("config/device_registry/list")}
    registry = {e["unique_id"]: e for e in daemon.ws.command("config/entity_registry/list")}
    node = next(d for d in devices.values() if ["mqtt", f"edge_vlm_{NODE}"] in d["identifiers"])
    for camera in daemon.config.cameras:
        device = next(d for d in devices.values() if ["mqtt", f"edge_vlm_{NODE}_{camera.id}"] in d["identifiers"])
        assert device["via_device_id"] == node["id"], f"{camera.id}'s device is not linked to the daemon's"
        for key in ("description", "image", "describe", "event", "enabled"):
            assert registry[f"edge_vlm_{NODE}_{camera.id}_{key}"]["device_id"] == device["id"]
    assert registry[f"edge_vlm_{NODE}_status"]["device_id"] == node["id"]
    assert daemon.state("status")["state"] == "on"
    assert daemon.state("front_door_enabled")["state"] == "on"

    # issue 12, finding 1: which ids each release gives (the summary at the end of the run lists them)
    table = sorted(daemon.entities.items())
    ha.REPORT.append(f"{version}: entity ids ({len(table)} entities, unique_id -> entity_id):")
    ha.REPORT.extend(f"  {version}  {unique_id:45} {entity_id}" for unique_id, entity_id in table)
    assert daemon.mqtt_problems() == []


def test_entity_ids_are_the_ones_the_readme_documents(ha_daemon: HaDaemon) -> None:
    """Issue 12, finding 1: the same ids on every release (object_id before 2025.10, default_entity_id
    after); before the fix, 2025.4.4 named them after the device (sensor.front_door, …)."""
    assert {key: ha_daemon.entity(key) for key in DOCUMENTED_IDS} == DOCUMENTED_IDS


def test_a_snapshot_shows_as_the_description_with_its_attributes_and_image(ha_daemon: HaDaemon) -> None:
    daemon = ha_daemon
    snapshot = images.sample("front_door")

    result, _ = _described(daemon, snapshot, since=0)

    sensor = ha.wait_until(lambda: (s := daemon.state("front_door_description"))["attributes"].get("id") == result["id"]
                           and s, what="the description sensor showing the result")
    assert sensor["state"] == result["description"] == "1 person; 1 face visible; daylight"
    attributes = sensor["attributes"]
    assert attributes["text"] == result["text"]
    assert attributes["prompt"] == result["prompt"]
    assert attributes["frame_time"] == result["frame_time"]
    assert attributes["latency_ms"] == result["latency_ms"]
    assert attributes["origin"] == "snapshot"
    # the picture a notification shows: Home Assistant's image entity serves the frame described
    described_image = daemon.recorder.wait_for(daemon.topic("front_door", "image")).payload
    picture = daemon.state("front_door_image")["attributes"]["entity_picture"]
    with urllib.request.urlopen(f"{daemon.hass.url}{picture}", timeout=ha.HTTP_TIMEOUT_S) as response:
        assert response.read() == described_image
    assert daemon.mqtt_problems() == []


def test_the_description_sensor_changes_once_per_description(ha_daemon: HaDaemon) -> None:
    """issue 12, finding 3: with the text and the attributes on two topics, the sensor changed twice, the
    first time with the previous description's attributes (an automation on it read stale values)."""
    daemon = ha_daemon
    sensor = daemon.entity("front_door_description")
    first, _ = _described(daemon, images.sample("front_door"), since=0)
    mark = daemon.mark()
    since = len(daemon.recorder.messages)

    second, _ = _described(daemon, images.sample("garden_night"), since=since)

    assert second["description"] != first["description"], "two different texts, or a double change cannot show"
    changes = [(s["state"], s["attributes"].get("id")) for s in daemon.changes_of(sensor, since=mark)]
    assert changes == [(second["description"], second["id"])]


def test_describe_now_describes_the_last_frame(ha_daemon: HaDaemon) -> None:
    daemon = ha_daemon
    first, _ = _described(daemon, images.sample("front_door"), since=0)
    mark = daemon.mark()

    daemon.hass.call("button", "press", entity_id=daemon.entity("front_door_describe"))

    event = daemon.entity("front_door_event")
    described = daemon.wait_change(event, lambda s: s["attributes"].get("event_type") == "described"
                                   and s["attributes"].get("origin") == "trigger", since=mark,
                                   what="a described step for the button press")
    pressed = described["attributes"]["id"]
    result = daemon.recorder.wait_for(daemon.topic("front_door", "result"), lambda m: m.json()["id"] == pressed).json()
    assert pressed != first["id"]
    assert result["frame_time"] == first["frame_time"]  # the same frame, described again
    sensor = ha.wait_until(lambda: (s := daemon.state("front_door_description"))["attributes"].get("id") == pressed
                           and s, what="the description of the button press")
    assert sensor["state"] == result["description"]


def test_describe_now_without_a_frame_shows_a_failed_step(ha_daemon: HaDaemon) -> None:
    """issue 12, finding 2: a refused press showed nothing in Home Assistant."""
    daemon = ha_daemon
    mark = daemon.mark()

    daemon.hass.call("button", "press", entity_id=daemon.entity("front_door_describe"))

    failed = daemon.wait_change(daemon.entity("front_door_event"),
                                lambda s: s["attributes"].get("event_type") == "failed", since=mark,
                                what="a failed step for a press with no frame")
    assert failed["attributes"]["error"] == "no_frame"
    assert failed["attributes"]["message"]


def test_describe_now_on_a_switched_off_camera_shows_a_failed_step(ha_daemon: HaDaemon) -> None:
    """issue 12, finding 2: a press on a disabled camera was refused on the error topic only."""
    daemon = ha_daemon
    _described(daemon, images.sample("front_door"), since=0)
    switch = daemon.entity("front_door_enabled")

    daemon.hass.call("switch", "turn_off", entity_id=switch)
    ha.wait_until(lambda: daemon.state("front_door_enabled")["state"] == "off", what=f"{switch} off")
    daemon.recorder.wait_for(daemon.topic("front_door", "enabled"), lambda m: m.payload == b"OFF")
    mark = daemon.mark()
    daemon.hass.call("button", "press", entity_id=daemon.entity("front_door_describe"))

    failed = daemon.wait_change(daemon.entity("front_door_event"),
                                lambda s: s["attributes"].get("event_type") == "failed", since=mark,
                                what="a failed step for a press on a switched-off camera")
    assert failed["attributes"]["error"] == "camera_disabled"
    assert failed["attributes"]["origin"] == "trigger"


def _all_unavailable(daemon: HaDaemon) -> bool:
    """Every entity of the daemon unavailable in Home Assistant, its status off."""
    status = daemon.entity("status")
    states = {s["entity_id"]: s["state"] for s in daemon.hass.states()}
    return all(states.get(e) == ("off" if e == status else "unavailable") for e in daemon.entities.values())


def _available(daemon: HaDaemon) -> set[str]:
    """The daemon's entities Home Assistant shows available (a reading with no value yet is not)."""
    states = {s["entity_id"]: s["state"] for s in daemon.hass.states()}
    return {e for e in daemon.entities.values() if states.get(e) not in (None, "unavailable")}


def test_entities_become_unavailable_when_the_daemon_stops(ha_daemon: HaDaemon) -> None:
    daemon = ha_daemon
    assert daemon.state("status")["state"] == "on"

    daemon.service.stop()

    ha.wait_until(lambda: _all_unavailable(daemon), what="every entity unavailable (the status off)")


def test_the_service_process_goes_unavailable_on_sigterm_and_on_a_crash(ha_daemon: HaDaemon, tmp_path: Path) -> None:
    """``edge-vlm run`` as systemd runs it: stopped (SIGTERM, exit 0), or killed (SIGKILL: the broker
    sends its last will)."""
    daemon = ha_daemon
    available = _available(daemon)
    assert daemon.entity("status") in available and daemon.entity("front_door_description") in available
    daemon.service.stop()
    ha.wait_until(lambda: _all_unavailable(daemon), what="every entity unavailable")
    config_file = tmp_path / "edge_vlm.yaml"
    write_config(config_file, daemon.config)
    for signum in (signal.SIGKILL, signal.SIGTERM):
        process = DaemonProcess(config_file, tmp_path / f"daemon-{signum.name}.log")
        try:
            ha.wait_until(lambda: _available(daemon) == available, what=f"the entities available again ({signum.name})")

            process.signal(signum)

            assert process.wait() == (0 if signum == signal.SIGTERM else -signal.SIGKILL), process.text()
            ha.wait_until(lambda: _all_unavailable(daemon), what=f"every entity unavailable after {signum.name}")
        finally:
            process.close()


def test_a_reading_this_board_cannot_have_is_removed_when_an_earlier_version_announced_it(
        ha_daemon: HaDaemon) -> None:
    """Issue 12, finding 5: on a machine without the vlm backend, the encoder time is no entity, even
    where an earlier edge_vlm announced one (it was unavailable forever)."""
    daemon = ha_daemon
    topic = f"{DISCOVERY['prefix']}/device/edge_vlm_{NODE}/config"
    node = daemon.recorder.wait_for(topic).json()
    assert node["cmps"]["latency_encoder"] == {"p": "sensor"}  # not announced by this daemon
    encoder = f"edge_vlm_{NODE}_latency_encoder"

    def registered() -> set[str]:
        return {e["unique_id"] for e in daemon.ws.command("config/entity_registry/list")}

    # What an earlier version announced: the encoder time as an entity.
    earlier = {**node, "cmps": {**node["cmps"], "latency_encoder": {
        "p": "sensor", "unique_id": encoder, "name": "Last encoder time", "state_topic": daemon.topic(NODE, "x")}}}
    daemon.recorder.publish(topic, json.dumps(earlier), retain=True)
    ha.wait_until(lambda: encoder in registered(), what="Home Assistant registering the earlier encoder entity")

    daemon.recorder.publish(DISCOVERY["ha_status_topic"], "online")  # Home Assistant is back: announced again
    ha.wait_until(lambda: encoder not in registered(), what="the encoder entity removed")
    assert f"edge_vlm_{NODE}_latency_capture" in registered()  # the readings it has stay
    assert daemon.mqtt_problems() == []
