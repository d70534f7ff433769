"""The http source against a real local HTTP server: each auth mode, each failure, the frame it gives."""

from __future__ import annotations

import io
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edge_vlm.config.sources import ClipConfig, HttpSourceConfig
from edge_vlm.core.errors import ImageError, SourceError
from edge_vlm.frames import Frame
from edge_vlm.frames.buffer import FrameBuffer
from edge_vlm.frames.sources.http import HttpSnapshotSource
from edge_vlm.frames.sources.http_poll import STOP_WAIT_S as POLL_STOP_WAIT_S
from edge_vlm.frames.sources.http_poll import PolledHttpSource
from tests.conftest import app_config
from tests.support import http_server as cam
from tests.support.broker import Mosquitto
from tests.support.logs import LogLines
from tests.support.mqtt import Recorder
from tests.support.notify import DaemonProcess, write_config
from tests.test_daemon import started

# How long a test waits for what must happen, beyond the time it may take: a bound on waiting on a
# busy machine, not a measure of speed.
MARGIN_S = 10.0
# systemd/edge-vlm.service: TimeoutStopSec=45, then SIGKILL. The daemon must be gone well before.
STOP_BOUND_S = 30.0


@pytest.fixture
def server() -> Iterator[cam.CameraServer]:
    with cam.serve() as running:
        yield running


def source(url: str, *, password: str | None = None, max_bytes: int = 1_000_000,
           min_long_side: int | None = None, **config: Any) -> HttpSnapshotSource:
    settings = HttpSourceConfig.model_validate({"type": "http", "url": url, **config})
    return HttpSnapshotSource("front_door", settings, password=password, max_bytes=max_bytes,
                              max_pixels=40_000_000, min_long_side=min_long_side)


def refusal(kind: type[Exception], url: str, **options: Any) -> tuple[Any, float]:
    """The error grab() raises, and how long it took to raise it."""
    start = time.monotonic()
    with pytest.raises(kind) as caught:
        source(url, **options).grab()
    return caught.value, time.monotonic() - start


def test_frame_is_the_camera_jpeg_decoded_and_stamped_now(server: cam.CameraServer) -> None:
    snapshot = source(f"{server.url}/snapshot.jpg")
    assert snapshot.camera == "front_door" and snapshot.instant is False
    snapshot.start()
    frame = snapshot.grab()
    snapshot.stop()
    assert frame.camera == "front_door" and frame.format == "JPEG" and frame.encoded == cam.JPEG
    assert frame.size == frame.source_size == (320, 240) and frame.pixels.shape == (240, 320, 3)
    assert np.array_equal(frame.pixels, np.asarray(Image.open(io.BytesIO(cam.JPEG)).convert("RGB")))
    assert abs(frame.captured_at - time.time()) < 1
    assert server.seen_auth == [None]


def test_frigate_latest_jpg_is_decoded_at_the_size_the_backend_needs(server: cam.CameraServer) -> None:
    frame = source(f"{server.url}/api/front_door/latest.jpg?h=240", min_long_side=160).grab()
    assert frame.source_size == (320, 240) and frame.size == (160, 120)


def test_redirect_to_the_image_is_followed(server: cam.CameraServer) -> None:
    assert source(f"{server.url}/redirect").grab().source_size == (320, 240)


AUTH_CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "basic": ("/basic.jpg", {"username": cam.USER, "password_env": "CAM_PASSWORD"}, cam.PASSWORD),
    "digest": ("/digest.jpg", {"username": cam.USER, "password_env": "CAM_PASSWORD"}, cam.PASSWORD),
    "bearer": ("/bearer.jpg", {"password_env": "FRIGATE_TOKEN"}, cam.TOKEN),
}


@pytest.mark.parametrize("auth", AUTH_CASES)
def test_each_auth_mode_gets_the_frame_with_the_right_secret(server: cam.CameraServer, auth: str) -> None:
    path, config, secret = AUTH_CASES[auth]
    frame = source(server.url + path, auth=auth, password=secret, **config).grab()
    assert frame.source_size == (320, 240)
    if auth == "digest":  # challenge, then response
        assert server.seen_auth[0] is None and str(server.seen_auth[-1]).startswith("Digest ")
        assert secret not in str(server.seen_auth)
    else:  # sent up front: one request
        assert len(server.seen_auth) == 1 and str(server.seen_auth[0]).startswith(auth.title())


@pytest.mark.parametrize("auth", AUTH_CASES)
def test_a_wrong_secret_is_auth_failed_naming_the_variable_not_the_secret(server: cam.CameraServer,
                                                                           auth: str) -> None:
    path, config, secret = AUTH_CASES[auth]
    error, _ = refusal(SourceError, server.url + path, auth=auth, password="wrong-guess-42", **config)
    message = str(error)
    assert error.code == "auth_failed"
    assert message.startswith("http snapshot of camera front_door refused: HTTP 401 Unauthorized from http://")
    assert f"${config['password_env']}" in message
    assert "wrong-guess-42" not in message and secret not in message
    assert len(server.seen_auth) == (2 if auth == "digest" else 1)  # a refused answer is not retried


