"""The rtsp source against a real RTSP server whose frames carry their capture time and number."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from edge_vlm.config.sources import RtspSourceConfig
from edge_vlm.core.errors import SourceError
from edge_vlm.frames import Frame
from edge_vlm.frames.sources.mqtt_snapshot import LatestSnapshot
from edge_vlm.frames.sources.rtsp import STOP_WAIT_S, RtspSource
from edge_vlm.frames.sources.rtsp_open import stream_url
from tests.conftest import ServerFactory, app_config
from tests.support.broker import Mosquitto
from tests.support.mqtt import Recorder
from tests.support.notify import DaemonProcess, write_config
from tests.support.rtsp import decode_blocks, open_capture
from tests.test_daemon import started

FPS = 15
INTERVAL_MS = 1000 / FPS
MARGIN_S = 10.0  # a bound on waiting on a busy machine, not a measure of speed
STOP_BOUND_S = 30.0  # systemd/edge-vlm.service: TimeoutStopSec=45, then SIGKILL


def config(url: str, **overrides: object) -> RtspSourceConfig:
    return RtspSourceConfig.model_validate({"type": "rtsp", "url": url, "read_timeout_s": 1,
                                            "reconnect_max_delay_s": 1, **overrides})


class States:
    """Records a source's connected / disconnected changes; waits for them with a deadline."""

    def __init__(self) -> None:
        self.changes: list[bool] = []
        self._changed = threading.Condition()

    def __call__(self, connected: bool, reason: str) -> None:
        with self._changed:
            self.changes.append(connected)
            self._changed.notify_all()

    def wait(self, connected: bool, count: int = 1, timeout: float = 15) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.changes.count(connected) >= count, timeout), self.changes


