"""What systemd's side of sd_notify does for the tests: a real Unix datagram socket that records
every notification, and ``edge-vlm run`` started the way systemd starts it (NOTIFY_SOCKET, WATCHDOG_USEC)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edge_vlm.config.models import AppConfig

TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Notification:
    fields: dict[str, str]
    at: float  # time.monotonic() when it arrived
    index: int

    def has(self, key: str, value: str = "1") -> bool:
        return self.fields.get(key) == value


class NotifySocket:
    """A bound AF_UNIX/SOCK_DGRAM socket (a path, or ``abstract=True`` for the abstract namespace)
    with a thread that records each datagram as a Notification."""

    def __init__(self, directory: Path, *, abstract: bool = False) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"edge_vlm_test_{os.getpid()}_{os.urandom(4).hex()}"
            self._socket.bind(b"\0" + name.encode())
            self.address = "@" + name
        else:
            path = directory / "notify.sock"
            self._socket.bind(str(path))
            self.address = str(path)
        self._socket.settimeout(0.1)  # so that the reader sees close() soon
        self._closed = threading.Event()
        self.notifications: list[Notification] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._receive, name="notify-socket", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._socket.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
            with self._changed:
                self.notifications.append(Notification(fields, time.monotonic(), len(self.notifications)))
                self._changed.notify_all()

    def wait_for(self, where: Callable[[Notification], bool], after: int = 0,
                 timeout: float = TIMEOUT_S) -> Notification:
        """The first notification from index ``after`` on for which ``where`` holds."""

        def found() -> Notification | None:
            return next((n for n in self.notifications[after:] if where(n)), None)

        with self._changed:
            if not self._changed.wait_for(lambda: found() is not None, timeout):
                raise AssertionError(f"no matching notification within {timeout} s; got {self.notifications}")
            notification = found()
            assert notification is not None
            return notification

    def wait_count(self, where: Callable[[Notification], bool], n: int, after: int = 0,
                   timeout: float = TIMEOUT_S) -> list[Notification]:
        """The first ``n`` notifications from ``after`` on for which ``where`` holds."""

        def matching() -> list[Notification]:
            return [m for m in self.notifications[after:] if where(m)]

        with self._changed:
            if not self._changed.wait_for(lambda: len(matching()) >= n, timeout):
                raise AssertionError(f"fewer than {n} matching notifications within {timeout} s; "
                                     f"got {self.notifications}")
            return matching()[:n]

    def matching(self, where: Callable[[Notification], bool], after: int = 0) -> list[Notification]:
        with self._changed:
            return [m for m in self.notifications[after:] if where(m)]

    @property
    def count(self) -> int:
        with self._changed:
            return len(self.notifications)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(TIMEOUT_S)
        self._socket.close()


def write_config(path: Path, config: AppConfig | dict[str, Any]) -> None:
    data = json.loads(config.model_dump_json(exclude_defaults=True)) if isinstance(config, AppConfig) else config
    path.write_text(yaml.safe_dump(data))


class DaemonProcess:
    """``python -m edge_vlm run -c <file>`` with systemd's variables; its log goes to a file."""

    def __init__(self, config_file: Path, log: Path, **environment: str) -> None:
        self.log = log
        self._log_file = log.open("w")
        env = {**os.environ, **environment}
        env.pop("JOURNAL_STREAM", None)
        self.process = subprocess.Popen([sys.executable, "-m", "edge_vlm", "run", "-c", str(config_file)],
                                        stdout=subprocess.DEVNULL, stderr=self._log_file, env=env)

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = TIMEOUT_S) -> int:
        return self.process.wait(timeout)

    def text(self) -> str:
        return self.log.read_text()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT_S)
        self._log_file.close()


def ready(n: Notification) -> bool:
    return n.has("READY")


def reloading(n: Notification) -> bool:
    return n.has("RELOADING")
