"""What every reliability test gets: its log captured and scanned for its secrets, and daemons with secrets.

``secret_scan`` (autouse): a handler on the root logger at DEBUG keeps every log record of the test,
formatted with its traceback. A test registers its secrets (``secret_scan.hide``), the recorders
whose messages to scan too (``secret_scan.watch``) and any other text, such as a daemon
subprocess's log (``secret_scan.add_text``); when the test ends, none of the secrets may appear in
any of them. ``secret_scan.log`` also lets a test wait for a log line (an event, not a sleep).

``daemon_secrets``: an MQTT password, a camera password and a camera token made up for the test and
already registered; ``secret_config`` puts them where a real config has them (the broker login, two
HTTP cameras and an RTSP URL, whose sources are never reachable), ``start_daemon`` runs the real
Service with them, ``tests.reliability.daemon_process.DaemonProcess`` runs ``edge-vlm run``.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from edge_vlm.config.models import AppConfig
from edge_vlm.inference.backends import Backend
from edge_vlm.service import Service
from tests.conftest import app_config
from tests.support.mqtt import Recorder

LOG_FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"
MQTT_USER = "edge"
MQTT_PASSWORD_ENV = "EDGE_VLM_TEST_MQTT_PASSWORD"
CAMERA_PASSWORD_ENV = "EDGE_VLM_TEST_CAMERA_PASSWORD"
CAMERA_TOKEN_ENV = "EDGE_VLM_TEST_CAMERA_TOKEN"
RTSP_PASSWORD_ENV = "EDGE_VLM_TEST_RTSP_PASSWORD"
UNREACHABLE_CAMERA = "http://127.0.0.1:9/snapshot.jpg"  # port 9 (discard): nothing listens, connects fail at once
WAIT_S = 15.0


class CapturedLog(logging.Handler):
    """Every record, formatted (with its traceback), in order; a test can wait for one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter(LOG_FORMAT))
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a record that cannot be formatted is a bug to see, not to hide
            line = f"UNFORMATTABLE {record.name} {record.msg!r} {record.args!r}"
        with self._changed:
            self.records.append(record)
            self.lines.append(line)
            self._changed.notify_all()

    def count(self, where: Callable[[logging.LogRecord], bool]) -> int:
        with self._changed:
            return sum(1 for r in self.records if where(r))

    def wait_for(self, where: Callable[[logging.LogRecord], bool], since: int = 0,
                 timeout: float = WAIT_S) -> logging.LogRecord:
        """The first record at position >= ``since`` for which ``where`` holds, waiting up to ``timeout``."""

        def found() -> logging.LogRecord | None:
            return next((r for r in self.records[since:] if where(r)), None)

        with self._changed:
            if not self._changed.wait_for(lambda: found() is not None, timeout):
                raise AssertionError(f"no matching log record within {timeout} s")
            record = found()
            assert record is not None
            return record

    def __len__(self) -> int:
        with self._changed:
            return len(self.records)


@dataclass
class SecretScan:
    """The secrets a test must never show, and everything to look for them in."""

    log: CapturedLog
    secrets: set[str] = field(default_factory=set)
    recorders: list[Recorder] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)

    def hide(self, *values: str) -> None:
        for value in values:
            if len(value) < 8:  # a short one would match by chance
                raise ValueError("register secrets of 8 characters or more")
            self.secrets.add(value)

    def watch(self, recorder: Recorder) -> Recorder:
        """Scan what ``recorder`` receives (topics and payloads) too."""
        self.recorders.append(recorder)
        return recorder

    def add_text(self, where: str, text: str) -> None:
        """Scan ``text`` too, e.g. the log of a daemon run as a subprocess."""
        self.texts[where] = self.texts.get(where, "") + text

    def leaks(self) -> list[str]:
        """Where each secret shows up: '<where>: <excerpt>' (the secret itself masked)."""
        found: list[str] = []
        sources: list[tuple[str, str]] = [(f"log line {i}", line) for i, line in enumerate(self.log.lines)]
        sources += list(self.texts.items())
        for recorder in self.recorders:
            for message in list(recorder.messages):
                sources.append((f"MQTT topic {message.index}", message.topic))
                sources.append((f"MQTT payload on {message.topic}", message.payload.decode("utf-8", "replace")))
        for secret in self.secrets:
            for where, text in sources:
                if (at := text.find(secret)) >= 0:
                    excerpt = text[max(0, at - 60):at] + "<SECRET>" + text[at + len(secret):at + len(secret) + 20]
                    found.append(f"{where}: {excerpt}")
        return found


