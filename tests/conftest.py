from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_vlm.config.models import AppConfig
from edge_vlm.inference.backends import Backend
from edge_vlm.service import Service
from tests.support.backends import GatedBackend
from tests.support.broker import Mosquitto
from tests.support.http_api import KEY, KEY_ENV, Api
from tests.support.mqtt import Recorder
from tests.support.native import ABIS, build_fake_rkllmrt
from tests.support.notify import DaemonProcess, NotifySocket
from tests.support.npu import STANDINS
from tests.support.rtsp import RtspServer, rtsp_unavailable

_unique = itertools.count(1)
ServerFactory = Callable[..., RtspServer]


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One private mosquitto for the session; tests keep apart by their own topics."""
    mosquitto = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


@pytest.fixture
def restartable_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of this test's own, which it may stop and restart."""
    (tmp_path / "broker").mkdir()
    mosquitto = Mosquitto(tmp_path / "broker")
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


def app_config(port: int, **overrides: Any) -> AppConfig:
    """A config for ``port`` whose topics no other test uses."""
    n = next(_unique)
    data: dict[str, Any] = {
        "node_id": f"node{n}",
        "base_topic": f"test{n}/edge_vlm",
        "discovery": {"prefix": f"test{n}/ha", "ha_status_topic": f"test{n}/ha/status"},
        "mqtt": {"port": port, "reconnect_min_delay": 1, "reconnect_max_delay": 1},
        "cameras": [{"id": "front_door"}, {"id": "driveway"}],
    }
    data.update(overrides)
    return AppConfig.model_validate(data)


@pytest.fixture(scope="session")
def fake_rkllmrt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test runtime standing in for librkllmrt.so, built once per session for each ABI."""
    out = tmp_path_factory.mktemp("rkllmrt")
    return {abi: build_fake_rkllmrt(abi, out) for abi in ABIS}


@pytest.fixture
def rtsp_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Starts RtspServer(**kwargs) on demand; skips when the GStreamer RTSP packages are missing."""
    reason = rtsp_unavailable()
    if reason is not None:
        pytest.skip(reason)
    servers: list[RtspServer] = []

    def start(**kwargs: Any) -> RtspServer:
        server = RtspServer(tmp_path / f"rtsp{len(servers)}.log", **kwargs)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def make_daemon() -> Iterator[Callable[..., Service]]:
    """Start a daemon (the real Service) for a config; stopped when the test ends."""
    started: list[Service] = []

    def start(config: AppConfig, backend: Backend | None = None) -> Service:
        service = Service(config, password=None, backend=backend)
        service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop(grace=10)


@pytest.fixture
def make_api(broker: Mosquitto, make_daemon: Callable[..., Service],
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Api]]:
    """Daemons with the HTTP API on (a free port, the tests' key), one camera, the gated opencv
    backend (open); ``make(**http)`` adds HTTP settings. Their clients are closed when the test ends."""
    monkeypatch.setenv(KEY_ENV, KEY)
    made: list[Api] = []

    def make(**http: Any) -> Api:
        config = app_config(broker.port, cameras=[{"id": "porch"}],
                            http={"enabled": True, "port": 0, "api_key_env": KEY_ENV, **http})
        backend = GatedBackend()
        backend.gate.set()
        made.append(Api(make_daemon(config, backend), backend))
        return made[-1]

    yield make
    for api in made:
        for client in api.clients:
            client.close()


@pytest.fixture
def make_recorder() -> Iterator[Callable[..., Recorder]]:
    recorders: list[Recorder] = []

    def make(port: int, filters: list[str], **options: Any) -> Recorder:
        recorder = Recorder(port, filters, **options)
        recorders.append(recorder)
        return recorder

    yield make
    for recorder in recorders:
        recorder.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    """systemd's notify socket, as a test reads it."""
    sock = NotifySocket(tmp_path)
    yield sock
    sock.close()


@pytest.fixture
def daemons() -> Iterator[Callable[..., DaemonProcess]]:
    """Start ``edge-vlm run`` processes (config file, log file, environment); closed when the test ends."""
    started: list[DaemonProcess] = []

    def start(config_file: Path, log: Path, **environment: str) -> DaemonProcess:
        daemon = DaemonProcess(config_file, log, **environment)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.close()


def _forget_rknnlite() -> None:
    for name in [name for name in sys.modules if name == "rknnlite" or name.startswith("rknnlite.")]:
        del sys.modules[name]


@pytest.fixture
def rknnlite_standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """RKNNLite importable as on a board (its stand-in over onnxruntime) for one test, and forgotten
    after it, so that no later test in the process finds it imported."""
    monkeypatch.syspath_prepend(str(STANDINS))
    _forget_rknnlite()
    yield STANDINS
    _forget_rknnlite()
