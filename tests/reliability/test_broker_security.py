"""The daemon against a broker that wants TLS, a password and ACLs (a real mosquitto, certificates by openssl).

What it must do: connect over TLS with hostname checking, log in, publish and subscribe; and when the
broker refuses it (wrong password, an unknown CA, a certificate for another name, a client
certificate wanted, ACL denials), log ONE error naming the cause and what to change, retry with a
doubling delay, never in a tight loop. No password appears in any log line (the conftest's
``secret_scan`` captures every record at DEBUG, paho's own ``edge_vlm.mqtt.paho`` included).
"""

from __future__ import annotations

import itertools
import logging
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_vlm.config.models import AppConfig
from edge_vlm.core.errors import ConfigError
from edge_vlm.mqtt.denials import LISTED, Denials
from edge_vlm.service import Service
from tests.conftest import app_config
from tests.reliability.conftest import SecretScan
from tests.reliability.figures import report
from tests.support import images
from tests.support.broker import free_port
from tests.support.mqtt import Recorder
from tests.support.secure_broker import CLIENT_CERT_USER, Pki, SecureMosquitto, dynsec_plugin, make_pki
from tests.test_daemon import wait_until

pytestmark = pytest.mark.mqtt

PASSWORD_ENV = "EDGE_VLM_TEST_MQTT_PASSWORD"
PASSWORD = f"mqtt-pw-{secrets.token_hex(8)}"
WRONG_PASSWORD = f"not-the-pw-{secrets.token_hex(8)}"
WATCHER = ("watcher", f"watcher-pw-{secrets.token_hex(8)}")
ACL = f"""user edge
topic readwrite #

user {WATCHER[0]}
topic readwrite #

user edge-noimage
topic deny +/edge_vlm/+/image
topic readwrite #

user {CLIENT_CERT_USER}
topic readwrite #
"""
CONNECTION_LOGGER = "edge_vlm.mqtt.connection"

Recorders = Callable[..., Recorder]
Daemon = Callable[..., Service]


@pytest.fixture(autouse=True)
def _passwords_are_secret(secret_scan: SecretScan) -> None:
    secret_scan.hide(PASSWORD, WRONG_PASSWORD, WATCHER[1])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[SecureMosquitto]:
    users = {"edge": PASSWORD, "edge-noimage": PASSWORD, WATCHER[0]: WATCHER[1]}
    mosquitto = SecureMosquitto(tmp_path_factory.mktemp("secure-mosquitto"), pki, users, ACL)
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    """Start the real Service with a broker password; stopped when the test ends."""
    started: list[Service] = []

    def start(config: AppConfig, password: str | None = PASSWORD) -> Service:
        service = Service(config, password=password, environ={})
        started.append(service)
        service.start()
        return service

    yield start
    for service in started:
        service.stop(grace=10)


def secure_config(broker: SecureMosquitto, *, port: int | None = None, host: str = "127.0.0.1",
                  tls: bool = True, ca: Path | None = None, client_cert: bool = False, user: str | None = "edge",
                  protocol: str = "5", delays: tuple[int, int] = (1, 1), client_id: str | None = None,
                  **overrides: Any) -> AppConfig:
    mqtt: dict[str, Any] = {"host": host, "port": port or broker.tls_port, "protocol": protocol,
                            "reconnect_min_delay": delays[0], "reconnect_max_delay": delays[1], "client_id": client_id}
    if user is not None:
        mqtt |= {"username": user, "password_env": PASSWORD_ENV}
    if tls:
        mqtt["tls"] = {"enabled": True, "ca_file": str(ca or broker.pki.ca)}
        if client_cert:
            mqtt["tls"] |= {"cert_file": str(broker.pki.client_cert), "key_file": str(broker.pki.client_key)}
    return app_config(mqtt["port"], mqtt=mqtt, **overrides)


def watch(make_recorder: Recorders, broker: SecureMosquitto, config: AppConfig) -> Recorder:
    """A test client on the broker's plain listener, with its own login."""
    return make_recorder(broker.plain_port, [f"{config.base_topic}/#"], auth=WATCHER)


