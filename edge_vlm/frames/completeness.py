"""Is the compressed data all there? Refuse a JPEG or PNG too short for the pixels its header announces.

libjpeg reaching the end-of-image marker before the last block does not fail: it
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
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from dataclasses import dataclass

from edge_vlm.core.errors import ImageError

INFLATE_CHUNK = 1 << 20  # output bytes per zlib call while measuring a PNG's image data
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_complete(data: bytes, fmt: str, width: int, height: int) -> bytes:
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

