"""systemd integration: sd_notify over a real Unix datagram socket, the watchdog, SIGHUP reloads,
SIGTERM, and secrets from systemd credentials."""

from __future__ import annotations

import itertools
import json
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import edge_vlm.run.daemon
from edge_vlm.__main__ import main
from edge_vlm.config import load_checked, load_config_text, mqtt_password, preflight
from edge_vlm.config.models import AppConfig, OpencvBackendConfig
from edge_vlm.config.secrets import read_credential
from edge_vlm.core.errors import ConfigError, SecretUnavailable
from edge_vlm.frames import Frame
from edge_vlm.inference.backends.opencv import OpencvBackend
from edge_vlm.run.daemon import Daemon
from edge_vlm.run.systemd import Notifier, Watchdog, monotonic_usec, notify_address, watchdog_interval
from edge_vlm.service import Service
from tests.conftest import app_config
from tests.support import images
from tests.support.broker import Mosquitto, free_port
from tests.support.mqtt import Recorder
from tests.support.notify import DaemonProcess, Notification, NotifySocket, ready, reloading, write_config
from tests.test_daemon import wait_until

Recorders = Callable[..., Recorder]
SECRET = "s3cr3t-Pa55word"


def keep_alive(n: Notification) -> bool:
    return n.has("WATCHDOG")


def status_topic(config: AppConfig) -> str:
    return f"{config.base_topic}/{config.node_id}/status"


def camera_config_topic(config: AppConfig, camera: str) -> str:
    return f"{config.discovery.prefix}/device/edge_vlm_{config.node_id}/{camera}/config"


# The protocol, unit by unit


def test_notify_socket_addresses() -> None:
    assert notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify_address("@/org/freedesktop/systemd1/notify/123") == b"\0/org/freedesktop/systemd1/notify/123"
    assert notify_address(None) is None
    assert notify_address("") is None
    assert notify_address("vsock:2:1234") is None


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.send("READY=1") is False
    notifier.ready("fine")  # no socket, no error
    assert not Watchdog(Notifier({"WATCHDOG_USEC": "1000000"})).enabled


def test_an_abstract_namespace_socket_gets_the_datagram(tmp_path: Path) -> None:
    sock = NotifySocket(tmp_path, abstract=True)
    try:
        assert sock.address.startswith("@")
        with Notifier({"NOTIFY_SOCKET": sock.address}) as notifier:
            notifier.ready("Serving 2 camera(s)\nwith a newline")
        got = sock.wait_for(ready)
    finally:
        sock.close()
    assert got.fields == {"READY": "1", "STATUS": "Serving 2 camera(s) with a newline"}


def test_reloading_carries_the_monotonic_time(notify_socket: NotifySocket) -> None:
    before = monotonic_usec()
    with Notifier({"NOTIFY_SOCKET": notify_socket.address}) as notifier:
        notifier.reloading("Reloading /etc/edge-vlm/edge_vlm.yaml")
        notifier.stopping("Stopping")
    got = notify_socket.wait_for(reloading)
    assert before <= int(got.fields["MONOTONIC_USEC"]) <= monotonic_usec()
    assert notify_socket.wait_for(lambda n: n.has("STOPPING")).fields["STATUS"] == "Stopping"


def test_a_vanished_socket_does_not_raise(tmp_path: Path) -> None:
    with Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")}) as notifier:
        assert notifier.enabled
        assert notifier.send("READY=1") is False
        notifier.status("still fine")


def test_watchdog_interval_and_pid() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "3000000"}) == 3.0
    assert watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}) == 3.0
    assert watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({}) is None


