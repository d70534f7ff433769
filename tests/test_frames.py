"""Decoding: every kind of bad image is refused with a reason; good ones decode at the right size."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_vlm.core.errors import ImageError
from edge_vlm.frames import decode as frames
from edge_vlm.frames import decode_image
from tests.support import images

LIMITS = {"max_bytes": 5_000_000, "max_pixels": 40_000_000}


def decode(data: bytes, min_long_side: int | None = None, **limits: int):  # type: ignore[no-untyped-def]
    return decode_image(data, camera="cam", captured_at=1.0, min_long_side=min_long_side,
                        **{**LIMITS, **limits})


def test_jpeg_decodes_to_rgb_at_full_size() -> None:
    pixels = images.scene(320, 200)
    frame = decode(images.encode(pixels, "JPEG", quality=95))
    assert frame.size == (320, 200) == frame.source_size
    assert frame.format == "JPEG"
    assert frame.pixels.dtype == np.uint8 and frame.pixels.shape == (200, 320, 3)
    assert np.abs(frame.pixels.astype(int) - pixels).mean() < 3  # RGB order kept, not BGR


def test_large_jpeg_is_decoded_at_a_reduced_scale_that_still_covers_the_need() -> None:
    frame = decode(images.jpeg(1920, 1080), min_long_side=640)
    assert frame.source_size == (1920, 1080)
    assert frame.size == (960, 540)  # 1/2: 1/4 would give 480 < 640
    assert decode(images.jpeg(1920, 1080), min_long_side=448).size == (480, 270)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_png_of_any_mode_becomes_rgb(mode: str) -> None:
    from PIL import Image

    image = Image.fromarray(images.scene(40, 30)).convert("L" if mode == "I;16" else mode)
    if mode == "I;16":
        image = image.convert("I").convert("I;16")
    import io

    out = io.BytesIO()
    image.save(out, "PNG")
    frame = decode(out.getvalue())
    assert frame.pixels.shape == (30, 40, 3)
    assert frame.format == "PNG"


@pytest.mark.parametrize(("data", "code", "says"), [
    (b"", "bad_image", "empty payload"),
    (b"GIF89a" + bytes(100), "bad_image", "not a JPEG or PNG image (106 bytes): it is a GIF, which is not accepted"),
    (images.jpeg()[:3000], "bad_image", "could not be decoded: image file is truncated"),  # no EOI: Pillow
    (images.png()[:60], "bad_image", "PNG"),
    (images.png_header_only(8000, 6000), "image_too_large", "48.0 megapixels is over the limit of 40.0"),
    (images.png_header_only(20000, 20000), "image_too_large", "decompression bomb"),
])
def test_bad_images_are_refused_with_a_reason(data: bytes, code: str, says: str) -> None:
    with pytest.raises(ImageError) as caught:
        decode(data)
    assert caught.value.code == code
    assert says in str(caught.value)


def test_payload_limit_is_checked_before_anything_else() -> None:
    with pytest.raises(ImageError) as caught:
        decode(images.jpeg(), max_bytes=1000)
    assert caught.value.code == "payload_too_large"
    assert "limits.max_payload_bytes" in str(caught.value)


def test_jpeg_for_publishing_is_the_original_when_small_enough() -> None:
    data = images.jpeg(640, 360)
    frame = decode(data, min_long_side=160)
    assert frame.jpeg(max_bytes=len(data)) is data
    smaller = frame.jpeg(max_bytes=len(data) - 1)  # re-encoded from the decoded (reduced) pixels
    assert smaller[:2] == b"\xff\xd8"
    assert decode(smaller).size == frame.size == (160, 90)
    png_frame = decode(images.png())
    assert png_frame.jpeg(max_bytes=10**9)[:2] == b"\xff\xd8"


# --- Issue 10, part 7 (wrong answers from valid images) and part 6 (payload bytes echoed) -----------

def with_frame_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its SOF header claiming width x height (its data left as it is)."""
    pos = 2
    while jpeg[pos + 1] not in (0xC0, 0xC1, 0xC2):
        pos += 2 + int.from_bytes(jpeg[pos + 2:pos + 4], "big")
    return jpeg[:pos + 5] + struct.pack(">HH", height, width) + jpeg[pos + 9:]


@pytest.mark.parametrize("min_long_side", [None, 640])
def test_jpeg_whose_header_claims_more_than_its_data_holds_is_refused(min_long_side: int | None) -> None:
    """libjpeg meets the end marker early, warns (Pillow drops the warning) and pads with grey: a
    2.5 KB JPEG was described as 6000x6000 of invented grey, at full and at reduced scale."""
    small = images.jpeg(120, 90, quality=75)
    lying = with_frame_size(small, 6000, 6000)
    assert len(lying) < 5000 and lying.endswith(b"\xff\xd9")
    with pytest.raises(ImageError) as caught:
        decode(lying, min_long_side=min_long_side)
    assert caught.value.code == "bad_image"
    assert "6000x6000 is truncated" in str(caught.value)


def second_scan(jpeg: bytes) -> int:
    return jpeg.index(b"\xff\xda", jpeg.index(b"\xff\xda") + 2)


