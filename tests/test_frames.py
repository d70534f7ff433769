"""Decoding: every kind of bad image is refused with a reason; good ones decode at the right size."""

from __future__ import annotations

import numpy as np
import pytest

from edge_vlm.errors import ImageError
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
