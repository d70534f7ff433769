"""The seconds before a trigger without a stream (frames.buffer, frames.clip): what a buffer keeps
and how much memory it may take, which key frames a clip picks, and the grid they make."""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest

from edge_vlm.config.models import OpencvBackendConfig
from edge_vlm.config.sources import ClipConfig
from edge_vlm.frames import Frame
from edge_vlm.frames.buffer import FrameBuffer, KeptFrame
from edge_vlm.frames.clip import composite, key_frames, layout
from edge_vlm.inference.backends.opencv import OpencvAnalyzer, analysis_input, sequence
from edge_vlm.ingest.motion import WIDTH as MOTION_WIDTH
from tests.support import images

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
    buffer = FrameBuffer(ClipConfig())
    kept = filled(buffer, [(1000 + t / 2, None) for t in range(60)])  # 30 s at 2 fps
    assert [f.captured_at for f in kept] == [1000 + t / 2 for t in range(39, 60)]  # 10 s and the frame at its start
    assert len(kept) <= buffer.capacity == 21
    assert {f.size for f in kept} == {(640, 360)}
    assert buffer.frames(since=1025.0)[0].captured_at == 1025.0
    assert kept[-1].rgb().shape == (360, 640, 3)


def test_four_1080p_cameras_stay_within_the_stated_bound_for_three_minutes() -> None:
    """docs/cameras.md: at most (seconds * fps + 1) frames of long_side^2 * 3 bytes each per camera.
    Three minutes of camera time at 2 fps (noisy frames, JPEG's hard case), the memory Python
    allocated while the buffers took them measured by tracemalloc, not by the buffers' own count."""
    noise = np.random.default_rng(7)
    bound = ClipConfig().most_bytes
    assert bound == 21 * (640 * 640 * 3 + MOTION_WIDTH * MOTION_WIDTH)  # 26.3 MB per camera, 105 MB for four
    frames = [scene(None if n % 5 else 800, noise) for n in range(6)]
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        buffers = [FrameBuffer(ClipConfig()) for _ in range(4)]
        most = 0
        for step in range(360):
            for index, buffer in enumerate(buffers):
                buffer.offer(frames[(step + index) % len(frames)], 5000 + step / 2)
            most = max(most, tracemalloc.get_traced_memory()[0] - baseline)
    finally:
        tracemalloc.stop()
    assert all(len(b.frames(since=0)) == 21 for b in buffers)
    assert most <= 4 * bound
    assert most < 4 * bound / 10  # in practice: JPEG keeps a camera frame far below its raw size


def test_a_person_far_off_counts_as_change_and_noise_or_a_clock_does_not() -> None:
    noise = np.random.default_rng(3)
    buffer = FrameBuffer(ClipConfig(), ignore=[(0.8, 0.0, 1.0, 0.1)])  # the clock's corner
    for t in range(8):
        frame = scene(None, noise)
        frame[10:90, 1600:1900] = 30 * t % 255  # an on-screen clock, ticking
        if t in (3, 4):
            frame[600:800, 900 + 40 * t:980 + 40 * t] = 40  # a person, 80 x 200 px of 1080p, dark on grey
        buffer.offer(frame, float(t))
    changes = [round(f.change, 4) for f in buffer.frames(since=0)]
    assert max(changes[i] for i in (0, 1, 2, 6, 7)) < 0.002 <= min(changes[i] for i in (3, 4, 5))
    assert [f.captured_at for f in key_frames(buffer.frames(since=0), 4)][-1] == 7.0
    assert any(f.captured_at in (3.0, 4.0) for f in key_frames(buffer.frames(since=0), 4))


def test_key_frames_take_the_newest_and_the_changes_spread_in_time_never_two_alike() -> None:
    buffer = FrameBuffer(ClipConfig())
    # still until 3 s, a square from 3 s to 5 s moving right, still again until 8 s
    squares = [(t / 2, 200 + 150 * (t - 6) if 6 <= t < 10 else None) for t in range(17)]
    kept = filled(buffer, squares)
    picked = key_frames(kept, 4)
    times = [f.captured_at for f in picked]
    assert times[-1] == 8.0  # the newest, always
    assert any(3.0 <= t < 5.0 for t in times)  # the object was there
    assert times == sorted(times)
    assert all(a.difference(b) >= 0.002 for i, a in enumerate(picked) for b in picked[i + 1:])
    still = key_frames(filled(FrameBuffer(ClipConfig()), [(t / 2, None) for t in range(17)]), 4)
    assert [f.captured_at for f in still] == [8.0]  # nothing happened: one frame, not four alike


