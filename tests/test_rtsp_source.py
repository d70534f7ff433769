"""The rtsp source against a real RTSP server whose frames carry their capture time and number."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from edge_vlm.config.sources import RtspSourceConfig
from edge_vlm.errors import SourceError
from edge_vlm.frames import Frame
from edge_vlm.sources.mqtt_snapshot import LatestSnapshot
from edge_vlm.sources.rtsp import RtspSource, stream_url
from tests.conftest import ServerFactory
from tests.support.rtsp import decode_blocks, open_capture

FPS = 15
INTERVAL_MS = 1000 / FPS


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
        states.wait(False, timeout=5)
        assert time.monotonic() - started < 2.5  # the read timeout, plus a frame or two
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
    secret_url = server.url.replace("rtsp://", "rtsp://viewer:s3cr%40t@")
    source = RtspSource("cam", config(secret_url, open_timeout_s=1), password=None)
    server.kill()
    with pytest.raises(SourceError) as caught:
        RtspSource("cam", config(secret_url, mode="on_demand", open_timeout_s=1), password=None).grab()
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
