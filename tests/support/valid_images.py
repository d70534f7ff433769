"""Hypothesis strategies (and a fixed catalogue) of VALID JPEG and PNG images, each with the picture
a photo viewer shows for it, so that a decoder (or the whole daemon) can be checked against it.

Every image is made from an upright 8- or 16-bit picture whose orientation shows (a horizontal ramp
in one channel, a vertical one in another, an asymmetric pattern for bilevel and palette images),
stored turned by the inverse of an EXIF orientation 1-8 that it carries, in one of the layouts
JPEG and PNG can hold (``KINDS``). The expected picture is the upright one in 8-bit RGB, with
transparency composited onto white, as edge_vlm.frames promises; None for an image over the
pixel limit, which must be refused with code image_too_large.

Sizes go from 1x1 to the pixel limit, with aspect ratios up to 1:10000 (1x10000, 10000x1) when the
limit allows. Ramps rise at most 3 levels per pixel, so JPEG's chroma subsampling stays close.

    from tests.support.valid_images import valid_images, catalogue, mismatch
    @given(valid_images(max_pixels=4_000_000))
    def test(image): name, data, expected = image ...
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from tests.support import images

JPEG_TOLERANCE = 8.0  # mean absolute difference per sample, JPEG at quality 90
LOSSLESS_TOLERANCE = 2  # largest difference per sample: 16-bit sources rounded to 8 bits


class ValidImage(NamedTuple):
    name: str
    data: bytes
    expected: np.ndarray | None  # upright RGB uint8 HxWx3 as a viewer shows it; None: over the limit

    @property
    def lossy(self) -> bool:
        return self.data[:2] == b"\xff\xd8"


def mismatch(image: ValidImage, pixels: np.ndarray) -> str | None:
    """Why ``pixels`` (a decode of ``image``) is not what a viewer shows, or None when it is."""
    expected = image.expected
    assert expected is not None, "an over-limit image has no pixels to compare"
    if pixels.dtype != np.uint8 or pixels.shape != expected.shape:
        return f"{image.name}: got {pixels.dtype} {pixels.shape}, expected uint8 {expected.shape}"
    difference = np.abs(pixels.astype(np.int16) - expected.astype(np.int16))
    if image.lossy and difference.mean() > JPEG_TOLERANCE:
        return f"{image.name}: mean difference {difference.mean():.1f} > {JPEG_TOLERANCE}"
    if not image.lossy and difference.max() > LOSSLESS_TOLERANCE:
        return f"{image.name}: largest difference {difference.max()} > {LOSSLESS_TOLERANCE}"
    return None


# --- Upright pictures ------------------------------------------------------------------------------

def _ramp(length: int) -> np.ndarray:
    """32..223 over ``length`` samples, at most 3 levels a step (a short ramp stays short)."""
    return 32.0 + 191.0 * np.arange(length) / max(length - 1, 63)


def _planes(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    across = np.broadcast_to(_ramp(width)[np.newaxis, :], (height, width))
    down = np.broadcast_to(_ramp(height)[:, np.newaxis], (height, width))
    return across, down


def _colour(width: int, height: int) -> np.ndarray:
    across, down = _planes(width, height)
    return np.stack([across, down, 255.0 - (across + down) / 2], axis=2)  # float, 0..255


def _grey(width: int, height: int) -> np.ndarray:
    across, down = _planes(width, height)
    return 0.7 * across + 0.3 * down


def _pattern(width: int, height: int, period: int) -> np.ndarray:
    """An integer pattern 0..period-1 that changes under every flip and turn."""
    x = np.arange(width)[np.newaxis, :]
    y = np.arange(height)[:, np.newaxis]
    return (x * 3 + y * 7 + (x * y) // 5) % period


def _alpha(width: int, height: int) -> np.ndarray:
    """Opaque, transparent and in between, in a pattern: 0, 85, 170, 255 ... as 0..1."""
    return np.asarray(_pattern(width, height, 4), float) / 3


def _to16(values: np.ndarray) -> np.ndarray:
    return np.asarray(np.rint(values * 257), dtype=np.uint16)


def _to8(values: np.ndarray) -> np.ndarray:
    return np.asarray(np.rint(values), dtype=np.uint8)


def _from16(values: np.ndarray) -> np.ndarray:
    return np.rint(values / 257).astype(np.uint8)


def _grey_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey.reshape(*grey.shape[:2], 1), 3, axis=2)


def _on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``rgb`` (0..255 floats or ints) composited onto white with ``alpha`` 0..1."""
    alpha = alpha.reshape(*alpha.shape[:2], 1)
    rgb = rgb.reshape(*alpha.shape[:2], -1)
    return _to8(rgb * alpha + 255.0 * (1 - alpha))