def is_error(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR and record.name.startswith("edge_vlm")  # paho's own log is DEBUG


def errors(scan: SecretScan) -> list[str]:
    return [r.getMessage() for r in list(scan.log.records) if is_error(r)]


def describe_a_snapshot(recorder: Recorder, config: AppConfig, camera: str = "front_door") -> dict[str, Any]:
    before = len(recorder.messages)
    recorder.publish(f"{config.base_topic}/{camera}/snapshot", images.sample("front_door"))
    result: dict[str, Any] = recorder.wait_for(f"{config.base_topic}/{camera}/result", recorder.since(before)).json()
    return result


def online(recorder: Recorder, config: AppConfig) -> None:
    """Wait until the daemon is connected and has read back its retained settings (then it takes snapshots)."""
    recorder.wait_for(f"{config.base_topic}/{config.node_id}/status", lambda m: m.payload == b"online")
    recorder.wait_for(f"{config.base_topic}/{config.cameras[-1].id}/configured")


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_daemon_logs_in_over_tls_and_describes_a_snapshot(
        broker: SecureMosquitto, daemon: Daemon, make_recorder: Recorders, secret_scan: SecretScan,
        protocol: str) -> None:
    config = secure_config(broker, host="localhost", protocol=protocol)  # a name in the certificate, checked
    recorder = watch(make_recorder, broker, config)
    daemon(config)
    online(recorder, config)

    result = describe_a_snapshot(recorder, config)

    assert result["text"] == "1 person; 1 face visible; daylight"
    assert recorder.wait_for(f"{config.base_topic}/front_door/description").payload.decode() == result["text"]
    assert errors(secret_scan) == []
    assert any(r.name == "edge_vlm.mqtt.paho" for r in secret_scan.log.records)  # paho's DEBUG log was scanned too
    assert any("u1, p1" in r.getMessage() for r in secret_scan.log.records)  # it did send a password


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_wrong_password_is_one_clear_error_and_the_retries_back_off(
        broker: SecureMosquitto, daemon: Daemon, secret_scan: SecretScan, protocol: str) -> None:
    refusals_before = _broker_refusals(broker)
    daemon(secure_config(broker, protocol=protocol, delays=(1, 4)), password=WRONG_PASSWORD)

    attempts = _connect_attempts(secret_scan, 4)  # CONNECT at 0, 1, 3 and 7 s: the delay doubles from 1 to 4
    wait_until(lambda: _broker_refusals(broker) - refusals_before >= 4)

    gaps = [round(b - a, 2) for a, b in itertools.pairwise(attempts)]
    assert [round(g) for g in gaps] == [1, 2, 4], gaps
    assert _broker_refusals(broker) - refusals_before == 4  # nothing retried behind paho's back
    (error,) = errors(secret_scan)
    assert error.startswith(f"broker 127.0.0.1:{broker.tls_port} refused the connection: Not authorized — "
                            f"check mqtt.username ('edge') and the password in ${PASSWORD_ENV}")
    assert error.endswith("(retrying with backoff, every 4 s at most)")
    report(f"wrong_password_retries_mqtt{protocol}", {"attempts": len(attempts), "gaps_s": gaps,
                                                       "errors_logged": 1})


# Mosquitto 2.0.11 closes the older connection without a reason (no DISCONNECT "Session taken over"
# even in MQTT 5): the second drop in a row is the error.
TWIN_ERROR = ("dropped the connection soon after accepting it (Unspecified error), again, and took us back at once — "
              "another client with the same client id 'edge_vlm_twin'?")


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_two_daemons_with_one_client_id_back_off_and_say_why(
        broker: SecureMosquitto, daemon: Daemon, secret_scan: SecretScan, protocol: str) -> None:
    """Each connect takes the other's session over: without backoff they would take turns every second."""
    for _ in range(2):
        daemon(secure_config(broker, port=broker.plain_port, tls=False, protocol=protocol, delays=(1, 4),
                             client_id="edge_vlm_twin"))

    attempts = _connect_attempts(secret_scan, 7)  # the 7th: a daemon's 4th, after it had its error logged
    seventh = next(i for i, r in enumerate(list(secret_scan.log.records)) if r.created == attempts[-1])
    secret_scan.log.wait_for(lambda r: r.getMessage().startswith("Connected to MQTT broker"), since=seventh)

    # Both connect at once; then 2, 4, 4 ... s between takeovers, not 1 s.
    assert attempts[-1] - attempts[0] >= 12, [round(t - attempts[0], 1) for t in attempts]
    found = errors(secret_scan)
    assert len(found) == 2, found  # one per daemon, not one per takeover
    assert all(TWIN_ERROR in e for e in found), found
    report(f"twin_client_ids_mqtt{protocol}", {"connects": [round(t - attempts[0], 1) for t in attempts]})


def _connect_attempts(scan: SecretScan, count: int) -> list[float]:
    """When paho sent each of the first ``count`` CONNECT packets (its DEBUG log), waiting for them."""
    times: list[float] = []
    since = 0
    for _ in range(count):
        record = scan.log.wait_for(lambda r: r.name == "edge_vlm.mqtt.paho" and r.getMessage().startswith(
            "Sending CONNECT"), since=since, timeout=15)
        times.append(record.created)
        since = scan.log.records.index(record) + 1
    return times


def _broker_refusals(broker: SecureMosquitto) -> int:
    return sum("not authorised" in line for line in broker.log_lines())


@pytest.mark.parametrize(("case", "settings", "expected"), [
    ("unknown CA", {"ca": "other_ca"},
     "TLS: certificate verify failed: self-signed certificate in certificate chain"),
    ("IP address not in the certificate", {"port": "wrong_name_port"},
     "TLS: certificate verify failed: IP address mismatch, certificate is not valid for '127.0.0.1'"),
    ("host name not in the certificate", {"port": "wrong_name_port", "host": "localhost"},
     "TLS: certificate verify failed: Hostname mismatch, certificate is not valid for 'localhost'"),
    ("client certificate wanted", {"port": "client_cert_port"},
     "wants a client certificate (tlsv13_alert_certificate_required) — set mqtt.tls.cert_file"),
    ("plain client on the TLS port", {"tls": False},
     "closed the connection before answering ([Errno 104] Connection reset by peer) — if that port is a TLS "
     "listener, set mqtt.tls.enabled"),
    ("TLS client on a plain port", {"port": "plain_port"}, "closed the connection during the handshake"),
    ("nothing listening", {"port": "unused"}, "connection refused (nothing listens there)"),
    ("host name that does not resolve", {"host": "no-such-broker.invalid"}, "the host name 'no-such-broker.invalid' "
     "does not resolve"),
])
def test_connection_failures_name_their_cause_once(
        broker: SecureMosquitto, daemon: Daemon, secret_scan: SecretScan, case: str, settings: dict[str, Any],
        expected: str) -> None:
    options = dict(settings)
    if "ca" in options:
        options["ca"] = getattr(broker.pki, options["ca"])
    if "port" in options:
        options["port"] = free_port() if options["port"] == "unused" else getattr(broker, options["port"])
    daemon(secure_config(broker, **options))

    secret_scan.log.wait_for(is_error)
    # The next attempt (1 s later) fails the same way: logged at DEBUG only.
    secret_scan.log.wait_for(lambda r: r.getMessage().startswith("Connection attempt failed again"))

    # Each cause is logged once. A broker's TLS alert is sometimes read as a bare EOF instead, which
    # is a cause of its own (logged once too).
    logged = errors(secret_scan)
    assert len(set(logged)) == len(logged) <= 2, logged
    assert any(expected in error for error in logged), logged
    assert len(logged) == 1 or any("EOF occurred" in error for error in logged), logged


def test_a_denied_publish_is_reported_once_per_topic(
        broker: SecureMosquitto, daemon: Daemon, make_recorder: Recorders, secret_scan: SecretScan) -> None:
    """MQTT 5 PUBACK 0x87. (MQTT 3.1.1 cannot refuse a publish: mosquitto drops it and says nothing.)"""
    config = secure_config(broker, user="edge-noimage")
    recorder = watch(make_recorder, broker, config)
    service = daemon(config)
    online(recorder, config)

    for camera in ("front_door", "front_door", "driveway"):
        describe_a_snapshot(recorder, config, camera)  # the results go out; the images are refused
    service.stop()  # waits for the PUBACK of "offline", which comes after the images' ones

    assert recorder.on(f"{config.base_topic}/front_door/image") == []
    assert sorted(errors(secret_scan)) == [
        f"broker denied publish to {config.base_topic}/{camera}/image: Not authorized — check the broker ACL for "
        "user 'edge-noimage' (it needs write access there)" for camera in ("driveway", "front_door")]


@pytest.mark.skipif(dynsec_plugin() is None, reason="mosquitto's dynamic security plugin is not installed")
@pytest.mark.parametrize(("protocol", "reason"), [
    ("5", "Not authorized"), ("3.1.1", "Failure (SUBACK 0x80; MQTT 3.1.1 gives no reason: usually not authorized)"),
])
def test_a_denied_subscription_is_reported_once(
        pki: Pki, tmp_path: Path, daemon: Daemon, make_recorder: Recorders, secret_scan: SecretScan,
        protocol: str, reason: str) -> None:
    """The dynamic security plugin checks subscriptions when they are made (acl_file does not)."""
    base = "denied/edge_vlm"
    triggers = f"{base}/+/trigger"
    acls = [("subscribeLiteral", triggers, False), ("subscribePattern", "#", True),
            ("publishClientSend", "#", True), ("publishClientReceive", "#", True)]
    broker = SecureMosquitto(tmp_path, pki, {"edge": PASSWORD, WATCHER[0]: WATCHER[1]}, dynsec_acls=acls)
    config = secure_config(broker, protocol=protocol, base_topic=base)
    broker.start()
    try:
        recorder = watch(make_recorder, broker, config)
        daemon(config)
        online(recorder, config)
        assert describe_a_snapshot(recorder, config)["camera"] == "front_door"  # the other subscriptions work
        broker.restart()  # subscribes again on reconnect: denied again, not logged again
        _suback_then_next_packet(secret_scan, 2)
    finally:
        broker.stop()

    assert errors(secret_scan) == [
        f"broker denied subscription to {triggers}: {reason} — check the broker ACL for user 'edge' "
        "(it needs read access there)"]


def _suback_then_next_packet(scan: SecretScan, count: int) -> None:
    """Wait until paho has handled its ``count``-th SUBACK (and so called on_subscribe): a later packet came."""
    since = 0
    for _ in range(count):
        record = scan.log.wait_for(lambda r: r.getMessage() == "Received SUBACK", since=since, timeout=30)
        since = scan.log.records.index(record) + 1
    scan.log.wait_for(lambda r: r.name == "edge_vlm.mqtt.paho" and r.getMessage().startswith("Received PUBACK"),
                      since=since, timeout=30)


def test_client_certificate_login(broker: SecureMosquitto, daemon: Daemon, make_recorder: Recorders,
                                  secret_scan: SecretScan) -> None:
    """The broker takes the certificate's common name as the user name: no password at all."""
    config = secure_config(broker, port=broker.client_cert_port, client_cert=True, user=None)
    recorder = watch(make_recorder, broker, config)
    daemon(config, password=None)
    online(recorder, config)

    assert describe_a_snapshot(recorder, config)["text"] == "1 person; 1 face visible; daylight"
    assert errors(secret_scan) == []
    assert any(f"as edge_vlm_{config.node_id}" in line and f"u'{CLIENT_CERT_USER}'" in line
               for line in broker.log_lines())


def test_a_refusal_that_overtakes_its_record_is_still_reported_once(secret_scan: SecretScan) -> None:
    """paho's thread may see a PUBACK before the publishing thread has recorded the message id."""
    denials = Denials("edge")
    denials.acknowledged("publish", 7, [(0x87, "Not authorized")])  # before paho's publish() returned mid 7
    denials.sent("publish", 7, ["a/image"])
    denials.sent("publish", 8, ["a/image"])
    denials.acknowledged("publish", 8, [(0x87, "Not authorized")])  # the same topic again: not logged again
    denials.sent("publish", 9, ["a/result"])
    denials.acknowledged("publish", 9, [(0x00, "Success")])
    denials.acknowledged("subscribe", 10, [(0x01, "Granted QoS 1")])  # never recorded, granted: forgotten

    assert errors(secret_scan) == ["broker denied publish to a/image: Not authorized — check the broker ACL for "
                                   "user 'edge' (it needs write access there)"]


def test_denials_past_the_cap_are_counted_not_listed(secret_scan: SecretScan) -> None:
    """Requesters choose reply topics: the topics remembered (and logged) are capped."""
    denials = Denials("edge")
    for mid in range(1, LISTED + 6):  # 5 past the cap, the last one twice
        denials.sent("publish", mid, [f"reply/{min(mid, LISTED + 4)}"])
        denials.acknowledged("publish", mid, [(0x87, "Not authorized")])
    denials.sent("publish", 1000, ["reply/1"])  # listed already: neither logged nor counted again
    denials.acknowledged("publish", 1000, [(0x87, "Not authorized")])

    logged = errors(secret_scan)
    assert len(logged) == LISTED + 1
    assert logged[0].startswith("broker denied publish to reply/1: Not authorized")
    assert logged[LISTED - 1].startswith(f"broker denied publish to reply/{LISTED}: ")
    assert logged[LISTED] == f"broker denied access to {LISTED} topics: further denials are counted, not listed"
    assert denials.unlisted == 5


@pytest.mark.parametrize(("files", "says"), [
    ({"cert_file": "client_cert", "key_file": "server_key"}, "mqtt.tls.cert_file and key_file: cannot be used: "
     "KEY_VALUES_MISMATCH"),
    ({"cert_file": "client_cert", "key_file": "encrypted"}, "the key is encrypted: edge_vlm needs it unencrypted"),
    ({"ca_file": "client_key"}, "mqtt.tls.ca_file: cannot be used"),
])
def test_tls_files_that_cannot_be_used_stop_the_start_with_the_reason(
        broker: SecureMosquitto, tmp_path: Path, files: dict[str, str], says: str) -> None:
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(["openssl", "ec", "-in", str(broker.pki.client_key), "-aes256", "-passout", "pass:x-pass-phrase",
                    "-out", str(encrypted)], check=True, capture_output=True)
    paths = {name: encrypted if value == "encrypted" else getattr(broker.pki, value) for name, value in files.items()}
    config = secure_config(broker)
    config = config.model_copy(update={"mqtt": config.mqtt.model_copy(update={
        "tls": config.mqtt.tls.model_copy(update=paths)})})

    with pytest.raises(ConfigError, match=says):
        Service(config, password=PASSWORD, environ={})
