"""Real images for the tests, encoded by Pillow."""

from __future__ import annotations

import io
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
