"""Frames: image bytes from a camera, checked, decoded and stamped.

Decoding is where hostile or broken input meets the daemon, so every check happens here, in this
order: payload size, format (JPEG or PNG only), pixel count from the header before any pixel is
decoded (decompression bombs), completeness of the compressed data against what the header
announces (see below), then a full decode that fails on truncated data instead of inventing grey
rows. JPEGs are decoded at a reduced scale when the backend needs fewer pixels (libjpeg's DCT
scaling), which is several times cheaper than decoding in full and resizing.

Images are read as a photo viewer shows them:
- EXIF orientation (1-8) is applied; ``Frame.source_size`` is the upright size.
- Every mode JPEG and PNG carry becomes 8-bit RGB with its levels kept: 16-bit samples keep their
  high byte (Pillow's own ``convert`` clips 16-bit grey to 255, which made a 16-bit gradient white),
  1/2/4-bit grey and palettes are expanded, CMYK JPEGs are converted naively (no ICC).
- Transparency (an alpha channel, or a PNG tRNS colour or palette alpha) is composited onto WHITE,
  the background of a browser page or a document: transparent PNGs are mostly logos, drawings and
  screenshots drawn in dark ink for a light background, which vanish on black; and the colour that
  happens to be stored under a fully transparent pixel (often black, sometimes leftovers) is never
  shown, as in a viewer.

Completeness. libjpeg reaching the end-of-image marker before the last block does not fail: it
warns ("premature end of data segment"), which Pillow discards, and fills the remaining blocks
with mid-grey; likewise a PNG whose zlib stream ends early decodes with zero rows. Pillow only
refuses data that stops mid-stream (no end marker). So a 2.5 KB JPEG whose header claims 6000x6000
used to be described as 36 megapixels of invented grey. Before decoding, the compressed data is
measured against the header: every Huffman-coded block of a JPEG needs at least one bit per
symbol it must hold (two in a sequential scan: DC and AC; one in a progressive DC scan), every
component needs its DC and (progressive) all 63 AC coefficients covered by some scan, and a PNG's
image data must inflate to the bytes its IHDR requires (exact; it costs a second inflate, about
+50 % on a PNG decode). The JPEG bounds are lower bounds, so no complete image is refused. Then a
single-scan baseline JPEG (what cameras send) is decoded with 8 zero bytes in place of its end
marker: libjpeg cannot pad a scan that runs out of bytes, so one cut short anywhere but in its last
few bytes is refused as truncated (see _strict_jpeg). A progressive or multi-scan JPEG cut inside
an AC scan and given a new end marker still passes, blurred; arithmetic-coded JPEGs get only the
coverage check.

Memory. A decode holds the decoded source image (Pillow: 1 byte per pixel for 1/L/P, 2 for 16-bit
grey, 4 for the others), the RGB result (3 bytes per pixel, written in place in its upright
orientation) and one band of rows being converted (1 MB of source and its temporaries, about 10 MB),
so the peak is at most 7 bytes x limits.max_image_pixels + 16 MB: 283 MB at the default 40
megapixels (it was up to 14 bytes a pixel: Pillow's RGB copy and numpy's copy of that by way of
``tobytes``). Measured for a 16-bit RGBA PNG of 6300x6300: +274 MiB, was +531 MiB. The JPEG
reduced decode only holds the reduced image. The PNG completeness check inflates in 1 MB steps.
"""

from __future__ import annotations

import io
import logging
import math
import re
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from edge_vlm.errors import ImageError

log = logging.getLogger(__name__)

ACCEPTED_FORMATS = ("JPEG", "PNG")
PUBLISHED_JPEG_QUALITY = 85
BAND_BYTES = 1 << 20  # source bytes converted at a time (Pillow stores at most 4 bytes per pixel)
INFLATE_CHUNK = 1 << 20  # output bytes per zlib call while measuring a PNG's image data
GREY16_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
WHITE = 255

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
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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
            code="payload_too_large",
        )
    image = _open(data)
    try:
        width, height = image.size
        fmt = str(image.format)
        _check_pixel_count(width, height, max_pixels)
        strict = _check_complete(data, fmt, width, height)
        if strict is not data:
            image.close()
            image = _open(strict)
        request = _reduced_request(width, height, min_long_side)
        if request is not None and fmt == "JPEG":
            image.draft("RGB", request)
        try:
            image.load()
            orientation = _orientation(image)
            pixels = _upright_rgb(image, orientation)
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
        raise ImageError(f"image refused as a decompression bomb: {_reason(exc)}", code="image_too_large") from None
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
            code="image_too_large",
        )
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")


def _check_complete(data: bytes, fmt: str, width: int, height: int) -> bytes:
    """Refuse data too short for the pixels its header announces (libjpeg and zlib would pad it);
    return the bytes to decode: ``data``, or for a single-scan sequential JPEG its scan followed by
    zero bytes instead of the end marker, so that libjpeg cannot pad it (see _strict_jpeg)."""
    if fmt == "JPEG":
        layout = _jpeg_layout(data)
        shortfall = layout.shortfall
    else:
        layout, shortfall = None, _png_shortfall(data)
    if shortfall is not None:
        raise ImageError(f"{fmt} image {width}x{height} is truncated: {shortfall}")
    return _strict_jpeg(data, layout) if layout is not None else data