# --- Orientation ---------------------------------------------------------------------------------

_STORED: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    # the stored picture of an upright one, for each EXIF orientation (the inverse of its transform)
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, 1),
    7: lambda a: np.rot90(np.swapaxes(a, 0, 1), 2),
    8: lambda a: np.rot90(a, -1),
}


def stored(upright: np.ndarray, orientation: int) -> np.ndarray:
    return np.ascontiguousarray(_STORED[orientation](upright))


# --- Encoders: (upright width, height, orientation, options) -> (data, expected) ------------------

class Options(NamedTuple):
    orientation: int
    interlace: bool = False  # PNG
    progressive: bool = False  # JPEG
    subsampling: int = 2  # JPEG: 0 = 4:4:4, 2 = 4:2:0


def _exif(options: Options) -> bytes:
    return images.exif_orientation(options.orientation) if options.orientation != 1 else b""


def _png(upright: np.ndarray, depth: int, colour: int, options: Options, **extra: bytes) -> bytes:
    return images.png_raw(stored(upright, options.orientation), depth, colour, exif=_exif(options),
                          interlace=options.interlace, level=1, **extra)


def _jpeg(upright: np.ndarray, mode: str, options: Options) -> bytes:
    out = io.BytesIO()
    picture = Image.fromarray(stored(upright, options.orientation), mode)
    exif = _exif(options)
    picture.save(out, "JPEG", quality=90, progressive=options.progressive, subsampling=options.subsampling,
                 **({"exif": exif} if exif else {}))
    return out.getvalue()


Made = tuple[bytes, np.ndarray]


def png_bilevel(w: int, h: int, o: Options) -> Made:
    bits = (_pattern(w, h, 7) < 3).astype(np.uint8)
    return _png(bits, 1, 0, o), _grey_rgb(bits * 255)