def test_no_auth_against_a_protected_camera_says_to_configure_it(server: cam.CameraServer) -> None:
    error, _ = refusal(SourceError, f"{server.url}/basic.jpg")
    assert error.code == "auth_failed" and "set auth, username and password_env" in str(error)


def test_forbidden_is_auth_failed(server: cam.CameraServer) -> None:
    error, _ = refusal(SourceError, f"{server.url}/forbidden.jpg", auth="bearer", password=cam.TOKEN,
                       password_env="FRIGATE_TOKEN")
    assert error.code == "auth_failed" and "HTTP 403 Forbidden" in str(error) and cam.TOKEN not in str(error)


def test_credentials_follow_a_redirect_on_the_same_origin_only(server: cam.CameraServer) -> None:
    bearer: dict[str, Any] = {"auth": "bearer", "password": cam.TOKEN, "password_env": "FRIGATE_TOKEN"}
    assert source(f"{server.url}/redirect?to=/bearer.jpg", **bearer).grab().source_size == (320, 240)
    with cam.serve() as elsewhere:
        source(f"{server.url}/redirect?to={elsewhere.url}/snapshot.jpg", **bearer).grab()
        assert elsewhere.seen_auth == [None]


TIMED_OUT = "timed out: no complete answer within timeout_s = {:g} s"


def test_a_camera_that_does_not_answer_times_out_on_time(server: cam.CameraServer) -> None:
    error, took = refusal(SourceError, f"{server.url}/slow.jpg", timeout_s=0.5)
    assert error.code == "camera_unavailable" and str(error).endswith("failed: " + TIMED_OUT.format(0.5))
    assert 0.4 < took < 0.5 + MARGIN_S


def test_a_body_that_trickles_in_times_out_on_time(server: cam.CameraServer) -> None:
    error, took = refusal(SourceError, f"{server.url}/dribble.jpg", timeout_s=0.5)
    assert error.code == "camera_unavailable" and TIMED_OUT.format(0.5) in str(error)
    assert 0.4 < took < 0.5 + MARGIN_S


class Grab:
    """``grab()`` on a thread of its own, so that a test can bound its wait for the outcome."""

    def __init__(self, snapshot: HttpSnapshotSource) -> None:
        self.outcome: BaseException | Frame | None = None
        self.done = threading.Event()
        self.started = time.monotonic()
        self.took = 0.0
        self._snapshot = snapshot
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            self.outcome = self._snapshot.grab()
        except BaseException as exc:  # handed to the test
            self.outcome = exc
        self.took = time.monotonic() - self.started
        self.done.set()

    def error(self, within: float) -> SourceError:
        """The SourceError the grab ended with, waiting ``within`` seconds at most for it."""
        assert self.done.wait(within), f"grab() still running after {within:g} s"
        assert isinstance(self.outcome, SourceError), self.outcome
        return self.outcome


@pytest.mark.parametrize("route", ["/slowheaders.jpg", "/slowbody.jpg"])
def test_a_camera_that_trickles_a_byte_at_a_time_is_cut_off_at_timeout_s(server: cam.CameraServer,
                                                                          route: str) -> None:
    # A byte every 0.1 s: each read is far within the 1 s, the response would take a minute.
    grab = Grab(source(f"{server.url}{route}?every=0.1", timeout_s=1))
    error = grab.error(within=1 + MARGIN_S)
    assert error.code == "camera_unavailable" and str(error).endswith("failed: " + TIMED_OUT.format(1))
    assert grab.took >= 0.9  # the deadline is the setting's, not earlier
    assert server.trickle_ended.wait(MARGIN_S), "the connection was left open"


def test_the_deadline_covers_every_hop_of_a_redirect(server: cam.CameraServer) -> None:
    grab = Grab(source(f"{server.url}/redirect?to=/slowheaders.jpg%3Fevery%3D0.1", timeout_s=1))
    assert TIMED_OUT.format(1) in str(grab.error(within=1 + MARGIN_S))


def test_stop_ends_a_grab_in_flight_and_refuses_the_next(server: cam.CameraServer) -> None:
    snapshot = source(f"{server.url}/slowheaders.jpg", timeout_s=120)
    snapshot.start()
    grab = Grab(snapshot)
    assert server.trickling.wait(MARGIN_S)
    snapshot.stop()
    error = grab.error(within=MARGIN_S)
    assert error.code == "cancelled" and "the source was stopped" in str(error)
    assert server.trickle_ended.wait(MARGIN_S), "the connection was left open"
    with pytest.raises(SourceError) as after:  # a stopped source grabs no more
        snapshot.grab()
    assert after.value.code == "cancelled"


