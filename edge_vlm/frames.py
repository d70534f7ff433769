"""Frames: image bytes from a camera, checked, decoded and stamped.

Decoding is where hostile or broken input meets the daemon, so every check happens here, in this
order: payload size, format (JPEG or PNG only), pixel count from the header before any pixel is
decoded (decompression bombs), then a full decode that fails on truncated data instead of
inventing grey rows. JPEGs are decoded at a reduced scale when the backend needs fewer pixels
(libjpeg's DCT scaling), which is several times cheaper than decoding in full and resizing.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from edge_vlm.errors import ImageError

ACCEPTED_FORMATS = ("JPEG", "PNG")
PUBLISHED_JPEG_QUALITY = 85


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded image of one camera."""

    camera: str
    pixels: np.ndarray  # RGB, uint8, HxWx3; may be smaller than the source (reduced decode)
    source_size: tuple[int, int]  # width, height as received
    encoded: bytes  # the bytes as received
    format: str  # "JPEG" or "PNG"
    captured_at: float  # wall-clock seconds since the epoch

    @property
    def size(self) -> tuple[int, int]:
        height, width = self.pixels.shape[:2]
        return width, height

    def jpeg(self, max_bytes: int) -> bytes:
        """JPEG bytes to show this frame: the original if it is a small enough JPEG."""
        if self.format == "JPEG" and len(self.encoded) <= max_bytes:
            return self.encoded
        bgr = cv2.cvtColor(self.pixels, cv2.COLOR_RGB2BGR)
        ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, PUBLISHED_JPEG_QUALITY])
        if not ok:  # pragma: no cover - libjpeg does not fail on a valid uint8 array
            raise ImageError("could not encode the frame as JPEG")
        return bytes(buffer)


def _reduced_request(width: int, height: int, min_long_side: int | None) -> tuple[int, int] | None:
    if min_long_side is None or max(width, height) <= min_long_side:
        return None
    scale = min_long_side / max(width, height)
    return math.ceil(width * scale), math.ceil(height * scale)


def decode_image(
    data: bytes,
    *,
    camera: str,
    captured_at: float,
    max_bytes: int,
    max_pixels: int,
    min_long_side: int | None = None,
) -> Frame:
    """Check and decode ``data``; raise ImageError saying exactly what is wrong with it.

    ``min_long_side``: the backend needs at least this many pixels on the long side; a JPEG is
    decoded at the smallest DCT scale (1/2, 1/4, 1/8) that still gives that many.
    """
    if not data:
        raise ImageError("empty payload: expected the bytes of a JPEG or PNG image")
    if len(data) > max_bytes:
        raise ImageError(
            f"payload of {len(data)} bytes is over the limit of {max_bytes} (limits.max_payload_bytes)",
            code="payload_too_large",
        )
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below replaces Pillow's warning; its hard limit still applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image refused as a decompression bomb: {exc}", code="image_too_large") from None
    except UnidentifiedImageError:
        raise ImageError(
            f"not a JPEG or PNG image ({len(data)} bytes starting with {data[:8].hex(' ')})",
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"not a readable JPEG or PNG image ({len(data)} bytes): {exc}") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(
                f"image of {width}x{height} = {width * height / 1e6:.1f} megapixels is over the limit "
                f"of {max_pixels / 1e6:.1f} (limits.max_image_pixels); refused before decoding",
                code="image_too_large",
            )
        if width < 1 or height < 1:
            raise ImageError(f"image has no pixels ({width}x{height})")
        request = _reduced_request(width, height, min_long_side)
        if request is not None and image.format == "JPEG":
            image.draft("RGB", request)
        try:
            image.load()
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            pixels = np.asarray(rgb)
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"{image.format} image {width}x{height} could not be decoded: {exc}") from None
        fmt = str(image.format)
    return Frame(
        camera=camera,
        pixels=pixels,
        source_size=(width, height),
        encoded=data,
        format=fmt,
        captured_at=captured_at,
    )