@pytest.mark.parametrize(("cut", "says"), [
    # baseline: decoded from its scan followed by zeros instead of the end marker, libjpeg runs dry
    (lambda j: j[:len(j) // 2], "could not be decoded: image file is truncated"),
    (lambda j: j[:-200], "could not be decoded: image file is truncated"),
    # progressive: the first scan (DC of all components) is there, the 63 AC coefficients are not
    (lambda j: images.encode(images.scene(1600, 1200), "JPEG", progressive=True)[:second_scan(
        images.encode(images.scene(1600, 1200), "JPEG", progressive=True))], "it ends before the data"),
])
def test_jpeg_cut_short_and_given_a_new_end_marker_is_refused(cut: Callable[[bytes], bytes], says: str) -> None:
    short = cut(images.jpeg(1600, 1200, quality=90)) + b"\xff\xd9"
    for min_long_side in (None, 400):
        with pytest.raises(ImageError, match=says) as caught:
            decode(short, min_long_side=min_long_side)
        assert caught.value.code == "bad_image"


def test_png_whose_image_data_ends_early_is_refused() -> None:
    """A complete zlib stream with half the rows: Pillow decodes the rest as zeros."""
    rows = images.scene(100, 80)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows[:40])
    header = struct.pack(">IIBBBBB", 100, 80, 8, 2, 0, 0, 0)
    short = (images.PNG_MAGIC + images.png_chunk(b"IHDR", header) + images.png_chunk(b"IDAT", zlib.compress(raw))
             + images.png_chunk(b"IEND", b""))
    says = "100x80 is truncated: its image data inflates to 12040 of the 24080"
    with pytest.raises(ImageError, match=says) as caught:
        decode(short)
    assert caught.value.code == "bad_image"


@pytest.mark.parametrize("options", [{"optimize": True}, {"progressive": True}, {"quality": 5}])
def test_the_completeness_bound_does_not_refuse_a_genuine_flat_image(options: dict[str, object]) -> None:
    """A flat colour codes in about the least data a JPEG can hold (optimized Huffman tables: two
    bits a block): the bound is a true lower one."""
    flat = np.full((1200, 1600, 3), (70, 130, 200), np.uint8)
    frame = decode(images.encode(flat, "JPEG", **options))
    assert frame.size == (1600, 1200)
    assert np.abs(frame.pixels.astype(int) - flat).mean() < 8  # quality 5 shifts the colour a little


def test_16_bit_png_keeps_its_levels() -> None:
    """Pillow's convert("RGB") clips 16-bit grey to 255: a gradient decoded with mean 254."""
    gradient = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (64, 1))
    sixteen = decode(images.png_raw(gradient, 16, 0))
    eight = decode(images.encode((gradient >> 8).astype(np.uint8), "PNG"))
    assert eight.pixels.mean() == 127.5
    assert abs(sixteen.pixels.mean() - 127.5) < 0.5
    assert np.abs(sixteen.pixels.astype(int) - eight.pixels).max() <= 1


def test_exif_rotated_portrait_is_upright() -> None:
    """A phone's portrait photo: stored landscape, EXIF orientation 6 ("turn 90 degrees clockwise")."""
    upright = images.scene(300, 400, seed=3)  # 300 wide, 400 high
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # what the sensor wrote: 400 wide, 300 high
    data = images.encode(stored, "JPEG", quality=95, exif=images.exif_orientation(6))
    for min_long_side in (None, 200):
        frame = decode(data, min_long_side=min_long_side)
        assert frame.source_size == (300, 400)
        width, height = frame.size
        assert height > width
        expected = np.asarray(Image.fromarray(upright).resize(frame.size, Image.Resampling.BOX))
        assert np.abs(frame.pixels.astype(int) - expected).mean() < 6
    published = frame.jpeg(max_bytes=10**7)
    assert published != data  # re-encoded upright: whatever shows it need not know EXIF
    assert Image.open(io.BytesIO(published)).size == frame.size


@pytest.mark.parametrize("payload", [
    b"PASSWORD=correct horse battery staple",  # another application's retained topic
    b"\xff\xd8\xffPASSWORD=correct horse",  # starts like a JPEG
    b"\x89PNG\r\n\x1a\nPASSWORD=correct horse",  # starts like a PNG
    b"GIF89aPASSWORD=correct horse battery",
])
def test_refusals_never_quote_the_payload(payload: bytes) -> None:
    with pytest.raises(ImageError) as caught:
        decode(payload)
    message = str(caught.value)
    assert f"({len(payload)} bytes" in message
    assert "PASS" not in message.upper().replace("NOT A JPEG OR PNG", "")
    assert payload[:4].hex(" ") not in message and payload[:4].hex() not in message


def test_pillow_messages_lose_what_they_quote() -> None:
    assert frames._reason(SyntaxError("broken PNG file (chunk b'pASS')")) == "broken PNG file (chunk (...))"


RSS_PROBE = """
import re
from pathlib import Path
from edge_vlm.frames import decode_image
from tests.support import images

def peak_kb():  # VmHWM starts afresh at exec (ru_maxrss would carry the parent's peak over)
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))

data = images.png_16bit_rgba_flat(6300, 6300)
before = peak_kb()
frame = decode_image(data, camera="c", captured_at=0.0, max_bytes=10**7, max_pixels=40_000_000)
print(len(data), before, peak_kb(), *frame.pixels.shape)
"""


def test_memory_per_decode_stays_within_the_stated_bound() -> None:
    """frames/pixels.py states at most 7 bytes a pixel (decoded source <= 4, RGB result 3) + 16 MB; asserted
    with 32 MB more for the allocator. A 16-bit RGBA PNG of 6300x6300 (372 KB) grew the peak by
    531 MiB before (627 MB peak in the daemon), 274 MiB after."""
    probe = subprocess.run([sys.executable, "-c", RSS_PROBE], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).resolve().parents[1], timeout=600)
    size, before_kb, after_kb, height, width, _ = map(int, probe.stdout.split())
    assert size < 1_000_000 and (width, height) == (6300, 6300)
    grown_mb = (after_kb - before_kb) / 1024
    bound_mb = (7 * 6300 * 6300 + 48e6) / 2**20
    assert grown_mb <= bound_mb, f"decode grew the peak RSS by {grown_mb:.0f} MB, bound {bound_mb:.0f} MB"
