"""Real images for the tests, encoded by Pillow, or by hand (png_raw) where Pillow cannot write them."""

from __future__ import annotations

import io
import struct
import zlib
from importlib import resources

import numpy as np
from PIL import Image


def sample(name: str) -> bytes:
    """One of the sample images that ship with the package (front_door, driveway, garden_night)."""
    return resources.files("edge_vlm.samples").joinpath(f"{name}.jpg").read_bytes()


def encode(pixels: np.ndarray, fmt: str = "JPEG", **options: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt, **options)
    return out.getvalue()


def scene(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth, camera-like RGB image (JPEG-compressible, unlike noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 40), max(2, width // 40), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))


def with_square(pixels: np.ndarray, at: float = 0.5) -> np.ndarray:
    """``pixels`` with a white square, a sixth of their height, centred ``at`` that share of their
    width, half-way down: an object come into view."""
    height, width = pixels.shape[:2]
    side = height // 6
    left = round(width * at) - side // 2
    out: np.ndarray = pixels.copy()
    out[(height - side) // 2:(height + side) // 2, left:left + side] = 255
    return out


def jpeg(width: int = 640, height: int = 360, seed: int = 0, quality: int = 85) -> bytes:
    return encode(scene(width, height, seed), "JPEG", quality=quality)


def png(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    return encode(scene(width, height, seed), "PNG")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header announces width x height pixels: decoding it would allocate them all."""
    big = Image.new("1", (width, height))
    out = io.BytesIO()
    big.save(out, "PNG")
    return out.getvalue()


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_raw(samples: np.ndarray, depth: int, colour: int, *, palette: bytes = b"", trns: bytes = b"",
            exif: bytes = b"", interlace: bool = False, level: int = 6) -> bytes:
    """A PNG written sample by sample, for what Pillow cannot write (16-bit RGB/RGBA/LA, 2/4-bit grey,
    tRNS of any kind, Adam7). ``samples``: HxW or HxWxC integers below 2**depth; ``colour``: the
    IHDR colour type (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA); ``exif``: a TIFF blob, or
    Pillow's ``Exif.tobytes()`` (its "Exif\\0\\0" prefix is dropped)."""
    samples = samples.reshape(*samples.shape[:2], -1)
    height, width = samples.shape[:2]
    if interlace:
        passes = (samples[y0::dy, x0::dx] for x0, y0, dx, dy in ADAM7)
        raw = b"".join(_scanlines(part, depth) for part in passes if part.size)
    else:
        raw = _scanlines(samples, depth)
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, int(interlace))
    exif = exif.removeprefix(b"Exif\x00\x00")
    return b"".join([
        PNG_MAGIC, png_chunk(b"IHDR", header),
        png_chunk(b"PLTE", palette) if palette else b"",
        png_chunk(b"tRNS", trns) if trns else b"",
        png_chunk(b"eXIf", exif) if exif else b"",
        png_chunk(b"IDAT", zlib.compress(raw, level)), png_chunk(b"IEND", b""),
    ])


def _scanlines(samples: np.ndarray, depth: int) -> bytes:
    """Unfiltered scanlines (filter byte 0) of HxWxC samples at ``depth`` bits, big-endian, packed."""
    rows = samples.shape[0]
    flat = samples.reshape(rows, -1)
    if depth == 16:
        packed = np.ascontiguousarray(flat.astype(">u2")).view(np.uint8).reshape(rows, -1)
    elif depth == 8:
        packed = flat.astype(np.uint8)
    else:
        shifts = np.arange(depth - 1, -1, -1)
        bits = ((flat[..., np.newaxis].astype(np.uint8) >> shifts) & 1).reshape(rows, -1)
        packed = np.packbits(bits.astype(np.uint8), axis=1)
    return np.hstack([np.zeros((rows, 1), np.uint8), packed]).tobytes()


def png_16bit_rgba_flat(width: int, height: int) -> bytes:
    """A 16-bit RGBA PNG of width x height that compresses to a few hundred KB (every row after the
    first is filter "Up" of zeros), written without holding its raw data: a memory test's input."""
    first = b"\x00" + (np.arange(width * 4, dtype=np.uint32) * 7 % 65536).astype(">u2").tobytes()
    same = b"\x02" + bytes(width * 8)
    packer = zlib.compressobj(9)
    body = [packer.compress(first), *(packer.compress(same) for _ in range(height - 1)), packer.flush()]
    header = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return PNG_MAGIC + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", b"".join(body)) + png_chunk(b"IEND", b"")


def exif_orientation(orientation: int) -> bytes:
    """EXIF data (with its "Exif\\0\\0" prefix, as a JPEG APP1 holds it) saying only ``orientation``."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()