@pytest.fixture(autouse=True)
def secret_scan() -> Iterator[SecretScan]:
    """Captures the test's log; when it ends, fails if any registered secret appears anywhere scanned."""
    root = logging.getLogger()
    level = root.level
    handler = CapturedLog()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    scan = SecretScan(handler)
    try:
        yield scan
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    leaks = scan.leaks()
    assert not leaks, f"{len(leaks)} secret(s) leaked:\n" + "\n".join(leaks[:20])


@dataclass(frozen=True)
class DaemonSecrets:
    """Made up for one test: the broker password, a camera's password and bearer token, an RTSP URL's password."""

    mqtt_password: str
    camera_password: str
    camera_token: str
    rtsp_password: str  # an RTSP camera's, which the daemon puts into the stream's URL

    @property
    def environ(self) -> dict[str, str]:
        """Where the config says the secrets are (password_env)."""
        return {MQTT_PASSWORD_ENV: self.mqtt_password, CAMERA_PASSWORD_ENV: self.camera_password,
                CAMERA_TOKEN_ENV: self.camera_token, RTSP_PASSWORD_ENV: self.rtsp_password}


@pytest.fixture
def daemon_secrets(secret_scan: SecretScan) -> DaemonSecrets:
    made = DaemonSecrets(f"mqtt-pw-{secrets.token_hex(8)}", f"cam-pw-{secrets.token_hex(8)}",
                         f"cam-token-{secrets.token_hex(8)}", f"rtsp-pw-{secrets.token_hex(8)}")
    secret_scan.hide(made.mqtt_password, made.camera_password, made.camera_token, made.rtsp_password)
    return made


def secret_config(port: int, cameras: list[str], daemon_secrets: DaemonSecrets, *,
                  mqtt: dict[str, Any] | None = None, **overrides: Any) -> AppConfig:
    """A test config (``tests.conftest.app_config``) with ``daemon_secrets`` in it: a broker login (a broker
    that allows anonymous clients takes it too), and besides ``cameras`` (mqtt snapshots) three
    cameras at an address where nothing listens: ``porch`` (HTTP, basic auth), ``gate`` (HTTP, bearer
    token) and ``yard`` (RTSP on demand, with a password the daemon puts into its URL)."""
    camera_list: list[dict[str, Any]] = [{"id": c} for c in cameras]
    camera_list += [
        {"id": "porch", "source": {"type": "http", "url": UNREACHABLE_CAMERA, "auth": "basic", "username": "admin",
                                   "password_env": CAMERA_PASSWORD_ENV, "timeout_s": 1}},
        {"id": "gate", "source": {"type": "http", "url": UNREACHABLE_CAMERA, "auth": "bearer",
                                  "password_env": CAMERA_TOKEN_ENV, "timeout_s": 1}},
        {"id": "yard", "source": {"type": "rtsp", "url": "rtsp://127.0.0.1:9/stream", "username": "admin",
                                  "password_env": RTSP_PASSWORD_ENV, "mode": "on_demand", "open_timeout_s": 1}},
    ]
    mqtt_settings = {"port": port, "reconnect_min_delay": 1, "reconnect_max_delay": 1, "username": MQTT_USER,
                     "password_env": MQTT_PASSWORD_ENV, **(mqtt or {})}
    return app_config(port, mqtt=mqtt_settings, cameras=camera_list, **overrides)


@pytest.fixture
def start_daemon(daemon_secrets: DaemonSecrets) -> Iterator[Callable[..., Service]]:
    """Start the real Service in this process with the test's secrets; stopped when the test ends."""
    started: list[Service] = []

    def start(config: AppConfig, backend: Backend | None = None) -> Service:
        service = Service(config, password=daemon_secrets.mqtt_password, backend=backend,
                          environ=daemon_secrets.environ)
        started.append(service)
        service.start()
        return service

    yield start
    for service in started:
        service.stop(grace=10)
