"""Frames: image bytes from a camera, checked, decoded and stamped.

Decoding is where hostile or broken input meets the daemon, so every check happens here, in this
order: payload size, format (JPEG or PNG only), pixel count from the header before any pixel is
decoded (decompression bombs), completeness of the compressed data against what the header
announces (see below), then a full decode that fails on truncated data instead of inventing grey
rows. JPEGs are decoded at a reduced scale when the backend needs fewer pixels (libjpeg's DCT
scaling), which is several times cheaper than decoding in full and resizing.

The checks of the compressed data against its header are in ``completeness``, the conversion to
upright 8-bit RGB in ``pixels``.
"""

from __future__ import annotations

import io
import math
import re
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from edge_vlm.core.errors import ErrorCode, ImageError
from edge_vlm.frames.completeness import JPEG_MAGIC, PNG_MAGIC, check_complete
from edge_vlm.frames.pixels import orientation_of, upright_rgb

if TYPE_CHECKING:
    from edge_vlm.frames.clip import Clip

ACCEPTED_FORMATS = ("JPEG", "PNG")
PUBLISHED_JPEG_QUALITY = 85

# Other formats named in the refusal (from their magic numbers alone, no parser runs on them).
OTHER_FORMATS: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    ("a GIF", lambda d: d[:6] in (b"GIF87a", b"GIF89a")),
    ("a WebP", lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP"),
    ("a BMP", lambda d: d[:2] == b"BM" and len(d) >= 26),
    ("a TIFF", lambda d: d[:4] in (b"II*\x00", b"MM\x00*")),
    ("a HEIF/AVIF", lambda d: d[4:8] == b"ftyp" and d[8:12] in (b"heic", b"heix", b"mif1", b"avif", b"avis")),
    ("a JPEG 2000", lambda d: d[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or d[:4] == b"\xff\x4f\xff\x51"),
    ("a JPEG XL", lambda d: d[:2] == b"\xff\x0a" or d[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n"),
    ("a PDF", lambda d: d[:5] == b"%PDF-"),
)


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded image of one camera."""

    camera: str
    pixels: np.ndarray  # RGB, uint8, HxWx3, upright; may be smaller than the source (reduced decode)
    source_size: tuple[int, int]  # width, height as received, upright (EXIF orientation applied)
    encoded: bytes  # the bytes as received
    format: str  # "JPEG" or "PNG"
    captured_at: float  # wall-clock seconds since the epoch
    stored_upright: bool = True  # False: ``encoded`` needs its EXIF orientation applied to be upright
    clip: Clip | None = None  # a clip's composite: the key frames it shows (edge_vlm.frames.clip)

    @property
    def size(self) -> tuple[int, int]:
        height, width = self.pixels.shape[:2]
        return width, height

    def jpeg(self, max_bytes: int) -> bytes:
        """JPEG bytes to show this frame: the original if it is a small enough, upright JPEG.

        A JPEG with an EXIF orientation is re-encoded from the upright pixels, so that whatever
        shows it need not know about EXIF.
        """
        if self.format == "JPEG" and len(self.encoded) <= max_bytes and self.stored_upright:
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
    decoded at the smallest DCT scale (1/2, 1/4, 1/8) that still gives that many. No message
    quotes the payload's bytes: it may be another application's retained topic.
    """
    if not data:
        raise ImageError("empty payload: expected the bytes of a JPEG or PNG image")
    if len(data) > max_bytes:
        raise ImageError(
            f"payload of {len(data)} bytes is over the limit of {max_bytes} (limits.max_payload_bytes)",
            code=ErrorCode.PAYLOAD_TOO_LARGE,
        )
    image = _open(data)
    try:
        width, height = image.size
        fmt = str(image.format)
        _check_pixel_count(width, height, max_pixels)
        strict = check_complete(data, fmt, width, height)
        if strict is not data:
            image.close()
            image = _open(strict)
        request = _reduced_request(width, height, min_long_side)
        if request is not None and fmt == "JPEG":
            image.draft("RGB", request)
        try:
            image.load()
            orientation = orientation_of(image)
            pixels = upright_rgb(image, orientation)
        except (OSError, SyntaxError, ValueError, struct.error) as exc:
            raise ImageError(f"{fmt} image {width}x{height} could not be decoded: {_reason(exc)}") from None
    finally:
        image.close()
    return Frame(
        camera=camera,
        pixels=pixels,
        source_size=(height, width) if orientation >= 5 else (width, height),
        encoded=data,
        format=fmt,
        captured_at=captured_at,
        stored_upright=orientation == 1,
    )


def _open(data: bytes) -> Image.Image:
    """Identify ``data`` as JPEG or PNG and read its header, or say (without its bytes) what it is."""
    try:
        with warnings.catch_warnings():
            # Our own pixel limit replaces Pillow's warning; its hard limit still applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image refused as a decompression bomb: {_reason(exc)}",
                         code=ErrorCode.IMAGE_TOO_LARGE) from None
    except UnidentifiedImageError:
        raise ImageError(_unidentified(data)) from None
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise ImageError(f"not a readable JPEG or PNG image ({len(data)} bytes): {_reason(exc)}") from None


def _unidentified(data: bytes) -> str:
    """Why ``data`` is no image we take: its size and, from magic numbers only, its format."""
    if data.startswith((JPEG_MAGIC, PNG_MAGIC)):
        kind = "JPEG" if data.startswith(JPEG_MAGIC) else "PNG"
        return (f"not a JPEG or PNG image ({len(data)} bytes): it starts like a {kind} but its header is "
                "broken or cut short")
    for name, matches in OTHER_FORMATS:
        if matches(data):
            return f"not a JPEG or PNG image ({len(data)} bytes): it is {name}, which is not accepted"
    return f"not a JPEG or PNG image ({len(data)} bytes, expected one starting with a JPEG or PNG signature)"


_QUOTED = re.compile(r"""b?'[^']*'|b?"[^"]*\"""")


def _reason(exc: BaseException) -> str:
    """Pillow's message without what it quotes from the payload (chunk names, text): bytes stay ours."""
    return _QUOTED.sub("(...)", str(exc))[:200] or type(exc).__name__


def _check_pixel_count(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageError(
            f"image of {width}x{height} = {width * height / 1e6:.1f} megapixels is over the limit "
            f"of {max_pixels / 1e6:.1f} (limits.max_image_pixels); refused before decoding",
            code=ErrorCode.IMAGE_TOO_LARGE,
        )
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")

