"""Valid images of every kind JPEG and PNG carry decode to what a photo viewer shows.

Generated (tests/support/valid_images.py): 1x1 up to the pixel limit, aspect ratios to 1:10000,
bilevel, 2/4/8/16-bit grey, grey+alpha, 8/16-bit RGB and RGBA, palettes of 2/4/8 bits with and
without tRNS, tRNS colours, interlaced PNG, baseline/progressive and 4:2:0/4:4:4 JPEG in grey, RGB
and CMYK, EXIF orientations 1-8. Each gets exactly one outcome: an upright 8-bit RGB frame equal
to its expected picture (JPEG: within its loss), or, just over the pixel limit, ImageError
image_too_large. The pixel limit is 4 megapixels here to keep the run short; the daemon's is 40.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from edge_vlm.core.errors import ImageError
from edge_vlm.frames import Frame, decode_image
from tests.support import images
from tests.support.valid_images import KINDS, ValidImage, catalogue, mismatch, valid_images

MAX_PIXELS = 4_000_000
EXAMPLES_PER_KIND = 8  # x 21 kinds
REDUCED_TOLERANCE = 12.0  # mean difference of a DCT-scaled decode against the box-scaled picture


def decode(image: ValidImage, min_long_side: int | None = None) -> Frame:
    return decode_image(image.data, camera="cam", captured_at=0.0, max_bytes=100_000_000,
                        max_pixels=MAX_PIXELS, min_long_side=min_long_side)


def check_outcome(image: ValidImage, min_long_side: int | None = None) -> None:
    """Exactly one outcome: refused for the pixel limit when expected is None, else the picture."""
    if image.expected is None:
        with pytest.raises(ImageError) as refused:
            decode(image, min_long_side)
        assert refused.value.code == "image_too_large", image.name
        return
    frame = decode(image, min_long_side)
    height, width = image.expected.shape[:2]
    assert frame.source_size == (width, height), image.name
    if frame.size == (width, height):
        problem = mismatch(image, frame.pixels)
        assert problem is None, problem
    else:  # a reduced JPEG decode: same picture, fewer pixels
        assert image.lossy and min_long_side is not None and max(frame.size) >= min_long_side, image.name
        smaller = np.asarray(Image.fromarray(image.expected).resize(frame.size, Image.Resampling.BOX))
        difference = np.abs(frame.pixels.astype(int) - smaller).mean()
        assert difference <= REDUCED_TOLERANCE, f"{image.name} at {frame.size}: mean difference {difference:.1f}"


@pytest.mark.parametrize("kind", sorted(KINDS))
@settings(max_examples=EXAMPLES_PER_KIND, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(data=st.data(), min_long_side=st.sampled_from([None, None, 448, 640]))
def test_generated_valid_images_decode_as_a_viewer_shows_them(
        kind: str, data: st.DataObject, min_long_side: int | None) -> None:
    """Every kind gets its own examples, so that none is left out by chance."""
    image = data.draw(valid_images(MAX_PIXELS, kinds=(kind,)), label="image")
    event("over the limit" if image.expected is None else "valid")  # --hypothesis-show-statistics
    check_outcome(image, min_long_side)


@pytest.mark.parametrize("image", catalogue(MAX_PIXELS), ids=lambda image: image.name)
def test_catalogue_of_valid_images_decodes_as_a_viewer_shows_them(image: ValidImage) -> None:
    check_outcome(image)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_agrees_with_pillow_exif_transpose(orientation: int) -> None:
    """An independent oracle for the orientation tables on both sides (the generator's and ours)."""
    pixels = images.scene(37, 23, seed=orientation)
    data = images.png_raw(pixels, 8, 2, exif=images.exif_orientation(orientation))
    with Image.open(io.BytesIO(data)) as opened:
        viewer = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
    frame = decode_image(data, camera="cam", captured_at=0.0, max_bytes=10**6, max_pixels=10**6)
    assert np.array_equal(frame.pixels, viewer)
    assert frame.source_size == (viewer.shape[1], viewer.shape[0])
