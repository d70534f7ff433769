"""The RTSP test camera (tests/support/rtsp_server.py), read the way the daemon reads: OpenCV's FFmpeg backend."""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tests.conftest import ServerFactory
from tests.support.rtsp import decode_blocks, frame_age_ms, open_capture
from tests.support.rtsp_server import BLOCK, COLUMNS, ROWS, TS_MOD, payload_bits

Frame = npt.NDArray[np.uint8]


def read_frames(cap: Any, count: int) -> list[Frame]:
    frames: list[Frame] = []
    for _ in range(count):
        ok, frame = cap.read()
        assert ok, f"read failed after {len(frames)} frames"
        frames.append(frame)
    return frames


def changed_pixels(a: Frame, b: Frame) -> int:
    """Pixels of the scene (below the blocks) whose grey level differs by more than compression noise."""
    top = ROWS * BLOCK + BLOCK
    diff = np.abs(a[top:].astype(np.int16).mean(axis=2) - b[top:].astype(np.int16).mean(axis=2))
    return int((diff > 40).sum())


def synthetic_frame(ts_ms: int, frame_no: int, size: tuple[int, int] = (640, 360)) -> Frame:
    frame = np.full((size[1], size[0], 3), 100, np.uint8)
    for i, bit in enumerate(payload_bits(ts_ms, frame_no)):
        r, c = divmod(i, COLUMNS)
        frame[r * BLOCK:(r + 1) * BLOCK, c * BLOCK:(c + 1) * BLOCK] = 255 if bit else 0
    return frame


def test_decode_blocks_checks_its_checksum() -> None:
    frame = synthetic_frame(TS_MOD - 1, 2**32 - 1)
    assert decode_blocks(frame) == (TS_MOD - 1, 2**32 - 1)
    assert decode_blocks(frame[:, :, 0]) == (TS_MOD - 1, 2**32 - 1)
    frame[BLOCK + 4:BLOCK + 12, 4:12] = 255 - frame[BLOCK + 8, 8]  # one bit flipped
    assert decode_blocks(frame) is None
    assert decode_blocks(np.zeros((360, 640, 3), np.uint8)) is None
    assert decode_blocks(np.random.default_rng(1).integers(0, 256, (360, 640, 3), np.uint8)) is None
    assert decode_blocks(np.zeros((20, 640, 3), np.uint8)) is None


def test_frame_age_handles_the_wrap() -> None:
    now_ms = time.time_ns() // 1_000_000
    age = frame_age_ms(synthetic_frame(now_ms - 250, 7))
    assert age is not None and 250 <= age < 400
    future = frame_age_ms(synthetic_frame(now_ms + 5_000, 7))
    assert future is not None and -5_000 <= future < -4_800


@pytest.mark.parametrize("size", [(640, 360), (1280, 720), (1920, 1080)])
def test_frames_carry_time_and_number(rtsp_server: ServerFactory, size: tuple[int, int]) -> None:
    server = rtsp_server(size=size)
    began = time.monotonic()
    cap = open_capture(server.url)
    assert cap.isOpened()
    frames = read_frames(cap, 30)
    first_frame_s = time.monotonic() - began
    ages = [frame_age_ms(f) for f in frames[-5:]]  # at the live edge
    cap.release()
    assert frames[0].shape == (size[1], size[0], 3)
    decoded = [decode_blocks(f) for f in frames]
    assert all(d is not None for d in decoded), f"{decoded.count(None)}/30 frames did not decode"
    numbers = [d[1] for d in decoded if d is not None]
    assert numbers == sorted(set(numbers)) and numbers[-1] - numbers[0] < 40
    assert first_frame_s < 5.0
    assert all(a is not None and 0 < a < 1000 for a in ages), ages


def test_clients_come_and_go_and_restart_keeps_the_port(rtsp_server: ServerFactory) -> None:
    server = rtsp_server()
    port = server.port
    first, second = open_capture(server.url), open_capture(server.url)
    a, b = decode_blocks(read_frames(first, 20)[-1]), decode_blocks(read_frames(second, 20)[-1])
    assert a is not None and b is not None and abs(a[1] - b[1]) < 20  # one shared stream
    first.release()
    second.release()
    again = open_capture(server.url)  # after every client left
    assert all(decode_blocks(f) is not None for f in read_frames(again, 5))

    server.restart()
    assert server.port == port
    for _ in range(20):  # the old connection is gone: reads fail fast, after the frames it had buffered
        ok, _frame = again.read()
        if not ok:
            break
    else:
        pytest.fail("reads on a connection to the stopped server kept succeeding")
    again.release()
    cap = open_capture(server.url)
    last = decode_blocks(read_frames(cap, 10)[-1])
    cap.release()
    assert last is not None and last[1] < 60  # a new server process: its frame counter started again


def test_hung_server_blocks_a_read_for_the_read_timeout(rtsp_server: ServerFactory) -> None:
    server = rtsp_server()
    cap = open_capture(server.url, read_timeout_ms=1000)
    read_frames(cap, 3)
    server.pause()
    try:
        durations = []
        for _ in range(30):  # buffered frames come out at once; then a read waits for the timeout
            began = time.monotonic()
            cap.read()
            durations.append(time.monotonic() - began)
            if durations[-1] > 0.5:
                break
        assert 0.8 < durations[-1] < 2.5, durations
    finally:
        server.resume()
        cap.release()


def test_motion_pattern_switches_at_run_time(rtsp_server: ServerFactory) -> None:
    server = rtsp_server(pattern="still")
    cap = open_capture(server.url)
    still = read_frames(cap, 8)
    still_changes = max(changed_pixels(x, y) for x, y in itertools.pairwise(still))
    server.start_motion()
    moving_changes = 0
    deadline = time.monotonic() + 3.0
    previous = read_frames(cap, 1)[0]
    while moving_changes < 500 and time.monotonic() < deadline:
        current = read_frames(cap, 1)[0]
        moving_changes = max(moving_changes, changed_pixels(previous, current))
        previous = current
    cap.release()
    assert still_changes < 50, still_changes
    assert moving_changes >= 500, moving_changes
