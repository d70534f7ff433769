"""The daemon as its own process (``python -m edge_vlm run``, as systemd starts it): its memory and
threads are its own, and its death would show. Its log (DEBUG, to a file) is scanned for secrets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

import yaml

from edge_vlm.config.models import AppConfig
from tests.reliability.conftest import DaemonSecrets, SecretScan
from tests.reliability.figures import process_status

STOP_TIMEOUT_S = 20.0


class DaemonProcess:
    def __init__(self, config: AppConfig, secrets: DaemonSecrets, directory: Path, scan: SecretScan,
                 log_level: str = "DEBUG") -> None:
        """``log_level``: DEBUG by default, so that everything the daemon can say is scanned for
        secrets; a load test sets INFO (paho's DEBUG log of every packet would be what it measures)."""
        data = json.loads(config.model_dump_json(exclude_defaults=True))
        data["logging"] = {"level": log_level}
        self.config_file = directory / "edge_vlm.yaml"
        self.config_file.write_text(yaml.safe_dump(data, allow_unicode=True))
        self.log_file = directory / "daemon.log"
        self._scan = scan
        with self.log_file.open("w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "edge_vlm", "run", "-c", str(self.config_file)],
                                            stderr=log, env={**os.environ, **secrets.environ})

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def status(self) -> dict[str, int]:
        """VmRSS, VmHWM (kB) and Threads of the daemon."""
        return process_status(self.pid)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM; its exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(STOP_TIMEOUT_S)

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.alive:
            self.process.kill()
        self.process.wait(STOP_TIMEOUT_S)
        self._scan.add_text("daemon log", self.log())