def _strict_jpeg(data: bytes, layout: _JpegLayout) -> bytes:
    """A single-scan sequential Huffman JPEG with the end marker replaced by 8 zero bytes.

    libjpeg pads a scan that meets a marker early, but it cannot pad one that runs out of bytes:
    it suspends, waiting for more, and Pillow reports "image file is truncated" (unless something
    set ImageFile.LOAD_TRUNCATED_IMAGES). A complete scan needs at most 4 bytes of look-ahead
    after its last block, which the zeros give; a scan that lacks more than a few blocks' worth
    of data is refused. (Progressive and multi-scan JPEGs are read whole into libjpeg's
    coefficient buffer before any output, so they need their end marker: for those the lower
    bounds and the scan coverage are the check.)"""
    if layout.frame is None or layout.frame.progressive or not layout.frame.huffman or layout.scans != 1:
        return data
    return data[:layout.scan_end] + bytes(8)


# --- JPEG completeness ---------------------------------------------------------------------------

_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_ARITHMETIC = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_SOS, _EOI = 0xDA, 0xD9
_RESTART = re.compile(rb"\xff[\xd0-\xd7]")
ALL_COEFFICIENTS = (1 << 64) - 1


@dataclass
class _JpegFrame:
    width: int
    height: int
    components: dict[int, tuple[int, int]]  # component id -> (horizontal, vertical) sampling
    progressive: bool
    huffman: bool
    coverage: dict[int, int]  # component id -> bit mask of coefficients some first scan codes

    @property
    def max_sampling(self) -> tuple[int, int]:
        return max(h for h, _ in self.components.values()), max(v for _, v in self.components.values())

    def blocks(self, scan_components: list[int]) -> int:
        """How many 8x8 blocks a scan of these components codes (an interleaved one: whole MCUs)."""
        hmax, vmax = self.max_sampling
        if len(scan_components) == 1:
            h, v = self.components[scan_components[0]]
            return math.ceil(math.ceil(self.width * h / hmax) / 8) * math.ceil(math.ceil(self.height * v / vmax) / 8)
        mcus = math.ceil(self.width / (8 * hmax)) * math.ceil(self.height / (8 * vmax))
        return mcus * sum(self.components[c][0] * self.components[c][1] for c in scan_components)


@dataclass
class _JpegLayout:
    frame: _JpegFrame | None = None
    scans: int = 0
    scan_end: int = 0  # where the last scan's coded data ends
    shortfall: str | None = None  # what the data lacks for the header's size


def _jpeg_layout(data: bytes) -> _JpegLayout:
    """The JPEG's frame and scans, measured. ``frame`` is None when the file is too odd to tell
    (no end marker, broken segments, no frame header): Pillow's decode then has the last word."""
    layout = _JpegLayout()
    pos = 2
    while layout.shortfall is None:
        found = _next_marker(data, pos)
        if found is None:
            return _JpegLayout()
        marker, pos = found
        if marker == _EOI:
            layout.shortfall = _jpeg_uncovered(layout.frame)
            break
        if marker in _STANDALONE:
            continue
        length = int.from_bytes(data[pos:pos + 2], "big")
        segment = data[pos + 2:pos + length]
        if length < 2 or len(segment) != length - 2:
            return _JpegLayout()
        pos += length
        if marker in _SOF_MARKERS:
            layout.frame = _parse_sof(marker, segment)
        elif marker == _SOS:
            if layout.frame is None:
                return _JpegLayout()
            layout.scans += 1
            pos, layout.shortfall = _check_scan(data, pos, segment, layout.frame, layout.scans)
            layout.scan_end = pos
            if pos >= len(data):
                return _JpegLayout()  # no end marker: libjpeg runs dry and Pillow says "truncated"
    return layout


def _next_marker(data: bytes, pos: int) -> tuple[int, int] | None:
    """The next marker at or after ``pos`` (skipping fill bytes, as libjpeg does) and where its
    segment starts."""
    pos = data.find(b"\xff", pos)
    while pos >= 0 and pos + 1 < len(data) and data[pos + 1] == 0xFF:
        pos += 1
    if pos < 0 or pos + 1 >= len(data):
        return None
    return data[pos + 1], pos + 2


def _parse_sof(marker: int, segment: bytes) -> _JpegFrame | None:
    if len(segment) < 6:
        return None
    height, width, count = int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big"), segment[5]
    if width == 0 or height == 0 or count == 0 or len(segment) < 6 + 3 * count:
        return None
    components = {}
    for i in range(count):
        ident, sampling = segment[6 + 3 * i], segment[7 + 3 * i]
        h, v = sampling >> 4, sampling & 15
        if not (1 <= h <= 4 and 1 <= v <= 4):
            return None
        components[ident] = (h, v)
    return _JpegFrame(width, height, components, marker in _PROGRESSIVE, marker not in _ARITHMETIC,
                      dict.fromkeys(components, 0))