def test_watchdog_beats_at_most_every_half_interval(notify_socket: NotifySocket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "600000"})
    watchdog = Watchdog(notifier)
    assert watchdog.every_s == pytest.approx(0.3)
    first = time.monotonic()
    while time.monotonic() - first < 0.2:  # called all the time for less than half the interval
        watchdog.beat()
    with Notifier({"NOTIFY_SOCKET": notify_socket.address}) as marker:
        marker.status("marker")  # arrives after every keep-alive sent before it
    notify_socket.wait_for(lambda n: n.fields.get("STATUS") == "marker")
    assert len(notify_socket.matching(keep_alive)) == 1
    while time.monotonic() - first < 0.35:
        watchdog.beat()
    beats = notify_socket.wait_count(keep_alive, 2)
    notifier.close()
    assert beats[1].at - beats[0].at >= 0.25


class StuckPrepareBackend(OpencvBackend):
    """prepare() runs on the dispatcher thread: holding it there is a stuck dispatcher loop."""

    def __init__(self) -> None:
        super().__init__(OpencvBackendConfig())
        self.stuck = threading.Event()
        self.release = threading.Event()

    def prepare(self, frame: Frame) -> np.ndarray:
        self.stuck.set()
        self.release.wait(30)
        return super().prepare(frame)


@pytest.mark.mqtt
def test_a_stuck_dispatcher_stops_the_keep_alives(broker: Mosquitto, make_recorder: Recorders,
                                                   notify_socket: NotifySocket) -> None:
    config = app_config(broker.port)
    recorder = make_recorder(broker.port, [f"{config.base_topic}/#"])
    backend = StuckPrepareBackend()
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "400000"})
    watchdog = Watchdog(notifier)
    service = Service(config, password=None, backend=backend)
    service.heartbeat = watchdog.beat
    service.start()
    try:
        recorder.wait_for(status_topic(config), lambda m: m.payload == b"online")
        notify_socket.wait_count(keep_alive, 3)
        recorder.publish(f"{config.base_topic}/front_door/snapshot", images.sample("front_door"))
        assert backend.stuck.wait(10)
        # One keep-alive may have left in the 0.2 s before the loop got stuck; then none for 5 intervals.
        after = notify_socket.count
        with pytest.raises(AssertionError):
            notify_socket.wait_count(keep_alive, 2, after=after, timeout=1.0)
        backend.release.set()
        notify_socket.wait_count(keep_alive, 3, after=after)
        recorder.wait_for(f"{config.base_topic}/front_door/result")
    finally:
        backend.release.set()
        service.stop()
        notifier.close()


# The daemon as systemd runs it


@pytest.mark.mqtt
def test_ready_only_after_the_broker_is_connected(tmp_path: Path, notify_socket: NotifySocket,
                                                   daemons: Callable[..., DaemonProcess]) -> None:
    (tmp_path / "broker").mkdir()
    broker = Mosquitto(tmp_path / "broker")  # not started: the board booted before its broker
    config = app_config(broker.port)
    config_file = tmp_path / "edge_vlm.yaml"
    write_config(config_file, config)
    daemon = daemons(config_file, tmp_path / "daemon.log", NOTIFY_SOCKET=notify_socket.address)
    try:
        waiting = notify_socket.wait_for(lambda n: n.fields.get("STATUS", "").startswith("Waiting for MQTT broker"))
        # While it waits it asks systemd for more start-up time every 2 s: two more of those (4 s, and
        # four reconnect attempts 1 s apart) without a READY.
        extended = notify_socket.wait_count(lambda n: "EXTEND_TIMEOUT_USEC" in n.fields, 2, after=waiting.index)
        assert extended[-1].fields["EXTEND_TIMEOUT_USEC"] == "30000000"
        assert not notify_socket.matching(ready)
        assert daemon.process.poll() is None
        before_broker = notify_socket.count
        broker.start()
        got = notify_socket.wait_for(ready)
        recorder = Recorder(broker.port, [status_topic(config)])
        try:
            recorder.wait_for(status_topic(config), lambda m: m.payload == b"online")
        finally:
            recorder.close()
        assert got.index >= before_broker
        assert got.fields["STATUS"].startswith("Serving 2 camera(s) with the opencv backend")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        broker.stop()
    assert "cannot reach MQTT broker" in daemon.text()