def snapshot(at: float, square: int | None = None) -> Frame:
    """A decoded snapshot (RGB) taken at ``at``."""
    rgb = cv2.cvtColor(scene(square), cv2.COLOR_BGR2RGB)
    return Frame("porch", rgb, (WIDTH, HEIGHT), b"", "RAW", at)


def test_snapshots_are_kept_at_about_fps_early_or_late_by_a_quarter_period_and_in_order() -> None:
    buffer = FrameBuffer(ClipConfig(fps=10))  # a period of 0.1 s
    for at in (100.0, 100.08, 100.19, 100.25, 99.0, 100.5, 100.5):  # jittered, too soon, older, the same
        buffer.keep(snapshot(at))
    assert [f.captured_at for f in buffer.frames(since=0)] == [100.0, 100.08, 100.19, 100.5]
    fast = FrameBuffer(ClipConfig(fps=10))
    for n in range(40):  # at twice fps: thinned to fps
        fast.keep(snapshot(200 + n * 0.05))
    assert len(fast.frames(since=0)) == 20


def test_the_moment_of_a_trigger_is_compared_with_the_frame_kept_before_it() -> None:
    """A snapshot kept already, or one older than the newest kept, is compared with the one before
    it, never with itself or a later one."""
    buffer = FrameBuffer(ClipConfig())
    kept = filled(buffer, [(1.0, None), (2.0, 800), (3.0, None)])
    again = buffer.as_kept(cv2.cvtColor(scene(800), cv2.COLOR_BGR2RGB), 2.0)  # the snapshot kept at 2.0
    assert again is not None and again.change == kept[1].change > 0.01  # against 1.0's yard, as when kept
    later = buffer.as_kept(cv2.cvtColor(scene(800), cv2.COLOR_BGR2RGB), 2.5)  # between 2.0 and 3.0
    assert later is not None and later.change < 0.002  # like 2.0, the newest before it, not 3.0


@pytest.mark.parametrize(("n", "grid"), [(1, (1, 1)), (2, (2, 1)), (3, (2, 2)), (4, (2, 2)), (5, (3, 2)), (9, (3, 3))])
def test_the_grid_is_near_square(n: int, grid: tuple[int, int]) -> None:
    assert layout(n) == grid


def test_the_composite_shows_each_key_frame_in_its_cell_oldest_first_labelled() -> None:
    buffer = FrameBuffer(ClipConfig())
    kept = filled(buffer, [(0.0, None), (2.0, 200), (4.0, 1400)])
    pixels, clip = composite(kept)
    assert pixels.shape == (720, 1280, 3) and (clip.columns, clip.rows) == (2, 2)
    assert clip.times == (0.0, 2.0, 4.0) and clip.span_s == 4.0
    cells = [pixels[r * 360:(r + 1) * 360, c * 640:(c + 1) * 640] for r in range(2) for c in range(2)]
    white = [int((cell[150:230] > 240).all(axis=2).sum()) for cell in cells]  # the square's band, below the label
    assert white[0] == 0 and white[1] > 5000 and white[2] > 5000 and white[3] == 0  # the fourth cell is empty
    assert (cells[0][:10, :10] == 0).all()  # the label's dark box in the corner
    assert "grid of 3 frames from the last 4 seconds" in clip.reading() and "oldest first" in clip.reading()


def test_the_opencv_backend_says_who_came_and_went_in_a_clip_from_its_cells() -> None:
    config = OpencvBackendConfig()
    analyzer = OpencvAnalyzer(config)
    analyzer.load()
    buffer = FrameBuffer(ClipConfig())
    for at, name in ((0.0, "driveway"), (2.0, "front_door"), (4.0, "garden_night")):  # nobody, 1 person, nobody
        bgr = cv2.imdecode(np.frombuffer(images.sample(name), np.uint8), cv2.IMREAD_COLOR)
        assert bgr is not None
        buffer.offer(bgr, at)
    pixels, clip = composite(buffer.frames(since=0))
    prepared = analysis_input(pixels, config.analysis_size * clip.columns)
    text, _, details = analyzer.analyze_clip(prepared, "gate", (clip.columns, clip.rows, len(clip.times)))
    assert details["people_per_frame"] == [0, 1, 0]
    assert text.startswith("1 person came and left; now: No people")
    assert [sequence(p) for p in ([0, 0], [0, 2], [1, 0], [1, 1])] == [
        "No people in any of the 2 frames", "2 people came and are still there", "1 person was there and left",
        "1 person throughout the 2 frames"]
