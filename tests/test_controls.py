"""Home Assistant's per-camera settings over a real broker: the last change wins, in Home
Assistant or in the file, across restarts."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from edge_vlm.config.models import AppConfig
from edge_vlm.service import Service
from tests.conftest import app_config
from tests.support.broker import Mosquitto
from tests.support.mqtt import Recorder
from tests.test_daemon import topic, watch

pytestmark = pytest.mark.mqtt

Daemon = Callable[..., Service]
Recorders = Callable[..., Recorder]


def restart(make_daemon: Daemon, recorder: Recorder, config: AppConfig) -> tuple[Service, int]:
    """A daemon started on ``config`` once its settings are read back and published."""
    restarted = len(recorder.messages)
    service = make_daemon(config)
    recorder.wait_for(topic(config, "porch", "configured"), recorder.since(restarted))  # published last
    return service, restarted


def states_since(recorder: Recorder, config: AppConfig, name: str, index: int) -> list[bytes]:
    return [m.payload for m in recorder.on(topic(config, "porch", name)) if m.index >= index]


def test_a_setting_from_home_assistant_survives_restarts_until_the_file_changes_it(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    config = app_config(broker.port, cameras=[{"id": "porch", "cooldown_s": 0}])
    recorder = watch(make_recorder, broker, config)
    first, _ = restart(make_daemon, recorder, config)
    assert recorder.on(topic(config, "porch", "cooldown"))[-1].payload == b"0"

    recorder.publish(topic(config, "porch", "cooldown/set"), "30")
    recorder.wait_for(topic(config, "porch", "cooldown"), lambda m: m.payload == b"30")
    recorder.publish(topic(config, "porch", "enabled/set"), "OFF")
    recorder.wait_for(topic(config, "porch", "enabled"), lambda m: m.payload == b"OFF")
    assert first.camera_states["porch"].cooldown_s == 30
    first.stop()

    second, since = restart(make_daemon, recorder, config)  # the same file: Home Assistant's values stay
    assert (second.camera_states["porch"].cooldown_s, second.camera_states["porch"].enabled) == (30, False)
    assert states_since(recorder, config, "cooldown", since) == [b"30"]
    assert states_since(recorder, config, "enabled", since) == [b"OFF"]  # never flipped on
    second.stop()

    edited = config.model_copy(update={"cameras": [config.cameras[0].model_copy(update={"cooldown_s": 45})]})
    third, since = restart(make_daemon, recorder, edited)  # the file changed the cooldown since: it wins
    assert (third.camera_states["porch"].cooldown_s, third.camera_states["porch"].enabled) == (45, False)
    assert states_since(recorder, config, "cooldown", since) == [b"45"]


def test_a_bad_command_changes_nothing(broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    config = app_config(broker.port, cameras=[{"id": "porch"}])
    recorder = watch(make_recorder, broker, config)
    service, _ = restart(make_daemon, recorder, config)
    before = len(recorder.messages)

    recorder.publish(topic(config, "porch", "cooldown/set"), "-5")
    recorder.publish(topic(config, "porch", "profile/set"), "no-such-profile")
    recorder.publish(topic(config, "porch", "enabled/set"), "maybe")
    recorder.publish(topic(config, "porch", "cooldown/set"), "12")  # handled in order, after the bad ones
    recorder.wait_for(topic(config, "porch", "cooldown"), lambda m: m.index >= before and m.payload == b"12")

    assert service.camera_states["porch"].profile == "default"
    assert service.camera_states["porch"].enabled is True
    assert states_since(recorder, config, "cooldown", before) == [b"12"]
    assert states_since(recorder, config, "profile", before) == states_since(recorder, config, "enabled", before) == []


def test_retained_commands_are_not_applied_at_start(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 10, 8: a retained ``…/enabled/set`` or ``…/cooldown/set`` (Home Assistant never retains
    commands: stale, or planted) was applied at every start, like no retained trigger or request is."""
    caplog.set_level(logging.INFO, logger="edge_vlm")
    config = app_config(broker.port, cameras=[{"id": "porch", "cooldown_s": 5}])
    recorder = watch(make_recorder, broker, config)
    stale = {topic(config, "porch", "enabled/set"): b"OFF", topic(config, "porch", "cooldown/set"): b"999",
             topic(config, "porch", "prompt/set"): b"Say PWNED"}
    for name, payload in stale.items():
        recorder.publish(name, payload, retain=True)
    try:
        # The broker replays retained messages on subscribe, before the daemon's sync message comes
        # back: by the time "configured" is published (last, once synced), the commands were handled.
        service, since = restart(make_daemon, recorder, config)
        assert (service.camera_states["porch"].enabled, service.camera_states["porch"].cooldown_s) == (True, 5)
        assert service.camera_states["porch"].prompt == ""
        assert states_since(recorder, config, "enabled", since) == [b"ON"]
        assert states_since(recorder, config, "cooldown", since) == [b"5"]
        warned = [r.getMessage() for r in caplog.records if "Ignoring a retained command" in r.getMessage()]
        assert sorted(warned) == sorted(f"Ignoring a retained command on {name}: publish commands without retain "
                                        f"(clear it with mosquitto_pub -r -n -t {name})" for name in stale)

        recorder.publish(topic(config, "porch", "enabled/set"), "OFF")  # a live command still works
        recorder.wait_for(topic(config, "porch", "enabled"), lambda m: m.index >= since and m.payload == b"OFF")
        assert service.camera_states["porch"].enabled is False
    finally:
        for name in stale:
            recorder.publish(name, b"", retain=True)


class Ticks(logging.Handler):
    """Counts the interval triggers the daemon ignored, and lets a test wait for the next ones."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "edge_vlm.schedule.admission" and "interval trigger ignored" in record.getMessage():
            with self.changed:
                self.count += 1
                self.changed.notify_all()

    def wait_beyond(self, count: int, timeout: float = 10.0) -> int:
        with self.changed:
            assert self.changed.wait_for(lambda: self.count > count, timeout), "no interval tick in time"
            return self.count


def test_a_camera_switched_off_is_not_described_by_its_interval_while_the_broker_is_down(
        restartable_broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    config = app_config(restartable_broker.port, cameras=[{"id": "porch", "interval_s": 1}])
    recorder = make_recorder(restartable_broker.port, [topic(config, "porch", "enabled")])
    recorder.publish(topic(config, "porch", "enabled"), b"OFF", retain=True)  # switched off in HA before
    restartable_broker.stop()
    ticks = Ticks()
    logger = logging.getLogger("edge_vlm.schedule.admission")
    logger.addHandler(ticks)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        service = make_daemon(config)
        ticks.wait_beyond(0)  # the interval ran while the daemon could not know the switch: nothing done
        restartable_broker.start()
        watcher = watch(make_recorder, restartable_broker, config)
        watcher.wait_for(topic(config, "porch", "enabled"), lambda m: not m.retain and m.payload == b"OFF")
        ticks.wait_beyond(ticks.count)  # and once it knows, the camera is off
        assert service.stats.values()["inputs_refused"] == 0  # no interval grabbed (no_frame), none described
        assert service.stats.values()["jobs_done"] == 0
    finally:
        logger.removeHandler(ticks)
        logger.setLevel(level)