def age_ms(frame_rgb: object, grabbed_at: float) -> float:
    decoded = decode_blocks(frame_rgb)  # type: ignore[arg-type]
    assert decoded is not None, "the frame's time blocks did not decode"
    return grabbed_at * 1000 - decoded[0] % 2**40 - (int(grabbed_at * 1000) // 2**40) * 2**40


def live_edge_ms(url: str) -> float:
    """How old frames are at best: read continuously with a plain capture."""
    capture = open_capture(url)
    try:
        ages = []
        for _ in range(20):
            ok, frame = capture.read()
            assert ok
            ages.append(age_ms(frame, time.time()))
        return sorted(ages)[len(ages) // 2]
    finally:
        capture.release()


@pytest.mark.parametrize("mode", ["persistent", "on_demand"])
def test_after_an_idle_spell_a_grab_is_at_the_live_edge(rtsp_server: ServerFactory, mode: str) -> None:
    server = rtsp_server(fps=FPS)
    baseline = live_edge_ms(server.url)
    states = States()
    source = RtspSource("cam", config(server.url, mode=mode), password=None, on_state=states)
    source.start()
    try:
        if mode == "persistent":
            states.wait(True)
        time.sleep(3)  # the idle spell is the point: plain OpenCV would hand out a 3 s old frame now
        frame = source.grab()
        age = age_ms(frame.pixels, frame.captured_at)
    finally:
        source.stop()
    assert age <= baseline + 2 * INTERVAL_MS, (age, baseline)
    assert frame.size == (640, 360)


def test_a_killed_server_is_unavailable_then_reconnected(rtsp_server: ServerFactory) -> None:
    server = rtsp_server(fps=FPS)
    states = States()
    source = RtspSource("cam", config(server.url), password=None, on_state=states)
    source.start()
    try:
        states.wait(True)
        server.kill()
        states.wait(False)
        with pytest.raises(SourceError, match="camera 'cam' is unavailable") as caught:
            source.grab()
        assert caught.value.code == "camera_unavailable"
        server.restart()
        states.wait(True, count=2)
        assert decode_blocks(source.grab().pixels) is not None
    finally:
        source.stop()


def test_a_hung_server_is_noticed_within_the_read_timeout(rtsp_server: ServerFactory) -> None:
    server = rtsp_server(fps=FPS)
    states = States()
    source = RtspSource("cam", config(server.url, read_timeout_s=1), password=None, on_state=states)
    source.start()
    try:
        states.wait(True)
        server.pause()
        started = time.monotonic()
        states.wait(False, timeout=30)
        # The read timeout (1 s) ends the wait, not OpenCV's default of 30 s; a bound, not a speed.
        assert time.monotonic() - started < 15
        with pytest.raises(SourceError, match="unavailable"):
            source.grab()  # never the stale frames OpenCV still holds
        server.resume()
        states.wait(True, count=2)
        source.grab()
    finally:
        source.stop()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_twenty_reconnects_leak_no_thread_and_no_socket(rtsp_server: ServerFactory) -> None:
    server = rtsp_server(fps=FPS)
    states = States()
    source = RtspSource("cam", config(server.url), password=None, on_state=states)
    source.start()
    try:
        states.wait(True)
        threads, fds = threading.active_count(), open_fds()
        for cycle in range(1, 21):
            server.kill()
            states.wait(False, count=cycle)
            server.restart()
            states.wait(True, count=cycle + 1)
        assert threading.active_count() == threads
        assert open_fds() <= fds + 2  # the server's own pipes come and go; the source holds one socket
    finally:
        source.stop()
    assert threading.active_count() == threads - 1  # the reader thread ended


def test_credentials_are_sent_but_never_shown(rtsp_server: ServerFactory, caplog: pytest.LogCaptureFixture) -> None:
    server = rtsp_server(fps=FPS)
    source = RtspSource("cam", config(server.url, username="viewer", open_timeout_s=1), password="s3cr@t")
    server.kill()
    with pytest.raises(SourceError) as caught:
        RtspSource("cam", config(server.url, username="viewer", mode="on_demand", open_timeout_s=1),
                   password="s3cr@t").grab()
    assert "s3cr" not in str(caught.value) and "viewer" not in str(caught.value)
    assert "rtsp://***:***@127.0.0.1" in str(caught.value)
    source.start()
    source.stop()
    assert all("s3cr" not in r.getMessage() for r in caplog.records)


def test_username_and_password_go_into_the_url() -> None:
    url = stream_url(config("rtsp://cam.local:8554/live", username="admin"), "p@ss/word")
    assert url == "rtsp://admin:p%40ss%2Fword@cam.local:8554/live"


def test_a_last_snapshot_older_than_allowed_is_refused() -> None:
    source = LatestSnapshot("cam", "edge_vlm/cam/snapshot", max_frame_age_s=60)
    source.update(Frame("cam", np.zeros((2, 2, 3), np.uint8), (2, 2), b"", "RAW", time.time() - 61))
    with pytest.raises(SourceError, match="its last snapshot is 61 s old, over max_frame_age_s = 60") as caught:
        source.grab()
    assert caught.value.code == "stale_frame"


def test_a_reader_that_falls_behind_hands_out_frames_as_old_as_they_are(rtsp_server: ServerFactory) -> None:
    server = rtsp_server(fps=FPS)
    states = States()
    source = RtspSource("cam", config(server.url, max_frame_age_s=1.0), password=None, on_state=states)
    source.on_frame = lambda bgr: time.sleep(0.15)  # a consumer slower than the stream
    source.sample_interval_s = 0
    source.start()
    try:
        states.wait(True)
        frame = source.grab()
        # The capture time follows the stream's (give or take the server's own latency and a frame).
        assert abs(age_ms(frame.pixels, frame.captured_at)) < 500
        deadline = time.monotonic() + 15
        stale: SourceError | None = None
        while stale is None:
            try:
                frame = source.grab()
            except SourceError as error:
                stale = error
                continue
            assert time.monotonic() < deadline, "the reader never looked behind"
            assert abs(age_ms(frame.pixels, frame.captured_at)) < 500
        assert stale.code == "stale_frame"
    finally:
        source.stop()


class MuteCamera:
    """An RTSP port that accepts connections and then says nothing (``trickle=False``: a camera
    hung mid-boot) or answers a byte every 0.1 s (each read quick, the answer never complete)."""

    def __init__(self, *, trickle: bool) -> None:
        self._trickle = trickle
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"rtsp://127.0.0.1:{self._listener.getsockname()[1]}/live"
        self.connected = threading.Event()
        self._closed = threading.Event()
        self._clients: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            self._clients.append(client)
            self.connected.set()
            if self._trickle:
                threading.Thread(target=self._answer, args=(client,), daemon=True).start()

    def _answer(self, client: socket.socket) -> None:
        reply = b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nX-Padding: " + b"x" * 1000 + b"\r\n\r\n"
        try:
            for byte in reply:
                if self._closed.wait(0.1):
                    return
                client.sendall(bytes([byte]))
        except OSError:  # the client hung up
            pass

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for client in self._clients:
            client.close()


@contextmanager
def mute_camera(*, trickle: bool = False) -> Iterator[MuteCamera]:
    camera = MuteCamera(trickle=trickle)
    try:
        yield camera
    finally:
        camera.close()


class Background:
    """``call()`` on a thread of its own, so that a test can bound its wait for the outcome."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.done = threading.Event()
        self.outcome: object = None
        threading.Thread(target=self._run, args=(call,), daemon=True).start()

    def _run(self, call: Callable[[], object]) -> None:
        try:
            self.outcome = call()
        except Exception as exc:  # handed to the test
            self.outcome = exc
        finally:
            self.done.set()


@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "trickling"])
def test_an_on_demand_grab_from_a_mute_camera_ends_after_open_timeout_s(trickle: bool) -> None:
    with mute_camera(trickle=trickle) as camera:
        grab = Background(RtspSource("cam", config(camera.url, mode="on_demand", open_timeout_s=1),
                                     password=None).grab)
        assert grab.done.wait(1 + MARGIN_S), "the open is not bounded"
        assert camera.connected.is_set()
        assert isinstance(grab.outcome, SourceError), grab.outcome
        assert grab.outcome.code == "camera_unavailable" and "cannot connect" in str(grab.outcome)


def test_stop_does_not_wait_for_a_reader_stuck_in_its_open() -> None:
    with mute_camera() as camera:
        # The reader is in OpenCV's open for up to a minute; stop() must not be.
        source = RtspSource("cam", config(camera.url, open_timeout_s=60), password=None)
        source.start()
        assert camera.connected.wait(MARGIN_S)
        assert Background(source.stop).done.wait(STOP_WAIT_S + MARGIN_S), "stop() waits for the open"
        with pytest.raises(SourceError) as caught:
            source.grab()
        assert caught.value.code == "camera_unavailable"


def test_stop_ends_a_grab_waiting_for_the_next_frame(rtsp_server: ServerFactory) -> None:
    server = rtsp_server(fps=FPS)
    states = States()
    source = RtspSource("cam", config(server.url, read_timeout_s=60), password=None, on_state=states)
    source.start()
    states.wait(True)
    server.pause()  # the reader now waits in OpenCV's read for up to a minute, and a grab with it
    try:
        for _ in range(20):  # the frames already on their way are handed out first
            grab = Background(source.grab)
            if not grab.done.wait(1):
                break
        else:
            pytest.fail("the stream never stalled")
        assert Background(source.stop).done.wait(STOP_WAIT_S + MARGIN_S), "stop() waits for the reader's read"
        assert grab.done.wait(MARGIN_S), "the grab waits on after stop()"
        assert isinstance(grab.outcome, SourceError) and grab.outcome.code == "cancelled", grab.outcome
    finally:
        server.resume()
        source.stop()


@pytest.mark.mqtt
def test_sigterm_ends_the_daemon_while_an_rtsp_camera_hangs_in_its_open(
        tmp_path: Path, broker: Mosquitto, make_recorder: Callable[..., Recorder]) -> None:
    with mute_camera() as camera:
        # on_demand: the capture thread itself is in OpenCV's open, for up to open_timeout_s = 60 s.
        cameras = [{"id": "front_door", "source": {"type": "rtsp", "url": camera.url, "mode": "on_demand",
                                                   "open_timeout_s": 60}}]
        config = app_config(broker.port, cameras=cameras)
        write_config(tmp_path / "edge_vlm.yaml", config)
        recorder = make_recorder(broker.port, [f"{config.base_topic}/#", f"{config.discovery.prefix}/#"])
        daemon = DaemonProcess(tmp_path / "edge_vlm.yaml", tmp_path / "daemon.log")
        try:
            started(recorder, config)
            recorder.publish(f"{config.base_topic}/front_door/trigger", b'{"id": "hung-1"}')
            assert camera.connected.wait(MARGIN_S), "the daemon did not connect to the camera"
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(STOP_BOUND_S) == 0, daemon.text()
            assert "Still capturing for front_door" in daemon.text()
        finally:
            daemon.close()
