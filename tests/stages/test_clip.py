"""The seconds before a trigger without a stream (frames.buffer, frames.clip): what a buffer keeps
and how much memory it may take, which key frames a clip picks, and the grid they make."""

from __future__ import annotations

import numpy as np
import pytest

from edge_vlm.frames.buffer import FrameBuffer, KeptFrame
from edge_vlm.frames.clip import composite, key_frames, layout

WIDTH, HEIGHT = 1920, 1080


def scene(square_x: int | None = None, noise: np.random.Generator | None = None) -> np.ndarray:
    """A 1080p BGR frame: a grey yard, a white square where an object is; camera noise if given."""
    frame = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    frame[:, : WIDTH // 2] = 120
    if square_x is not None:
        frame[400:700, square_x:square_x + 300] = 255
    if noise is not None:
        frame = np.clip(frame + noise.integers(-6, 7, frame.shape), 0, 255).astype(np.uint8)
    return frame


def filled(buffer: FrameBuffer, times_and_squares: list[tuple[float, int | None]]) -> list[KeptFrame]:
    for at, square in times_and_squares:
        buffer.offer(scene(square), at)
    return buffer.frames(since=0)


def test_a_buffer_keeps_its_last_seconds_downscaled_and_never_older_ones() -> None:
    buffer = FrameBuffer(seconds=10, fps=2, long_side=640)
    kept = filled(buffer, [(1000 + t / 2, None) for t in range(60)])  # 30 s at 2 fps
    assert [f.captured_at for f in kept] == [1000 + t / 2 for t in range(39, 60)]  # 10 s and the frame at its start
    assert len(kept) <= buffer.capacity == 21
    assert {f.size for f in kept} == {(640, 360)}
    assert buffer.frames(since=1025.0)[0].captured_at == 1025.0
    assert kept[-1].rgb().shape == (360, 640, 3)


def test_four_1080p_cameras_stay_within_the_stated_bound_for_three_minutes() -> None:
    """docs/cameras.md: at most (seconds * fps + 1) frames of long_side^2 * 3 bytes each per camera;
    noisy frames (JPEG's worst case here) at 2 fps for 180 s of camera time."""
    noise = np.random.default_rng(7)
    buffers = [FrameBuffer(seconds=10, fps=2, long_side=640) for _ in range(4)]
    bound = FrameBuffer.bound(10, 2, 640)
    assert bound == 21 * (640 * 640 * 3 + 32 * 18 * 4)  # 25.8 MB per camera, 103 MB for four
    frames = [scene(None if n % 5 else 800, noise) for n in range(6)]
    most = 0
    for step in range(360):
        for index, buffer in enumerate(buffers):
            buffer.offer(frames[(step + index) % len(frames)], 5000 + step / 2)
        most = max(most, *(b.nbytes for b in buffers))
    assert most <= bound
    assert all(len(b.frames(since=0)) == 21 for b in buffers)
    assert most < bound / 5  # in practice: JPEG keeps a camera frame far below its raw size


def test_key_frames_take_the_newest_and_the_changes_spread_in_time_never_two_alike() -> None:
    buffer = FrameBuffer(seconds=10, fps=2, long_side=640)
    # still until 3 s, a square from 3 s to 5 s moving right, still again until 8 s
    squares = [(t / 2, 200 + 150 * (t - 6) if 6 <= t < 10 else None) for t in range(17)]
    kept = filled(buffer, squares)
    picked = key_frames(kept, 4)
    times = [f.captured_at for f in picked]
    assert times[-1] == 8.0  # the newest, always
    assert any(3.0 <= t < 5.0 for t in times)  # the object was there
    assert times == sorted(times)
    assert all(a.likeness(b) >= 2.0 for i, a in enumerate(picked) for b in picked[i + 1:])
    still = key_frames(filled(FrameBuffer(10, 2, 640), [(t / 2, None) for t in range(17)]), 4)
    assert [f.captured_at for f in still] == [8.0]  # nothing happened: one frame, not four alike


@pytest.mark.parametrize(("n", "grid"), [(1, (1, 1)), (2, (2, 1)), (3, (2, 2)), (4, (2, 2)), (5, (3, 2)), (9, (3, 3))])
def test_the_grid_is_near_square(n: int, grid: tuple[int, int]) -> None:
    assert layout(n) == grid


def test_the_composite_shows_each_key_frame_in_its_cell_oldest_first_labelled() -> None:
    buffer = FrameBuffer(seconds=10, fps=2, long_side=640)
    kept = filled(buffer, [(0.0, None), (2.0, 200), (4.0, 1400)])
    pixels, clip = composite(kept)
    assert pixels.shape == (720, 1280, 3) and (clip.columns, clip.rows) == (2, 2)
    assert clip.times == (0.0, 2.0, 4.0) and clip.span_s == 4.0
    cells = [pixels[r * 360:(r + 1) * 360, c * 640:(c + 1) * 640] for r in range(2) for c in range(2)]
    white = [int((cell[150:230] > 240).all(axis=2).sum()) for cell in cells]  # the square's band, below the label
    assert white[0] == 0 and white[1] > 5000 and white[2] > 5000 and white[3] == 0  # the fourth cell is empty
    assert (cells[0][:10, :10] == 0).all()  # the label's dark box in the corner
    assert "grid of 3 frames from the last 4 s" in clip.reading() and "oldest first" in clip.reading()