def test_a_camera_polled_for_clips_that_fails_is_logged_once_and_polled_on(server: cam.CameraServer) -> None:
    buffer = FrameBuffer(ClipConfig(fps=10, long_side=320))
    polled = PolledHttpSource(source(f"{server.url}/scene.jpg"), buffer)
    server.scene_down.set()
    with LogLines("edge_vlm.frames.sources.http_poll") as log:
        failed, back = log.when("snapshot for clips failed (http snapshot"), log.when("snapshots for clips come again")
        polled.start()
        try:
            assert failed.wait(MARGIN_S)
            deadline = time.monotonic() + MARGIN_S
            while len(server.seen_auth) < 4 and time.monotonic() < deadline:  # polled on while it fails
                time.sleep(0.05)
            assert len(server.seen_auth) >= 4
            server.scene_down.clear()
            assert back.wait(MARGIN_S)
        finally:
            started_stop = time.monotonic()
            polled.stop()
        assert time.monotonic() - started_stop < POLL_STOP_WAIT_S / 2  # nothing in flight to wait for
        assert polled._thread is not None and not polled._thread.is_alive()
    assert sum("failed" in line for line in log.lines) == 1 and "HTTP 503" in log.lines[0]
    assert [f.size for f in buffer.frames(since=0)][:1] == [(320, 180)]  # kept once it answered


def test_a_closed_port_is_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error, _ = refusal(SourceError, f"http://127.0.0.1:{port}/snapshot.jpg")
    assert error.code == "camera_unavailable" and "connection refused" in str(error)


def test_a_server_error_is_camera_unavailable_with_the_status(server: cam.CameraServer) -> None:
    error, _ = refusal(SourceError, f"{server.url}/error")
    assert error.code == "camera_unavailable"
    assert str(error) == f"http snapshot of camera front_door from {server.url}/error failed: " \
                         "HTTP 500 Internal Server Error"


def test_a_huge_announced_body_is_refused_before_reading_it(server: cam.CameraServer) -> None:
    error, _ = refusal(ImageError, f"{server.url}/huge.jpg", max_bytes=200_000)
    assert error.code == "payload_too_large" and f"announces {cam.HUGE_BYTES} bytes (Content-Length)" in str(error)
    assert server.stream_ended.wait(MARGIN_S)  # the server noticed the hang-up
    assert server.sent_bytes < cam.HUGE_BYTES / 2  # the rest was not downloaded


def test_a_huge_unannounced_body_is_cut_off_at_the_limit(server: cam.CameraServer) -> None:
    error, _ = refusal(ImageError, f"{server.url}/endless.jpg", max_bytes=200_000)
    assert error.code == "payload_too_large" and "past the limit of 200000 bytes" in str(error)
    assert server.stream_ended.wait(MARGIN_S)  # the server noticed the hang-up
    assert server.sent_bytes < cam.HUGE_BYTES / 2


def test_a_body_that_is_not_an_image_is_bad_image(server: cam.CameraServer) -> None:
    error, _ = refusal(ImageError, f"{server.url}/page.html")
    assert error.code == "bad_image" and "not a JPEG or PNG image" in str(error)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_with_a_self_signed_certificate_needs_verify_tls_off(tmp_path: Path) -> None:
    with cam.serve(cam.self_signed(tmp_path)) as tls:
        error, _ = refusal(SourceError, f"{tls.url}/snapshot.jpg")
        assert error.code == "camera_unavailable" and "TLS certificate not trusted" in str(error)
        assert source(f"{tls.url}/snapshot.jpg", verify_tls=False).grab().source_size == (320, 240)


@pytest.mark.mqtt
def test_sigterm_ends_the_daemon_while_a_camera_trickles_its_headers(
        tmp_path: Path, server: cam.CameraServer, broker: Mosquitto,
        make_recorder: Callable[..., Recorder]) -> None:
    # timeout_s at its maximum (120 s, past the unit's stop timeout), the headers at a byte per second.
    camera = {"id": "front_door", "source": {"type": "http", "url": f"{server.url}/slowheaders.jpg",
                                             "timeout_s": 120}}
    config = app_config(broker.port, cameras=[camera])
    write_config(tmp_path / "edge_vlm.yaml", config)
    recorder = make_recorder(broker.port, [f"{config.base_topic}/#", f"{config.discovery.prefix}/#"])
    daemon = DaemonProcess(tmp_path / "edge_vlm.yaml", tmp_path / "daemon.log")
    try:
        started(recorder, config)
        recorder.publish(f"{config.base_topic}/front_door/trigger", b'{"id": "slow-1"}')
        assert server.trickling.wait(MARGIN_S), "the daemon did not ask the camera"
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(STOP_BOUND_S) == 0, daemon.text()
        error = recorder.wait_for(f"{config.base_topic}/front_door/error", lambda m: m.json()["id"] == "slow-1")
        assert error.json()["error"] == "cancelled"
        assert server.trickle_ended.wait(MARGIN_S), "the connection was left open"
    finally:
        daemon.close()