def test_without_a_broker_ready_comes_after_a_bounded_wait(tmp_path: Path, notify_socket: NotifySocket,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`systemctl start` and the boot must not wait forever for a broker that is down."""
    monkeypatch.setattr(edge_vlm.run.daemon, "START_BROKER_WAIT_S", 1.0)
    config = app_config(free_port())  # nothing listens there
    environ = {"NOTIFY_SOCKET": notify_socket.address}
    daemon = Daemon(tmp_path / "edge_vlm.yaml", config, environ)
    exit_status: list[int] = []
    runner = threading.Thread(target=lambda: exit_status.append(daemon.run()))
    runner.start()
    try:
        got = notify_socket.wait_for(ready)
        assert got.fields["STATUS"].startswith(f"MQTT broker 127.0.0.1:{config.mqtt.port} unreachable: serving once")
        assert "connection refused" in got.fields["STATUS"]  # systemctl status says why
        waiting = notify_socket.matching(lambda n: n.fields.get("STATUS", "").startswith("Waiting for MQTT broker"))
        assert waiting and waiting[0].index < got.index
    finally:
        daemon.request_stop()
        runner.join(30)
    assert exit_status == [0]


@pytest.mark.mqtt
def test_watchdog_keep_alives_come_every_half_interval(tmp_path: Path, broker: Mosquitto,
                                                       notify_socket: NotifySocket,
                                                       daemons: Callable[..., DaemonProcess]) -> None:
    config = app_config(broker.port)
    config_file = tmp_path / "edge_vlm.yaml"
    write_config(config_file, config)
    daemons(config_file, tmp_path / "daemon.log", NOTIFY_SOCKET=notify_socket.address, WATCHDOG_USEC="2000000")
    got = notify_socket.wait_for(ready)
    beats = notify_socket.wait_count(keep_alive, 7, after=got.index)
    gaps = [b.at - a.at for a, b in itertools.pairwise(beats)]
    # Every 1 s (half of 2 s), late by at most one turn of the dispatcher loop (0.2 s).
    assert 0.95 <= statistics.median(gaps) <= 1.3, gaps
    assert max(gaps) < 1.6, gaps


@pytest.mark.mqtt
def test_sigterm_says_stopping_then_exits_0(tmp_path: Path, broker: Mosquitto, make_recorder: Recorders,
                                           notify_socket: NotifySocket,
                                           daemons: Callable[..., DaemonProcess]) -> None:
    config = app_config(broker.port)
    config_file = tmp_path / "edge_vlm.yaml"
    write_config(config_file, config)
    recorder = make_recorder(broker.port, [status_topic(config)])
    daemon = daemons(config_file, tmp_path / "daemon.log", NOTIFY_SOCKET=notify_socket.address)
    got = notify_socket.wait_for(ready)
    daemon.signal(signal.SIGTERM)
    stopping = notify_socket.wait_for(lambda n: n.has("STOPPING"))
    assert daemon.wait() == 0
    assert stopping.index > got.index
    recorder.wait_for(status_topic(config), lambda m: m.payload == b"offline")
    assert daemon.text().rstrip().endswith("Stopped")


def serving(recorder: Recorder, config: AppConfig, camera: str) -> str:
    """A snapshot to ``camera`` gets its description (the daemon serves); the description. READY=1
    comes once the daemon's subscriptions are in place, so the snapshot is heard."""
    since = recorder.since(len(recorder.messages))
    recorder.publish(f"{config.base_topic}/{camera}/snapshot", images.sample("front_door"))
    return recorder.wait_for(f"{config.base_topic}/{camera}/description", since).payload.decode()


@pytest.mark.mqtt
def test_sighup_with_an_invalid_file_keeps_the_daemon_serving(tmp_path: Path, broker: Mosquitto,
                                                              make_recorder: Recorders, notify_socket: NotifySocket,
                                                              daemons: Callable[..., DaemonProcess]) -> None:
    config = app_config(broker.port)
    config_file = tmp_path / "edge_vlm.yaml"
    write_config(config_file, config)
    recorder = make_recorder(broker.port, [f"{config.base_topic}/#"])
    daemon = daemons(config_file, tmp_path / "daemon.log", NOTIFY_SOCKET=notify_socket.address)
    first = notify_socket.wait_for(ready)
    online = recorder.wait_for(status_topic(config), lambda m: m.payload == b"online")

    invalid = json.loads(config.model_dump_json(exclude_defaults=True))
    invalid["mqtt_typo"] = 1
    invalid["cameras"] = [{"id": "Front Door"}, {"id": "b", "source": {
        "type": "rtsp", "url": "rtsp://cam/s", "password_env": "PW", "password_credential": "pw"}}]
    write_config(config_file, invalid)
    daemon.signal(signal.SIGHUP)
    started = notify_socket.wait_for(reloading, after=first.index + 1)
    done = notify_socket.wait_for(ready, after=started.index)

    assert "Reload refused" in done.fields["STATUS"]
    assert serving(recorder, config, "front_door") == "1 person; 1 face visible; daylight"
    assert recorder.on(status_topic(config))[-1] == online  # it never went offline
    log = daemon.text()
    refused = [line for line in log.splitlines() if "Reload refused" in line]
    assert len(refused) == 1 and "3 problem(s)" in refused[0], log
    assert "mqtt_typo: 1: no such setting here; did you mean mqtt?" in log
    assert "cameras[0].id: 'Front Door': use 1 to 64 lower-case letters" in log
    assert "cameras[1].source.password_credential: set password_env or password_credential, not both" in log
    assert "Backend opencv loaded" in log and "Reloaded" not in log
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


@pytest.mark.mqtt
def test_sighup_with_a_new_camera_takes_effect_and_keeps_the_backend(
        tmp_path: Path, broker: Mosquitto, make_recorder: Recorders, notify_socket: NotifySocket,
        daemons: Callable[..., DaemonProcess]) -> None:
    config = app_config(broker.port)
    config_file = tmp_path / "edge_vlm.yaml"
    write_config(config_file, config)
    recorder = make_recorder(broker.port, [f"{config.base_topic}/#", f"{config.discovery.prefix}/#"])
    daemon = daemons(config_file, tmp_path / "daemon.log", NOTIFY_SOCKET=notify_socket.address)
    first = notify_socket.wait_for(ready)
    recorder.wait_for(camera_config_topic(config, "driveway"))
    assert not recorder.on(camera_config_topic(config, "garage"))

    changed = config.model_copy(update={"cameras": [*config.cameras, config.cameras[0].model_copy(
        update={"id": "garage"})]})
    write_config(config_file, changed)
    daemon.signal(signal.SIGHUP)
    started = notify_socket.wait_for(reloading, after=first.index + 1)
    done = notify_socket.wait_for(ready, after=started.index)

    assert done.fields["STATUS"].startswith("Serving 3 camera(s)")
    recorder.wait_for(camera_config_topic(config, "garage"))
    assert serving(recorder, config, "garage") == "1 person; 1 face visible; daylight"
    log = daemon.text()
    assert "Reloaded" in log and "backend kept loaded" in log
    assert log.count("Backend opencv loaded in") == 1  # the model was not loaded again
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


@pytest.mark.mqtt
def test_sighup_during_a_reload_is_done_after_it(tmp_path: Path, broker: Mosquitto, make_recorder: Recorders,
                                                 notify_socket: NotifySocket,
                                                 daemons: Callable[..., DaemonProcess]) -> None:
    config = app_config(broker.port)
    config_file = tmp_path / "edge_vlm.yaml"
    write_config(config_file, config)
    recorder = make_recorder(broker.port, [f"{config.base_topic}/#"])
    daemon = daemons(config_file, tmp_path / "daemon.log", NOTIFY_SOCKET=notify_socket.address)
    notify_socket.wait_for(ready)
    write_config(config_file, config.model_copy(update={"backend": OpencvBackendConfig(detect_faces=False)}))

    daemon.signal(signal.SIGHUP)
    notify_socket.wait_for(reloading)
    daemon.signal(signal.SIGHUP)  # the reload has begun: this one is done after it
    wait_until(lambda: daemon.text().count("Reloaded ") == 2)
    last = notify_socket.matching(reloading)[-1]
    notify_socket.wait_for(ready, after=last.index)

    # systemd hears of one reload or two, each ended by READY=1.
    assert 1 <= len(notify_socket.matching(reloading)) <= 2
    assert serving(recorder, config, "driveway") == "No people; daylight"  # the new backend settings
    log = daemon.text()
    assert log.count("Received SIGHUP") == 2
    assert "backend loaded anew" in log and "backend kept loaded" in log  # the second found nothing changed
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


# Secrets from systemd credentials


def test_a_password_from_one_place_only() -> None:
    text = ("cameras:\n- id: a\n  source: {type: http, url: 'http://cam/snap.jpg', auth: bearer,\n"
            "           password_env: TOKEN, password_credential: token}\n"
            "mqtt:\n  username: edge\n  password_env: PW\n  password_credential: mqtt_password\n")
    with pytest.raises(ConfigError) as error:
        load_config_text(text)
    assert error.value.problems == [
        "line 4: cameras[0].source.password_credential: set password_env or password_credential, not both",
        "line 8: mqtt.password_credential: set password_env or password_credential, not both",
    ]
    with pytest.raises(ConfigError) as error:
        load_config_text("cameras: [{id: a}]\nmqtt: {password_credential: ../etc/shadow}\n")
    assert error.value.problems == [
        "line 2: mqtt.password_credential: a systemd credential name (LoadCredential=NAME:...): letters, digits, "
        "_, . and -, not starting with a dot",
    ]
    bearer = load_config_text("cameras:\n- id: a\n  source: {type: http, url: 'http://cam/s.jpg', auth: bearer, "
                              "password_credential: token}\n")
    assert bearer.config.cameras[0].source.password_credential == "token"  # type: ignore[union-attr]


CREDENTIAL_CONFIG = ("cameras:\n- id: a\n- id: b\n  source: {type: rtsp, url: 'rtsp://cam/s', username: u,\n"
                     "           password_credential: camera_b}\n"
                     "mqtt:\n  username: edge\n  password_credential: mqtt_password\n")


def test_credentials_are_read_from_the_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "mqtt_password").write_text(SECRET + "\n")
    (tmp_path / "camera_b").write_text("two lines\n\n")
    loaded = load_config_text(CREDENTIAL_CONFIG)
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert preflight(loaded, environ) == []
    assert mqtt_password(loaded.config, environ) == SECRET  # one trailing newline stripped
    assert read_credential("camera_b", environ) == "two lines\n"  # only one