def _check_scan(data: bytes, pos: int, header: bytes, frame: _JpegFrame, number: int) -> tuple[int, str | None]:
    """Measure one scan's entropy-coded data against the blocks it codes; return where it ends."""
    end = _scan_end(data, pos)
    if not header or len(header) < 1 + 2 * header[0] + 3:
        return end, None
    count = header[0]
    scan_components = [header[1 + 2 * i] for i in range(count)]
    start, stop, approx = header[1 + 2 * count], header[2 + 2 * count], header[3 + 2 * count]
    if any(c not in frame.components for c in scan_components):
        return end, None
    if not frame.progressive:
        start, stop = 0, 63
    if approx >> 4 == 0 and start <= stop <= 63:
        covered = ((1 << (stop + 1)) - 1) ^ ((1 << start) - 1)
        for component in scan_components:
            frame.coverage[component] |= covered
    needed_bits = _min_bits_per_block(frame, start) * frame.blocks(scan_components)
    coded = end - pos - data.count(b"\xff\x00", pos, end) - 2 * len(_RESTART.findall(data, pos, end))
    if coded * 8 < needed_bits:
        return end, (f"scan {number} holds {coded} bytes of coded data where the {frame.width}x{frame.height} "
                     f"header needs at least {math.ceil(needed_bits / 8)}")
    return end, None


def _scan_end(data: bytes, pos: int) -> int:
    """Where the coded data from ``pos`` ends: at the first marker that is no stuffed 0xFF00 or
    RSTn (bytes.find runs in C; a regular expression took 2 ms on a 1080p JPEG)."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            return len(data)
        following = data[pos + 1]
        if following != 0x00 and not 0xD0 <= following <= 0xD7:
            return pos
        pos += 2


def _min_bits_per_block(frame: _JpegFrame, start: int) -> int:
    """A lower bound on the bits a block takes in this scan: each Huffman symbol is >= 1 bit."""
    if not frame.huffman:
        return 0  # an arithmetic coder can spend less than a bit on a block
    if not frame.progressive:
        return 2  # a DC difference and at least one AC symbol (EOB)
    return 1 if start == 0 else 0  # DC scans: one symbol or bit per block; AC scans share EOB runs


def _jpeg_uncovered(frame: _JpegFrame | None) -> str | None:
    if frame is None:
        return None
    needed = ALL_COEFFICIENTS if frame.progressive else 1
    missing = [ident for ident, mask in frame.coverage.items() if mask & needed != needed]
    if missing:
        return f"it ends before the data of its component(s) {', '.join(map(str, missing))}"
    return None


# --- PNG completeness ----------------------------------------------------------------------------

_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_shortfall(data: bytes) -> str | None:
    """What the PNG's image data lacks for its IHDR, or None (also when it is too odd to tell)."""
    needed: int | None = None
    inflater = zlib.decompressobj()
    produced, pos = 0, len(PNG_MAGIC)
    try:
        while pos + 8 <= len(data):
            length, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
            body = data[pos + 8:pos + 8 + length]
            pos += 12 + length
            if kind == b"IHDR":
                needed = _png_raw_size(body)
            elif kind == b"IDAT" and needed is not None:
                produced += _inflated_size(inflater, body, needed - produced)
                if produced >= needed:
                    return None
            elif kind == b"IEND":
                break
    except zlib.error:
        return None  # a corrupt stream: Pillow's decode says what is wrong
    if needed is None:
        return None
    return f"its image data inflates to {produced} of the {needed} bytes its header needs"


def _png_raw_size(ihdr: bytes) -> int | None:
    """Bytes of filtered scanlines the IHDR calls for (Adam7 passes summed)."""
    if len(ihdr) < 13:
        return None
    width, height, depth, colour, interlace = struct.unpack(">IIBBxxB", ihdr[:13])
    if colour not in _PNG_CHANNELS:
        return None
    bits = depth * _PNG_CHANNELS[colour]

    def lines(columns: int, rows: int) -> int:
        return rows * (1 + (columns * bits + 7) // 8) if columns and rows else 0

    if interlace == 0:
        return lines(width, height)
    return sum(lines(math.ceil(max(0, width - x0) / dx), math.ceil(max(0, height - y0) / dy))
               for x0, y0, dx, dy in _ADAM7)


def _inflated_size(inflater: zlib._Decompress, body: bytes, wanted: int) -> int:
    """Inflate ``body`` a chunk at a time (memory stays small) until ``wanted`` bytes came out."""
    produced = len(inflater.decompress(body, INFLATE_CHUNK))
    while inflater.unconsumed_tail and produced < wanted:
        produced += len(inflater.decompress(inflater.unconsumed_tail, INFLATE_CHUNK))
    return produced


# --- Pixels as a viewer shows them ---------------------------------------------------------------

def _orientation(image: Image.Image) -> int:
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


def _upright_rgb(image: Image.Image, orientation: int) -> np.ndarray:
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
