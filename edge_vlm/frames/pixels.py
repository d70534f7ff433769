"""Decoded images as 8-bit RGB, upright, the way a photo viewer shows them:
- EXIF orientation (1-8) is applied; ``Frame.source_size`` is the upright size.
- Every mode JPEG and PNG carry becomes 8-bit RGB with its levels kept: 16-bit samples keep their
  high byte (Pillow's own ``convert`` clips 16-bit grey to 255, which made a 16-bit gradient white),
  1/2/4-bit grey and palettes are expanded, CMYK JPEGs are converted naively (no ICC).
- Transparency (an alpha channel, or a PNG tRNS colour or palette alpha) is composited onto WHITE,
  the background of a browser page or a document: transparent PNGs are mostly logos, drawings and
  screenshots drawn in dark ink for a light background, which vanish on black; and the colour that
  happens to be stored under a fully transparent pixel (often black, sometimes leftovers) is never
  shown, as in a viewer.

Memory. A decode holds the decoded source image (Pillow: 1 byte per pixel for 1/L/P, 2 for 16-bit
grey, 4 for the others), the RGB result (3 bytes per pixel, written in place in its upright
orientation) and one band of rows being converted (1 MB of source and its temporaries, about 10 MB),
so the peak is at most 7 bytes x limits.max_image_pixels + 16 MB: 283 MB at the default 40
megapixels (it was up to 14 bytes a pixel: Pillow's RGB copy and numpy's copy of that by way of
``tobytes``). Measured for a 16-bit RGBA PNG of 6300x6300: +274 MiB, was +531 MiB. The JPEG
reduced decode only holds the reduced image. The PNG completeness check inflates in 1 MB steps.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable

import numpy as np
from PIL import ExifTags, Image

log = logging.getLogger(__name__)

BAND_BYTES = 1 << 20  # source bytes converted at a time (Pillow stores at most 4 bytes per pixel)
GREY16_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
WHITE = 255


def orientation_of(image: Image.Image) -> int:
    """The EXIF orientation (1-8); 1 when there is none or it cannot be read."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, SyntaxError, ValueError, KeyError, IndexError, TypeError, EOFError, struct.error):
        log.debug("unreadable EXIF data ignored; image taken as upright")
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


_STORED_VIEWS: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    # upright array -> a view of it in the stored orientation (each the inverse of EXIF's transform)
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, 1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, -1),
}


def upright_rgb(image: Image.Image, orientation: int) -> np.ndarray:
    """The loaded image as upright RGB uint8, converted a band of rows at a time straight into
    its upright place, so that no second full-size copy exists."""
    width, height = image.size
    upright = np.empty((width, height, 3) if orientation >= 5 else (height, width, 3), np.uint8)
    stored = _STORED_VIEWS[orientation](upright)
    _fix_16bit_transparency(image)
    rows = max(1, BAND_BYTES // (4 * width))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        band = image if (top, bottom) == (0, height) else image.crop((0, top, width, bottom))
        stored[top:bottom] = _band_rgb(band)
    return upright


def _fix_16bit_transparency(image: Image.Image) -> None:
    """A 16-bit RGB PNG's tRNS colour is in 16-bit levels but Pillow keeps 8-bit pixels: compare
    high bytes (exact for colours that differ there, the common case)."""
    transparency = image.info.get("transparency")
    if image.mode == "RGB" and isinstance(transparency, tuple) and max(transparency) > 255:
        image.info["transparency"] = tuple(value >> 8 for value in transparency)


def _band_rgb(band: Image.Image) -> np.ndarray:
    """One band as RGB uint8 (or grey HxWx1, broadcast into RGB by the caller)."""
    if band.mode in GREY16_MODES:
        return _grey16(band)
    if band.mode in ALPHA_MODES or "transparency" in band.info:
        return _on_white(band.convert("RGBA"))
    return np.asarray(band if band.mode == "RGB" else band.convert("RGB"))


def _grey16(band: Image.Image) -> np.ndarray:
    """16-bit grey (PNG; mode "I" holds the same 0..65535) to 8 bits: the high byte."""
    values = np.asarray(band)
    grey = (np.clip(values, 0, 65535).astype(np.uint16) >> 8).astype(np.uint8)
    transparency = band.info.get("transparency")
    if isinstance(transparency, int):
        grey[values == transparency] = WHITE
    return np.expand_dims(grey, 2)


def _on_white(rgba_band: Image.Image) -> np.ndarray:
    """Composite RGBA onto white: round((c * a + 255 * (255 - a)) / 255), exactly, in integers."""
    rgba = np.asarray(rgba_band)
    if rgba[..., 3].min() == 255:
        return rgba[..., :3]
    alpha = rgba[..., 3:4].astype(np.uint16)
    blended = rgba[..., :3] * alpha + WHITE * (255 - alpha) + 128  # at most 65153: fits uint16
    return ((blended + (blended >> 8)) >> 8).astype(np.uint8)  # == (x + 127) // 255 for x <= 65025
