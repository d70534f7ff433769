"""Per-camera settings Home Assistant can change: on/off, cooldown, profile, custom prompt, motion.

Each is a retained state on ``<base>/<cam>/<name>`` and takes commands on ``…/<name>/set``. At start
the daemon reads the states back from the broker, so what a user set survives restarts; until it
has (the broker replays retained messages on subscribe, before a message we publish after
subscribing comes back: ``synced()``), a setting keeps its configured value and nothing is
published, so a restart never flips a switch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.mqtt.connection import Received
from edge_vlm.mqtt.publisher import Publisher
from edge_vlm.mqtt.topics import Outbound, Topics

logger = logging.getLogger(__name__)

ON, OFF = b"ON", b"OFF"
TEXT_MAX = 255  # Home Assistant's limit for a text entity
COOLDOWN_MAX_S = 86_400

Applier = Callable[[str, str, Any], None]  # camera, setting, value


@dataclass
class _Setting:
    camera: str
    name: str
    value: Any
    parse: Callable[[bytes], Any]  # raises ValueError on a bad value
    show: Callable[[Any], bytes]
    settled: bool = False
    unsettled: Any = None  # what applies until settled, if not the value (motion stays off)


def _switch(payload: bytes) -> bool:
    value = payload.strip().upper()
    if value not in (ON, OFF):
        raise ValueError("expected ON or OFF")
    return value == ON


def _seconds(payload: bytes) -> float:
    value = float(payload.decode().strip())
    if not 0 <= value <= COOLDOWN_MAX_S:
        raise ValueError(f"expected 0 to {COOLDOWN_MAX_S} seconds")
    return value


def _text(payload: bytes) -> str:
    text = payload.decode("utf-8").strip()
    if len(text) > TEXT_MAX:
        raise ValueError(f"longer than {TEXT_MAX} characters")
    return text


def _choice(options: list[str]) -> Callable[[bytes], str]:
    def parse(payload: bytes) -> str:
        value = payload.decode("utf-8").strip()
        if value not in options:
            raise ValueError(f"expected one of {options}")
        return value

    return parse


def _flag(value: Any) -> bytes:
    return ON if value else OFF


def _plain(value: Any) -> bytes:
    return (f"{value:g}" if isinstance(value, float) else str(value)).encode()


class Controls:
    def __init__(self, config: AppConfig, publisher: Publisher, apply: Applier) -> None:
        self._topics = Topics.from_config(config)
        self._publisher = publisher
        self._apply = apply
        self._lock = threading.Lock()
        self._settings: dict[str, _Setting] = {}  # by state topic
        for camera in config.cameras:
            for setting in self._camera_settings(config, camera):
                self._settings[self._topics.camera(setting.camera, setting.name)] = setting

    def _camera_settings(self, config: AppConfig, camera: CameraConfig) -> list[_Setting]:
        settings = [
            _Setting(camera.id, "enabled", True, _switch, _flag),
            _Setting(camera.id, "cooldown", camera.cooldown_s, _seconds, _plain),
            _Setting(camera.id, "profile", camera.profile or "default", _choice(config.profile_names), _plain),
            _Setting(camera.id, "prompt", (camera.prompt or "")[:TEXT_MAX], _text, _plain),
        ]
        if camera.watches_stream:
            settings.append(_Setting(camera.id, "motion", camera.motion.enabled, _switch, _flag, unsettled=False))
        return settings

    def value(self, camera: str, name: str) -> Any:
        with self._lock:
            return self._settings[self._topics.camera(camera, name)].value

    def configured(self) -> None:
        """Apply what runs until the retained states are read back: the configured values, but no
        motion detection (Home Assistant may have switched it off)."""
        for setting in self._settings.values():
            self._apply(setting.camera, setting.name,
                        setting.value if setting.unsettled is None else setting.unsettled)

    # MQTT

    def subscriptions(self) -> list[str]:
        return [f"{topic}/set" for topic in self._settings]

    def replay_only(self) -> list[str]:
        """The states: only their retained replay at start matters (our own publishes echo back)."""
        return list(self._settings)

    def handles(self, topic: str) -> bool:
        return topic.removesuffix("/set") in self._settings

    def handle(self, message: Received) -> None:
        state = message.topic.removesuffix("/set")
        command = message.topic != state
        if not (command or message.retain):
            return
        setting = self._settings[state]
        try:
            value = setting.parse(message.payload)
        except (ValueError, UnicodeDecodeError) as exc:
            logger.warning("Ignoring %r on %s: %s", message.payload[:40], message.topic, exc)
            return
        with self._lock:
            setting.value, setting.settled = value, True
        logger.info("Camera %s: %s set to %r%s", setting.camera, setting.name, value,
                    "" if command else " (as it was before the restart)")
        self._apply(setting.camera, setting.name, value)
        self._publisher.send(self._state(setting))

    def synced(self) -> None:
        """Every retained state there was has been read back: the others keep their configured value."""
        for setting in self._settings.values():
            if not setting.settled:
                setting.settled = True
                self._apply(setting.camera, setting.name, setting.value)
                self._publisher.send(self._state(setting))

    def _state(self, setting: _Setting) -> Outbound:
        return Outbound(self._topics.camera(setting.camera, setting.name), setting.show(setting.value), True)