def png_grey(depth: int) -> Callable[[int, int, Options], Made]:
    top = (1 << depth) - 1

    def make(w: int, h: int, o: Options) -> Made:
        levels = np.rint(_grey(w, h) / 255 * top).astype(np.uint16)
        if depth == 16:
            return _png(levels, 16, 0, o), _grey_rgb(_from16(levels))
        return _png(levels, depth, 0, o), _grey_rgb((levels * (255 // top)).astype(np.uint8))
    return make


def png_grey_trns(depth: int) -> Callable[[int, int, Options], Made]:
    def make(w: int, h: int, o: Options) -> Made:
        grey = _to16(_grey(w, h)) if depth == 16 else _to8(_grey(w, h))
        key = int(grey[h // 2, w // 2])  # this level, wherever it is, is transparent
        data = _png(grey, depth, 0, o, trns=key.to_bytes(2, "big"))
        shown = _from16(grey) if depth == 16 else grey
        return data, _grey_rgb(np.where(grey == key, 255, shown).astype(np.uint8))
    return make


def png_grey_alpha(depth: int) -> Callable[[int, int, Options], Made]:
    def make(w: int, h: int, o: Options) -> Made:
        grey, alpha = _grey(w, h), _alpha(w, h)
        if depth == 16:
            samples = np.stack([_to16(grey), _to16(alpha * 255)], axis=2)
        else:
            samples = np.stack([_to8(grey), _to8(alpha * 255)], axis=2)
        return _png(samples, depth, 4, o), _grey_rgb(_on_white(grey, alpha))
    return make


def png_rgb(depth: int, alpha: bool = False) -> Callable[[int, int, Options], Made]:
    def make(w: int, h: int, o: Options) -> Made:
        colour = _colour(w, h)
        if depth == 8:
            colour = np.rint(colour)  # the 8-bit twin: what a viewer shows is exactly these levels
        opacity = _alpha(w, h) if alpha else np.ones((h, w))
        planes = np.concatenate([colour, opacity[..., np.newaxis] * 255], axis=2) if alpha else colour
        samples = _to16(planes) if depth == 16 else _to8(planes)
        return _png(samples, depth, 6 if alpha else 2, o), _on_white(colour, opacity)
    return make


def png_rgb_trns(w: int, h: int, o: Options) -> Made:
    colour = _to8(_colour(w, h))
    key = colour[h // 2, w // 2]
    hidden = np.all(colour == key, axis=2)
    data = _png(colour, 8, 2, o, trns=b"".join(int(v).to_bytes(2, "big") for v in key))
    return data, np.where(hidden[..., np.newaxis], 255, colour).astype(np.uint8)


def png_palette(depth: int, trns: bool) -> Callable[[int, int, Options], Made]:
    count = 1 << depth

    def make(w: int, h: int, o: Options) -> Made:
        rng = np.random.default_rng(depth)
        palette = rng.integers(0, 256, (count, 3), dtype=np.uint8)
        alphas = (np.arange(count) * 97 % 256).astype(np.uint8)  # 0, 97, 194, 35 ... per entry
        alphas[-count // 2:] = 255  # tRNS may be shorter than the palette: the rest are opaque
        index = _pattern(w, h, count).astype(np.uint8)
        extra = {"trns": alphas[:count // 2].tobytes()} if trns else {}
        data = _png(index, depth, 3, o, palette=palette.tobytes(), **extra)
        opacity = alphas[index] / 255 if trns else np.ones((h, w))
        return data, _on_white(palette[index].astype(float), opacity)
    return make


def jpeg_grey(w: int, h: int, o: Options) -> Made:
    grey = _to8(_grey(w, h))
    return _jpeg(grey, "L", o), _grey_rgb(grey)


def jpeg_rgb(w: int, h: int, o: Options) -> Made:
    colour = _to8(_colour(w, h))
    return _jpeg(colour, "RGB", o), colour


def jpeg_cmyk(w: int, h: int, o: Options) -> Made:
    across, down = _planes(w, h)
    inks = _to8(np.stack([across * 0.8, down * 0.8, np.full((h, w), 40.0), np.full((h, w), 20.0)], axis=2))
    shown = np.asarray(Image.fromarray(inks, "CMYK").convert("RGB"))  # naive CMYK, as Pillow shows it
    return _jpeg(inks, "CMYK", o), shown


KINDS: dict[str, Callable[[int, int, Options], Made]] = {
    "png-1": png_bilevel,
    "png-L2": png_grey(2),
    "png-L4": png_grey(4),
    "png-L": png_grey(8),
    "png-I16": png_grey(16),
    "png-L-trns": png_grey_trns(8),
    "png-I16-trns": png_grey_trns(16),
    "png-LA": png_grey_alpha(8),
    "png-LA16": png_grey_alpha(16),
    "png-RGB": png_rgb(8),
    "png-RGB16": png_rgb(16),
    "png-RGB-trns": png_rgb_trns,
    "png-RGBA": png_rgb(8, alpha=True),
    "png-RGBA16": png_rgb(16, alpha=True),
    "png-P": png_palette(8, trns=False),
    "png-P-trns": png_palette(8, trns=True),
    "png-P2-trns": png_palette(2, trns=True),
    "png-P4": png_palette(4, trns=False),
    "jpeg-L": jpeg_grey,
    "jpeg-RGB": jpeg_rgb,
    "jpeg-CMYK": jpeg_cmyk,
}


def build(kind: str, width: int, height: int, options: Options, *, max_pixels: int) -> ValidImage:
    """One image of ``kind``, upright ``width`` x ``height``; expected None when over ``max_pixels``."""
    data, expected = KINDS[kind](width, height, options)
    flags = [f"orientation {options.orientation}"]
    flags += ["interlaced"] if options.interlace and kind.startswith("png") else []
    flags += ["progressive"] if options.progressive and kind.startswith("jpeg") else []
    flags += ["4:4:4"] if options.subsampling == 0 and kind.startswith("jpeg") else []
    name = f"{kind} {width}x{height} {', '.join(flags)}"
    return ValidImage(name, data, None if width * height > max_pixels else expected)


# --- Strategies ----------------------------------------------------------------------------------

def sizes(max_pixels: int) -> st.SearchStrategy[tuple[int, int]]:
    """Upright (width, height) within ``max_pixels``: tiny, thin (to 1:10000), medium, near the limit."""
    long_max = min(10_000, max_pixels)
    tiny = st.tuples(st.integers(1, 16), st.integers(1, 16))
    thin = st.integers(1, 3).flatmap(lambda short: st.tuples(
        st.just(short), st.integers(100, max(100, min(long_max, max_pixels // short)))))
    thin_either = thin.flatmap(lambda s: st.sampled_from([s, (s[1], s[0])]))
    medium = st.tuples(st.integers(17, 640), st.integers(17, 640))
    side = max(1, int(max_pixels ** 0.5))
    large = st.integers(side // 4, side * 4).flatmap(
        lambda w: st.tuples(st.just(w), st.integers(max(1, max_pixels // w // 2), max(1, max_pixels // w))))
    return st.one_of(tiny, tiny, thin_either, medium, medium, large).filter(lambda s: s[0] * s[1] <= max_pixels)


def over_limit_sizes(max_pixels: int) -> st.SearchStrategy[tuple[int, int]]:
    """Just over the limit (by 1 pixel to 10 %), so only the header check stops them."""
    side = max(1, int(max_pixels ** 0.5))
    return st.integers(side // 2, side * 2).flatmap(
        lambda w: st.tuples(st.just(w), st.integers(max_pixels // w + 1, max(max_pixels // w + 1,
                                                                              max_pixels * 11 // 10 // w))))


def options() -> st.SearchStrategy[Options]:
    return st.builds(Options, orientation=st.integers(1, 8), interlace=st.booleans(),
                     progressive=st.booleans(), subsampling=st.sampled_from([0, 2]))


@st.composite
def valid_images(draw: st.DrawFn, max_pixels: int, over_limit_share: int = 20,
                 kinds: tuple[str, ...] = ()) -> ValidImage:
    """Any of ``kinds`` (default: all), size, orientation, interlacing or progression; one in
    ``over_limit_share`` is just over ``max_pixels`` (expected None)."""
    kind = draw(st.sampled_from(kinds or sorted(KINDS)))
    over = over_limit_share > 0 and draw(st.integers(1, over_limit_share)) == 1
    width, height = draw(over_limit_sizes(max_pixels) if over else sizes(max_pixels))
    return build(kind, width, height, draw(options()), max_pixels=max_pixels)


CATALOGUE_SIZES = ((1, 1), (2, 2), (8, 8), (50, 50), (128, 64), (1600, 200), (1920, 200), (1, 10000),
                   (10000, 1), (33, 17), (640, 480))


def catalogue(max_pixels: int = 40_000_000) -> list[ValidImage]:
    """A fixed list: every kind, every orientation, the sizes that once crashed the opencv analyzer,
    plain and interlaced/progressive; small enough to publish to a running daemon one by one."""
    made = []
    for number, kind in enumerate(sorted(KINDS)):
        for orientation in range(1, 9):
            width, height = CATALOGUE_SIZES[(number + orientation) % len(CATALOGUE_SIZES)]
            variant = Options(orientation, interlace=orientation % 2 == 0, progressive=orientation % 3 == 0,
                              subsampling=0 if orientation % 4 == 0 else 2)
            made.append(build(kind, width, height, variant, max_pixels=max_pixels))
    return made
