"""A private mosquitto for the tests: its own port, its own files, never the shared :1883."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Mosquitto:
    """mosquitto on 127.0.0.1:<port>, with persistence in ``directory`` so it can be restarted."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        if shutil.which("mosquitto") is None:
            raise RuntimeError("mosquitto is not on PATH: run ./scripts/test, which installs it")
        self.directory = directory
        self.port = port or free_port()
        self.log = directory / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None
        conf = directory / "mosquitto.conf"
        conf.write_text(
            # `user root`: as root, mosquitto would otherwise drop to user mosquitto and fail to
            # write its persistence file in a 0700 temporary directory.
            "user root\n"
            "persistence true\n"
            f"persistence_location {directory}/\n"
            f"log_dest file {self.log}\n"
            "log_type all\n"
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "max_queued_messages 10000\n",
        )
        self.conf = conf

    def start(self) -> None:
        self._process = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._process.returncode}; see {self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                time.sleep(0.01)
            else:
                return
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {START_TIMEOUT_S} s")

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence file and exits."""
        if self._process is not None:
            self._process.terminate()
            self._process.wait(START_TIMEOUT_S)
            self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()
