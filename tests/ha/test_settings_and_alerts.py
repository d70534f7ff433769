"""What a user sets and is warned about in a real Home Assistant: the profile, the custom prompt and
the cooldown set from Home Assistant's entities, an alert's binary sensor and event, and a camera
removed from the configuration (issue 12)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ha.conftest import NODE, HaDaemon
from tests.support import ha, images
from tests.support.mqtt import Recorder

pytestmark = [
    pytest.mark.ha,
    pytest.mark.timeout(int((ha.START_TIMEOUT_S if all(r.installed for r in ha.releases()) else ha.INSTALL_TIMEOUT_S)
                            + 120)),
]

PARCELS = "Is there a parcel at the door?"


@pytest.fixture
def daemon_settings() -> dict[str, Any]:
    return {"profiles": {"parcels": {"prompt": PARCELS}},
            "cameras": [{"id": "front_door", "alerts": [
                {"name": "late_visitor", "keywords": ["person"], "off_after_s": 1, "icon": "mdi:doorbell"}]},
                {"id": "driveway"}]}


def _described(daemon: HaDaemon, camera: str = "front_door", sample: str = "front_door") -> dict[str, Any]:
    """Publish a snapshot; its result (a description, or a skip)."""
    since = len(daemon.recorder.messages)
    daemon.recorder.publish(daemon.topic(camera, "snapshot"), images.sample(sample))
    message = daemon.recorder.wait_for(daemon.topic(camera, "result"), daemon.recorder.since(since))
    result: dict[str, Any] = message.json()
    return result


def _set(daemon: HaDaemon, key: str, domain: str, service: str, state: str, **data: Any) -> None:
    """Set a setting from Home Assistant; back once the daemon has taken it (its retained state says so)."""
    leaf = key.removeprefix("front_door_")
    since = len(daemon.recorder.messages)
    daemon.hass.call(domain, service, entity_id=daemon.entity(key), **data)
    daemon.recorder.wait_for(daemon.topic("front_door", leaf), daemon.recorder.since(since))
    ha.wait_until(lambda: _same(daemon.state(key)["state"], state), what=f"{daemon.entity(key)} {state}")


def _same(shown: str, wanted: str) -> bool:
    """A state as Home Assistant shows it (a number may be "600" or "600.0") is the one wanted."""
    try:
        return float(shown) == float(wanted)
    except ValueError:
        return shown == wanted


def test_the_profile_prompt_and_cooldown_set_in_home_assistant_are_the_daemons(ha_daemon: HaDaemon) -> None:
    daemon = ha_daemon
    assert daemon.state("front_door_profile")["attributes"]["options"] == ["default", "parcels"]

    _set(daemon, "front_door_profile", "select", "select_option", "parcels", option="parcels")
    assert _described(daemon)["prompt"] == PARCELS

    _set(daemon, "front_door_prompt", "text", "set_value", "Who is at the door?", value="Who is at the door?")
    assert _described(daemon)["prompt"] == "Who is at the door?"

    _set(daemon, "front_door_prompt", "text", "set_value", "", value="")  # cleared: the profile again
    assert _described(daemon)["prompt"] == PARCELS

    _set(daemon, "front_door_cooldown", "number", "set_value", "600", value=600)
    skipped = _described(daemon)
    assert skipped["skipped"] is True and "cooldown" in skipped["reason"]
    assert daemon.problems() == []


def test_an_alert_turns_on_with_its_name_class_and_icon_then_off(ha_daemon: HaDaemon) -> None:
    daemon = ha_daemon
    alert = daemon.entity("front_door_alert_late_visitor")
    mark = daemon.mark()

    result = _described(daemon)

    assert result["alerts"] == ["late_visitor"]
    on = daemon.wait_change(alert, lambda s: s["state"] == "on", since=mark, what=f"{alert} on")
    assert on["attributes"]["friendly_name"].endswith("Late visitor")
    assert on["attributes"]["device_class"] == "problem"
    assert on["attributes"]["icon"] == "mdi:doorbell"
    assert on["attributes"]["id"] == result["id"]
    assert on["attributes"]["description"] == result["description"]
    event = daemon.wait_change(daemon.entity("front_door_alerts"), lambda s: s["attributes"].get("id") == result["id"],
                               since=mark, what="the alert event")
    assert event["attributes"]["event_type"] == "late_visitor"
    daemon.wait_change(alert, lambda s: s["state"] == "off", since=mark, what=f"{alert} off after off_after_s")
    assert daemon.problems() == []


def test_a_camera_removed_from_the_configuration_leaves_home_assistant_and_the_broker(
        ha_daemon: HaDaemon, make_daemon: Any, make_recorder: Any) -> None:
    daemon = ha_daemon
    _described(daemon, camera="driveway")  # its image, description and settings are retained now
    driveway = {key for key in daemon.entities if key.startswith(f"edge_vlm_{NODE}_driveway_")}
    assert driveway
    daemon.service.stop()

    only_front_door = daemon.config.model_copy(
        update={"cameras": [c for c in daemon.config.cameras if c.id != "driveway"]})
    make_daemon(only_front_door)

    def registered() -> set[str]:
        return {e["unique_id"] for e in daemon.ws.command("config/entity_registry/list")}

    ha.wait_until(lambda: not driveway & registered(), what="the driveway's entities removed")
    devices = daemon.ws.command("config/device_registry/list")
    assert not [d for d in devices if ["mqtt", f"edge_vlm_{NODE}_driveway"] in d["identifiers"]]
    assert f"edge_vlm_{NODE}_front_door_description" in registered()
    for leaf in ("image", "described_image", "attributes", "enabled"):
        daemon.recorder.wait_for(daemon.topic("driveway", leaf), lambda m: m.payload == b"")

    # what the broker keeps for the driveway: nothing (a marker shows the retained replay is over)
    fresh: Recorder = make_recorder(daemon.hass.mqtt_port, [f"{daemon.config.base_topic}/driveway/#", "marker/#"])
    fresh.publish("marker/end", b"1")
    fresh.wait_for("marker/end")
    assert [m.topic for m in fresh.messages if m.topic.startswith(f"{daemon.config.base_topic}/driveway/")] == []
    assert daemon.problems() == []