def test_a_missing_credential_is_a_preflight_problem(tmp_path: Path) -> None:
    (tmp_path / "mqtt_password").write_text(SECRET)
    loaded = load_config_text(CREDENTIAL_CONFIG)
    problems = preflight(loaded, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert problems == [
        f"line 5: cameras[1].source.password_credential: credential 'camera_b': no such file in "
        f"$CREDENTIALS_DIRECTORY ({tmp_path}); add LoadCredential=camera_b:/path/to/secret to the unit",
    ]
    no_directory = preflight(loaded, {})
    assert [p.split(": ", 2)[1] for p in no_directory] == ["cameras[1].source.password_credential",
                                                          "mqtt.password_credential"]  # in the file's order
    assert all("$CREDENTIALS_DIRECTORY is not set" in p for p in no_directory)
    with pytest.raises(SecretUnavailable, match="CREDENTIALS_DIRECTORY is not set"):
        mqtt_password(loaded.config, {})
    assert not any(SECRET in p for p in problems + no_directory)


def test_check_reports_a_missing_credential(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    config_file = tmp_path / "edge_vlm.yaml"
    config_file.write_text(CREDENTIAL_CONFIG)
    (tmp_path / "credentials").mkdir()
    (tmp_path / "credentials" / "camera_b").write_text("pw\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "credentials"))
    with pytest.raises(SystemExit) as exit_status:
        main(["check", "-c", str(config_file)])
    assert exit_status.value.code == 1
    err = capsys.readouterr().err
    assert "1 problem(s)" in err
    assert "line 8: mqtt.password_credential: credential 'mqtt_password': no such file" in err
    (tmp_path / "credentials" / "mqtt_password").write_text(SECRET + "\n")
    assert main(["check", "-c", str(config_file)]) == 0
    out = capsys.readouterr().out
    assert "user edge, password from credential mqtt_password" in out
    assert SECRET not in out
    assert load_checked(config_file, os.environ).config.mqtt.password_credential == "mqtt_password"


def test_an_empty_credential_is_reported_by_name_at_check_and_when_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """install-service creates /etc/edge-vlm/credentials/mqtt_password empty: that is no password."""
    config_file = tmp_path / "edge_vlm.yaml"
    config_file.write_text(CREDENTIAL_CONFIG)
    (tmp_path / "mqtt_password").write_text("")
    (tmp_path / "camera_b").write_text("\n")  # a lone newline is empty too
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    empty = ("credential {0!r} is empty: put the password in /etc/edge-vlm/credentials/{0} (or wherever the "
             "unit's LoadCredential={0}: line points), then sudo systemctl restart edge-vlm (credentials are "
             "copied at start only)")

    assert preflight(load_config_text(CREDENTIAL_CONFIG), environ) == [
        f"line 5: cameras[1].source.password_credential: {empty.format('camera_b')}",
        f"line 8: mqtt.password_credential: {empty.format('mqtt_password')}",
    ]
    with pytest.raises(SecretUnavailable) as error:
        mqtt_password(load_config_text(CREDENTIAL_CONFIG).config, environ)
    assert str(error.value) == empty.format("mqtt_password")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(SystemExit) as exit_status:
        main(["check", "-c", str(config_file)])
    assert exit_status.value.code == 1
    err = capsys.readouterr().err
    assert "2 problem(s)" in err and empty.format("mqtt_password") in err


def test_a_camera_password_variable_that_is_unset_is_reported() -> None:
    loaded = load_config_text("cameras:\n- id: a\n  source: {type: rtsp, url: 'rtsp://cam/s', username: u, "
                              "password_env: CAM_A_PASSWORD}\n")
    assert preflight(loaded, {}) == [
        "line 3: cameras[0].source.password_env: 'CAM_A_PASSWORD': the environment variable is not set",
    ]
    assert preflight(loaded, {"CAM_A_PASSWORD": SECRET}) == []



@pytest.mark.mqtt
def test_a_burst_of_signals_is_handled_without_the_main_loop_waiting_for_itself(
        tmp_path: Path, broker: Mosquitto, notify_socket: NotifySocket, daemons: Callable[..., DaemonProcess]) -> None:
    """Signal handlers run on the main thread between two of its bytecodes: one that took a lock
    the main loop held at that moment (an Event's) would wait forever. Hundreds of SIGHUPs, each
    refused quickly (a broken file), land at every point of the loop; the daemon still stops."""
    config_file = tmp_path / "edge_vlm.yaml"
    write_config(config_file, app_config(broker.port))
    daemon = daemons(config_file, tmp_path / "daemon.log", NOTIFY_SOCKET=notify_socket.address)
    notify_socket.wait_for(ready)
    config_file.write_text("cameras: [\n")
    for _ in range(300):
        daemon.signal(signal.SIGHUP)
    wait_until(lambda: "Reload refused" in daemon.text())
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    log = daemon.text()
    assert "Received SIGTERM: stopping" in log and "Traceback" not in log
