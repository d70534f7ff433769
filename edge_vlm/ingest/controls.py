"""Per-camera settings Home Assistant can change: on/off, cooldown, profile, custom prompt, motion.
They take effect in the camera's ``CameraState``; this is their MQTT side (dispatcher thread only).

Each is a retained state on ``<base>/<cam>/<name>`` and takes commands on ``…/<name>/set`` (live ones:
a retained command would be applied again at every start, over later changes, so it is ignored). At start
the daemon reads the states back from the broker, so what a user set survives restarts; until it
has (the broker replays retained messages on subscribe, before a message we publish after
subscribing comes back: ``synced()``), a setting keeps its configured value and nothing is
published, so a restart never flips a switch.

The last change wins, in Home Assistant or in the file: the configured values are kept too
(retained, ``<base>/<cam>/configured``), and a setting whose configured value changed since the
state was stored takes the file's new value.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_vlm.camera_state import COOLDOWN_MAX_S, TEXT_MAX, CameraStates
from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.core.topics import CONFIGURED, Outbound, Topics
from edge_vlm.mqtt.inbox import Received

logger = logging.getLogger(__name__)

ON, OFF = b"ON", b"OFF"
CONFIGURED_MAX_BYTES = 16_384  # ours is five short values, the prompt at most TEXT_MAX
# The field of CameraState each setting is.
FIELDS = {"enabled": "enabled", "cooldown": "cooldown_s", "profile": "profile", "prompt": "prompt", "motion": "motion"}


@dataclass
class _Setting:
    camera: str
    name: str
    value: Any
    parse: Callable[[bytes], Any]  # raises ValueError on a bad value
    show: Callable[[Any], bytes]
    settled: bool = False
    unsettled: Any = None  # what applies until settled, if not the value (motion stays off)
    stored: Any = None  # the state read back from the broker, applied once synced

    def __post_init__(self) -> None:
        self.configured = self.value  # the file's value


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
    def __init__(self, config: AppConfig, topics: Topics, states: CameraStates,
                 send: Callable[[Outbound], None]) -> None:
        """``states``: where the settings take effect; ``send``: publishes their states."""
        self._topics = topics
        self._states = states
        self._send = send
        self._settings: dict[str, _Setting] = {}  # by state topic
        self._configured_before: dict[str, dict[str, str]] = {}  # camera -> setting -> the file's value then
        for camera in config.cameras:
            for setting in self._camera_settings(config, camera):
                self._settings[self._topics.camera(setting.camera, setting.name)] = setting
        self._configured_topics = {self._topics.camera(c.id, CONFIGURED): c.id for c in config.cameras}
        self._stale_reported: set[str] = set()  # retained commands warned about (once each: every reconnect replays)

    def _camera_settings(self, config: AppConfig, camera: CameraConfig) -> list[_Setting]:
        settings = [
            _Setting(camera.id, "enabled", camera.enabled, _switch, _flag),
            _Setting(camera.id, "cooldown", camera.cooldown_s, _seconds, _plain),
            _Setting(camera.id, "profile", camera.profile or "default", _choice(config.profile_names), _plain),
            _Setting(camera.id, "prompt", "", _text, _plain),  # the camera's prompt is its 'default' profile
        ]
        if camera.watches_stream:
            settings.append(_Setting(camera.id, "motion", camera.motion.enabled, _switch, _flag, unsettled=False))
        return settings

    def _take_effect(self, setting: _Setting) -> None:
        """Put the setting into the camera's state: its value once settled; before synced(), what it
        will be from what has been read back so far (the broker replays retained states before any
        live message on our subscriptions), except motion detection, which stays off until then."""
        if setting.settled:
            value = setting.value
        else:
            value = self._decided(setting) if setting.unsettled is None else setting.unsettled
        settled = all(s.settled for s in self._settings.values() if s.camera == setting.camera)
        self._states.update(setting.camera, **{FIELDS[setting.name]: value, "settled": settled})

    def _decided(self, setting: _Setting) -> Any:
        """The stored state, unless there is none or the file's value changed since it was stored."""
        before = self._configured_before.get(setting.camera, {}).get(setting.name)
        file_changed = before is not None and before != setting.show(setting.configured).decode()
        return setting.configured if setting.stored is None or file_changed else setting.stored

    # MQTT

    def subscriptions(self) -> list[str]:
        return [f"{topic}/set" for topic in self._settings]

    def replay_only(self) -> list[str]:
        """The states and configured values: only their retained replay at start matters (our own
        publishes echo back)."""
        return [*self._settings, *self._configured_topics]

    def handle(self, message: Received) -> None:
        if message.topic in self._configured_topics:
            self._read_configured(self._configured_topics[message.topic], message.payload)
            return
        state = message.topic.removesuffix("/set")
        command = message.topic != state
        if command and message.retain:
            self._stale_command(message)
            return
        if not (command or message.retain):
            return
        setting = self._settings[state]
        try:
            value = setting.parse(message.payload)
        except (ValueError, UnicodeDecodeError) as exc:
            logger.warning("Ignoring %r on %s: %s", message.payload[:40], message.topic, exc)
            return
        if not command:  # a retained state replayed: read at start, decided in synced(); ours after that
            if not setting.settled:
                setting.stored = value
                self._take_effect(setting)
            return
        self._set(setting, value)
        logger.info("Camera %s: %s set to %r", setting.camera, setting.name, value)

    def _stale_command(self, message: Received) -> None:
        """A retained command, replayed on subscribe: Home Assistant never retains commands, so it is
        stale (someone's mosquitto_pub -r) or planted, and would be applied again at every start and
        reconnect, over what Home Assistant set since. Ignored, like retained triggers and requests;
        the settings themselves come back from their retained states."""
        if message.topic not in self._stale_reported:
            self._stale_reported.add(message.topic)
            logger.warning("Ignoring a retained command on %s: publish commands without retain (clear it with "
                           "mosquitto_pub -r -n -t %s)", message.topic, message.topic)

    def _read_configured(self, camera: str, payload: bytes) -> None:
        """The values the stored states were set under, as we published them: a flat JSON object of
        a few short strings. Anything else on the topic (anyone may publish there) is ignored, with
        one line; json.loads would recurse once per ``[`` (a RecursionError) and read megabytes."""
        values = None
        if len(payload) <= CONFIGURED_MAX_BYTES:
            try:
                values = json.loads(payload)
            except (RecursionError, ValueError):  # UnicodeDecodeError is a ValueError
                values = None
        if not isinstance(values, dict):
            logger.warning("Ignoring the stored configured values of camera %s: not what this daemon publishes "
                           "(%d bytes)", camera, len(payload))
            return
        # Only plain values: str() of a list 900 deep is a RecursionError too.
        self._configured_before[camera] = {str(k): str(v) for k, v in values.items()
                                           if not isinstance(v, dict | list)}
        for setting in self._settings.values():
            if setting.camera == camera and not setting.settled:
                self._take_effect(setting)

    def _set(self, setting: _Setting, value: Any) -> None:
        setting.value, setting.settled = value, True
        self._take_effect(setting)
        self._send(self._state(setting))

    def synced(self) -> None:
        """Everything retained has been read back: each setting takes its stored state, unless the
        file's value changed since (or there is none); then the configured values are stored."""
        for setting in self._settings.values():
            if setting.settled:
                continue
            value = self._decided(setting)
            if setting.stored is not None and value == setting.stored:
                logger.info("Camera %s: %s is %r, as it was before the restart", setting.camera, setting.name, value)
            self._set(setting, value)
        for topic, camera in self._configured_topics.items():
            values = {s.name: s.show(s.configured).decode() for s in self._settings.values() if s.camera == camera}
            self._send(Outbound(topic, json.dumps(values).encode(), retain=True))

    def _state(self, setting: _Setting) -> Outbound:
        return Outbound(self._topics.camera(setting.camera, setting.name), setting.show(setting.value), True)
