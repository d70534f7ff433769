"""What describing what happened costs the board's NPU: a clip of K key frames as one composite image
(edge_vlm's way) against K separate descriptions (the naive way) and a single-frame description, in
one run; and the multi-image input of RKLLM 1.3 (``n_image`` = K), computed from the same counts.

The daemon's real vlm backend runs (its worker process, the ctypes binding) with the board's parts
replaced at their interfaces, as in benchmarks/npu_cost.py: the imgenc stand-in logs each encoder
pass, the test RKLLM runtime each run's prefilled image and prompt tokens and generated tokens. The
clip is made as the daemon makes it (frames.buffer, frames.clip) from four different scenes.

The counts become board seconds per model family by Rockchip's published stage costs (rknn-llm
benchmark, v1.2.2-v1.3.0, RK3588 w8a8: encoder time per image, prefill time per token from the
image-token prefill, decode rate; rknn-llm's published benchmark tables): encoder passes x
encoder time + (image tokens + prompt tokens) x prefill per token + generated / decode rate, with
the family's image tokens per pass. Multi-image: K encoder passes and K x image tokens, the rest as
the composite (not run: the test runtime takes one image per run, and no board here says which
converted families accept n_image > 1). The test runtime counts a word as a token.

Run: .venv/bin/python -m benchmarks.clip_cost
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from benchmarks import help_argument
from benchmarks.npu_cost import Work, counted_vlm
from edge_vlm.camera_state import CameraStates
from edge_vlm.config.models import AppConfig
from edge_vlm.config.sources import ClipConfig
from edge_vlm.core.contracts import Origin
from edge_vlm.frames import Frame, decode_image
from edge_vlm.frames.buffer import FrameBuffer, KeptFrame
from edge_vlm.frames.clip import composite, key_frames
from edge_vlm.inference.answers import answer
from edge_vlm.inference.job_maker import JobMaker
from edge_vlm.ingest.trigger import Trigger
from tests.support import images
from tests.support.npu import vlm_backend

K = 4
STANDIN_IMAGE_TOKENS = 196  # what the imgenc stand-in gives per pass (qwen2-vl-2b's shape)
DESCRIPTION = ("A person in a red jacket walks up the path to the front door, leaves a parcel on the step "
               "and walks back to a white van at the kerb")


@dataclass(frozen=True)
class Family:
    name: str
    encoder_s: float
    prefill_ms: float  # for ``prefill_tokens`` (the published row)
    prefill_tokens: int
    decode_tokens_per_s: float
    image_tokens: int  # per encoder pass

    def board_s(self, work: Work, *, passes: int | None = None) -> float:
        passes = work.encoder_passes if passes is None else passes
        prefilled = passes * self.image_tokens + work.prompt_tokens
        return (passes * self.encoder_s + prefilled * self.prefill_ms / self.prefill_tokens / 1000
                + work.generated_tokens / self.decode_tokens_per_s)


FAMILIES = (  # RK3588 w8a8, rknn-llm v1.2.2-v1.3.0 (Qwen3-VL v1.2.3+, Qwen3.5 v1.3.0)
    Family("Qwen2-VL-2B", 3.28, 632.6, 196, 16.6, 196),
    Family("Qwen2.5-VL-3B", 2.93, 1120, 196, 8.66, 196),
    Family("Qwen3-VL-2B", 2.08, 649, 196, 14.91, 196),
    Family("Qwen3.5-0.8B", 0.69, 1560, 216, 27, 196),
    Family("MiniCPM-V-2.6", 3.27, 826, 64, 4.18, 64),
    Family("SmolVLM-256M", 0.842, 77.3, 128, 78, 64),
)


def clip_frame(camera: str) -> tuple[Frame, list[KeptFrame]]:
    """Four scenes as a camera's buffer keeps them, picked and laid out as the daemon does; and the
    key frames."""
    buffer = FrameBuffer(ClipConfig())
    now = time.time()
    for index, name in enumerate(("garden_night", "driveway", "front_door", "driveway")):
        bgr = cv2.imdecode(np.frombuffer(images.sample(name), np.uint8), cv2.IMREAD_COLOR)
        assert bgr is not None
        bgr = cv2.flip(bgr, 1) if index == 3 else bgr  # the driveway again, seen the other way: a scene of its own
        buffer.offer(cv2.resize(bgr, (1280, 720)), now - 6 + 2 * index)
    picked = key_frames(buffer.frames(since=0), K)
    pixels, clip = composite(picked)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    assert ok
    return Frame(camera, pixels, (pixels.shape[1], pixels.shape[0]), jpeg.tobytes(), "JPEG", now, clip=clip), picked


def main() -> None:
    help_argument(__doc__)
    def make_config(directory: Path, library: Path) -> AppConfig:
        return AppConfig.model_validate({
            "backend": vlm_backend(directory, library, abi="1.3"),
            "cameras": [{"id": "gate", "prompt": f"What happened at the gate? [[reply:{DESCRIPTION}]]"}]})

    with counted_vlm(make_config) as (app, backend, counter):
        maker = JobMaker(app, CameraStates(app), backend)
        camera = app.camera("gate")
        assert camera is not None

        def describe(frame: Frame) -> Work:
            job = maker.make(Trigger("gate", Origin.TRIGGER), camera, frame, request_id="b", capture_ms=0.0,
                             scene=None)
            answer(backend, job)
            return counter.since_last()

        def decoded(data: bytes) -> Frame:
            return decode_image(data, camera="gate", captured_at=time.time(),
                                max_bytes=app.limits.max_payload_bytes, max_pixels=app.limits.max_image_pixels)

        started = time.perf_counter()
        clip, picked = clip_frame("gate")
        clip_ms = (time.perf_counter() - started) * 1000
        single = describe(decoded(images.sample("front_door")))
        composite_work = describe(clip)
        separate = Work()  # the same key frames, each described by itself
        for kept in picked:
            one = describe(decoded(kept.jpeg))
            for field in ("encoder_passes", "runs", "image_tokens", "prompt_tokens", "generated_tokens"):
                setattr(separate, field, getattr(separate, field) + getattr(one, field))
    assert clip.clip is not None
    frames = len(clip.clip.times)
    print(f"Counted (the real backend, stand-ins for the board): a clip of {frames} key frames in a "
          f"{clip.clip.columns}x{clip.clip.rows} grid, made in {clip_ms:.0f} ms on this CPU")
    print(f"{'way':22} {'encoder':>7} {'runs':>4} {'image tok':>9} {'prompt tok':>10} {'generated':>9}")
    for way, work in (("single frame", single), ("clip, composite", composite_work),
                      (f"{frames} separate frames", separate)):
        print(f"{way:22} {work.encoder_passes:7d} {work.runs:4d} {work.image_tokens:9d} {work.prompt_tokens:10d} "
              f"{work.generated_tokens:9d}")
    assert composite_work.encoder_passes == single.encoder_passes == 1, "a clip is one encoder pass"
    assert composite_work.image_tokens == single.image_tokens == STANDIN_IMAGE_TOKENS
    print()
    print("Board seconds by published stage costs (RK3588 w8a8), and against a single-frame description:")
    print(f"{'family':14} {'single':>7} | {'composite':>9} {'x':>5} | {'multi-image':>11} {'x':>5} | "
          f"{'separate':>8} {'x':>5}")
    for family in FAMILIES:
        one_s = family.board_s(single)
        grid_s = family.board_s(composite_work)
        multi_s = family.board_s(composite_work, passes=frames)
        apart_s = family.board_s(separate)
        print(f"{family.name:14} {one_s:7.2f} | {grid_s:9.2f} {grid_s / one_s:5.2f} | {multi_s:11.2f} "
              f"{multi_s / one_s:5.2f} | {apart_s:8.2f} {apart_s / one_s:5.2f}")
        assert grid_s <= 1.3 * one_s, f"{family.name}: a composite clip costs {grid_s / one_s:.2f}x a single frame"


if __name__ == "__main__":
    main()
