"""One CameraState per camera: set from the file, then by Home Assistant's settings as the controls
read them back or take commands, and by the result stage's last description."""

from __future__ import annotations

from edge_vlm.camera_state import CameraState, CameraStates
from edge_vlm.config.models import AppConfig
from edge_vlm.core.topics import Outbound, Topics
from edge_vlm.ingest.controls import Controls
from edge_vlm.mqtt.inbox import Received

CONFIG = AppConfig.model_validate({"cameras": [
    {"id": "porch", "cooldown_s": 30, "profile": "brief"},
    {"id": "gate", "enabled": False, "source": {"type": "rtsp", "url": "rtsp://cam/stream"},
     "motion": {"enabled": True}},
], "profiles": {"brief": {"prompt": "Briefly."}}})
TOPICS = Topics.from_config(CONFIG)


def received(leaf: str, payload: bytes, *, retain: bool) -> Received:
    return Received(f"{CONFIG.base_topic}/{leaf}", payload, retain=retain, received_at=0.0, wall_time=0.0,
                    size=len(payload))


def test_the_file_gives_the_first_state_and_motion_waits_for_the_settings() -> None:
    states = CameraStates(CONFIG)
    assert states["porch"] == CameraState(enabled=True, cooldown_s=30, profile="brief", prompt="", motion=False)
    assert (states["gate"].enabled, states["gate"].motion, states["gate"].watches_motion) == (False, False, False)
    assert "porch" in states and "nowhere" not in states


def test_listeners_hear_of_settings_and_not_of_descriptions() -> None:
    states = CameraStates(CONFIG)
    heard: list[tuple[str, CameraState]] = []
    states.listen(lambda camera, state: heard.append((camera, state)))
    states.update("gate", enabled=True, motion=True)
    states.described("porch", 0x1234, "a parcel on the step")
    assert [(camera, state.watches_motion) for camera, state in heard] == [("gate", True)]
    porch = states["porch"]
    assert (porch.scene, porch.text) == (0x1234, "a parcel on the step")
    assert porch.described_at is not None


def test_the_controls_put_what_is_read_back_into_the_state_and_settle_it_once_synced() -> None:
    states = CameraStates(CONFIG)
    sent: list[Outbound] = []
    controls = Controls(CONFIG, TOPICS, states, sent.append)

    controls.handle(received("porch/cooldown", b"5", retain=True))  # the broker's retained replay
    controls.handle(received("gate/motion", b"ON", retain=True))
    assert (states["porch"].cooldown_s, states["porch"].settled) == (5, False)  # what it will be, already
    assert states["gate"].motion is False  # motion detection stays off until the settings are read back
    assert sent == []  # nothing published before the replay is over: a restart never flips a switch

    controls.synced()
    assert (states["porch"].cooldown_s, states["porch"].settled) == (5, True)
    assert (states["gate"].motion, states["gate"].settled) == (True, True)
    assert Outbound(TOPICS.camera("porch", "cooldown"), b"5", True) in sent

    controls.handle(received("porch/prompt/set", b"Who is there?", retain=False))
    controls.handle(received("porch/enabled/set", b"maybe", retain=False))  # refused: nothing changes
    assert (states["porch"].prompt, states["porch"].enabled) == ("Who is there?", True)
    assert sent[-1] == Outbound(TOPICS.camera("porch", "prompt"), b"Who is there?", True)
