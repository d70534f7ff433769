"""Hypothesis strategies for bad inputs to the daemon, each with the answer it must get.

Every input is undecodable or invalid by construction, so that the only right answer is an error:
- images: random bytes; JPEGs and PNGs truncated (PNGs before the last 16 bytes of their image data:
  Pillow does not need zlib's trailer, so a PNG cut there still decodes); a broken magic number; a
  JPEG SOF or PNG IHDR whose width or height is 0 or whose pixel count is over limits.max_image_pixels;
  a PNG IHDR changed without fixing its CRC; a real 20000x20000 PNG header. Flipped bytes in the
  compressed body are left out on purpose: most such JPEGs (and many PNGs) still decode, to a
  damaged picture that is rightly described.
- triggers: not UTF-8, not JSON, JSON that is no object, unknown keys, invalid prompt, profile or id;
  triggers and snapshots for unknown cameras whose names are any Unicode a topic level may hold.
- requests (``<base>/request``): the same garbage, answered on the default response topic; invalid
  requests with a reply_to (camera names with + # / NUL and Unicode, none or two images, bad base64,
  base64 of the bad images above, image_topic with wildcards or NUL, unknown keys), answered there;
  requests whose reply_to no answer may go to (wildcards, NUL or control characters, a topic the
  daemon listens on, Home Assistant's discovery): answered on the default response topic instead.

Payloads that must name our topics hold ``@BASE@`` / ``@HA@``, filled in at publish time.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
import zlib
from dataclasses import dataclass
from functools import cache
from typing import Any

from hypothesis import strategies as st

from edge_vlm.config.base import ID_PATTERN
from tests.support import images

MAX_PIXELS = 40_000_000  # limits.max_image_pixels, default
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CAMERAS = ("front_door", "driveway")
CONFIGURED = frozenset({*CAMERAS, "porch", "gate"})
PNG_TRAILER_MARGIN = 16


@dataclass(frozen=True)
class BadInput:
    kind: str
    topic: str  # relative to the base topic: "<camera>/snapshot", "<name>/trigger", "request"
    payload: bytes
    answer: str  # relative to the base topic, where the error goes
    code: str | None  # the error code it must get
    request_id: bool = False  # a request: gets an id, which its answer must carry
    # A request with an image waits for a capture thread; when 32 requests already wait there it is
    # answered "busy" instead (edge_vlm/frames/capture.py), which is as good an answer.
    queued: bool = False

    def filled(self, base: str, discovery: str, request_id: str) -> bytes:
        payload = self.payload.replace(b"@BASE@", base.encode()).replace(b"@HA@", discovery.encode())
        if self.request_id:
            data = json.loads(payload)
            data["id"] = request_id
            payload = json.dumps(data).encode()
        return payload


@cache
def jpegs() -> tuple[bytes, ...]:
    return (images.jpeg(160, 120, seed=1, quality=80), images.jpeg(64, 48, seed=2),
            images.encode(images.scene(320, 240, 3), "JPEG", progressive=True, quality=50))


@cache
def pngs() -> tuple[bytes, ...]:
    return images.png(64, 48), images.png(33, 17, seed=5)


@cache
def real_png_bomb() -> bytes:
    return images.png_header_only(20000, 20000)


def _idat_end(png: bytes) -> int:
    end, at = 0, 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at:at + 4])
        if png[at + 4:at + 8] == b"IDAT":
            end = at + 8 + length
        at += 12 + length
    return end


def _flip(data: bytes, at: int, mask: int) -> bytes:
    out = bytearray(data)
    out[at] ^= mask
    return bytes(out)


def _jpeg_dims(jpeg: bytes, width: int, height: int) -> bytes:
    sof = max(jpeg.find(b"\xff\xc0"), jpeg.find(b"\xff\xc2"))
    out = bytearray(jpeg)
    out[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(out)


def _png_dims(png: bytes, width: int, height: int, *, fix_crc: bool = True) -> bytes:
    out = bytearray(png)
    out[16:24] = struct.pack(">II", width, height)
    if fix_crc:
        out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])))
    return bytes(out)


def _cut(fraction: int, end: int) -> int:
    """A cut point in [0, end], from a fraction in 1/65536ths."""
    return fraction * end // 2**16


def _longer_than(limit: int) -> st.SearchStrategy[str]:
    """Any text, repeated to just over ``limit`` characters."""
    return st.text(min_size=1, max_size=20).map(lambda t: t * (limit // len(t) + 1))


def _size_code(width: int, height: int) -> str:
    return "image_too_large" if width * height > MAX_PIXELS else "bad_image"


_fraction = st.integers(0, 2**16)
_huge_side = st.integers(MAX_PIXELS // 65535 + 1, 65535)
_huge_dims = st.tuples(_huge_side, _huge_side).filter(lambda d: d[0] * d[1] > MAX_PIXELS)
_zero_dims = st.one_of(st.tuples(st.just(0), st.integers(0, 65535)), st.tuples(st.integers(0, 65535), st.just(0)))


def image_payloads() -> st.SearchStrategy[tuple[str, bytes, str]]:
    """(kind, bytes, error code) of an image that cannot be decoded."""
    jpeg, png = st.sampled_from(jpegs()), st.sampled_from(pngs())
    return st.one_of(
        st.binary(max_size=300).filter(lambda b: not b.startswith((b"\xff\xd8", PNG_MAGIC)))
        .map(lambda b: ("random_bytes", b, "bad_image")),
        st.tuples(jpeg, _fraction).map(lambda t: ("jpeg_truncated", t[0][:_cut(t[1], len(t[0]) - 1)], "bad_image")),
        st.tuples(jpeg, st.integers(0, 2), st.integers(1, 255))
        .map(lambda t: ("jpeg_magic", _flip(*t), "bad_image")),
        st.tuples(jpeg, st.one_of(_zero_dims, _huge_dims))
        .map(lambda t: ("jpeg_sof_dims", _jpeg_dims(t[0], *t[1]), _size_code(*t[1]))),
        st.tuples(png, _fraction).map(
            lambda t: ("png_truncated", t[0][:_cut(t[1], _idat_end(t[0]) - PNG_TRAILER_MARGIN)], "bad_image")),
        st.tuples(png, st.integers(0, 7), st.integers(1, 255)).map(lambda t: ("png_magic", _flip(*t), "bad_image")),
        st.tuples(png, st.integers(1, 100_000), st.integers(1, 100_000)).filter(lambda t: t[1:] != (64, 48))
        .map(lambda t: ("png_ihdr_crc", _png_dims(t[0], t[1], t[2], fix_crc=False), "bad_image")),
        st.tuples(png, _zero_dims).map(lambda t: ("png_ihdr_zero", _png_dims(t[0], *t[1]), "bad_image")),
        st.tuples(png, st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1)).filter(lambda t: t[1] * t[2] > MAX_PIXELS)
        .map(lambda t: ("png_huge_dims", _png_dims(*t), "image_too_large")),
        st.builds(lambda: ("png_20000x20000", real_png_bomb(), "image_too_large")),
    )


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                       st.text(max_size=40))
_not_an_id = st.text(max_size=40).filter(lambda t: re.fullmatch(ID_PATTERN, t) is None)
_strange_text = st.text(min_size=1, max_size=30)  # any Unicode, NUL, +, #, / included


def garbage_payloads() -> st.SearchStrategy[tuple[str, bytes]]:
    """What is not a JSON object: (kind, bytes)."""
    return st.one_of(
        st.binary(max_size=100).map(lambda b: ("not_utf8", b"\xff" + b)),
        st.text(max_size=100).map(lambda t: "{" + t).filter(_not_json).map(lambda t: ("not_json", t.encode())),
        st.one_of(_json_leaf, st.lists(_json_leaf, max_size=4))
        .map(lambda v: ("json_not_object", json.dumps(v).encode())),
    )


def bad_trigger_payloads() -> st.SearchStrategy[tuple[str, bytes]]:
    """Trigger payloads refused when parsed: (kind, bytes)."""
    fields = st.one_of(
        st.dictionaries(st.text(min_size=1, max_size=20).filter(lambda k: k not in ("prompt", "profile", "id")),
                        _json_leaf, min_size=1, max_size=3),
        st.one_of(st.just(""), _longer_than(4000), st.integers(), st.lists(st.integers(), max_size=2))
        .map(lambda v: {"prompt": v}),
        _not_an_id.map(lambda v: {"profile": v}),
        st.one_of(st.just(""), _longer_than(128), st.lists(st.integers(), max_size=2))
        .map(lambda v: {"id": v}),
    )
    return st.one_of(garbage_payloads(), fields.map(lambda d: ("trigger_fields", json.dumps(d).encode())))


def _topic_level_ok(name: str) -> bool:
    """What a topic level may hold for mosquitto to pass it on (no wildcards, controls or noncharacters)."""
    return name not in CONFIGURED and not any(0xFDD0 <= ord(c) <= 0xFDEF or ord(c) & 0xFFFE == 0xFFFE for c in name)


_unknown_camera = st.text(st.characters(exclude_categories=["Cs", "Cc", "Cn", "Co"], exclude_characters="/+#"),
                          min_size=1, max_size=20).filter(_topic_level_ok)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _not_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return True
    return False


def _request(kind: str, fields: dict[str, Any], code: str, reply: str = "response/r") -> BadInput:
    payload = {"reply_to": f"@BASE@/{reply}", **fields}
    queued = "image" in fields and code != "bad_trigger"
    return BadInput(kind, "request", json.dumps(payload).encode(), reply, code, request_id=True, queued=queued)


def answered_requests() -> st.SearchStrategy[BadInput]:
    """Invalid requests with a reply_to: each answered there, with its id."""
    image_request = image_payloads().map(
        lambda t: _request("request_image_" + t[0], {"image": _b64(t[1])}, t[2] if len(_b64(t[1])) >= 4
                           else "bad_trigger"))
    return st.one_of(
        _not_an_id.filter(bool).map(lambda c: _request("request_bad_camera", {"camera": c}, "bad_trigger")),
        st.from_regex(r"nocam[a-z0-9_-]{0,20}", fullmatch=True)
        .map(lambda c: _request("request_unknown_camera", {"camera": c}, "unknown_camera")),
        st.just(_request("request_no_image", {}, "bad_trigger")),
        st.just(_request("request_two_images", {"camera": "front_door", "image_topic": "@BASE@/images/b"},
                         "bad_trigger")),
        st.text(min_size=4, max_size=40).filter(_not_base64)
        .map(lambda t: _request("request_not_base64", {"image": t}, "bad_image")),
        image_request,
        st.tuples(_strange_text, st.sampled_from(["+", "#", "\x00", "\x1b"]), _strange_text)
        .map(lambda t: _request("request_bad_image_topic", {"image_topic": "".join(t)}, "bad_image_topic")),
        st.dictionaries(st.text(min_size=1, max_size=20).filter(
            lambda k: k not in ("prompt", "profile", "id", "camera", "image", "image_topic", "reply_to")),
            _json_leaf, min_size=1, max_size=3)
        .map(lambda d: _request("request_unknown_key", {"camera": "front_door", **d}, "bad_trigger")),
        _not_an_id.map(lambda p: _request("request_bad_profile", {"camera": "front_door", "profile": p},
                                          "bad_trigger")),
        # a reply_to of Unicode levels is fine to answer on
        _unknown_camera.map(lambda k: _request("request_unicode_reply_to", {}, "bad_trigger", reply=f"response/u{k}")),
    )


def misdirected_requests() -> st.SearchStrategy[BadInput]:
    """Requests whose reply_to no answer may go to: refused, on the default response topic."""
    reply_to = st.one_of(
        st.tuples(_strange_text, st.sampled_from(["+", "#", "\x00", "\x07", "\x9b", "\ufdd0", "\uffff"]),
                  _strange_text).map("".join),
        st.sampled_from(["@BASE@/front_door/trigger", "@BASE@/driveway/snapshot", "@BASE@/request",
                         "@BASE@/front_door/enabled/set", "@HA@/sensor/x/config", "@HA@/status",
                         "@BASE@/front_door/enabled", "@BASE@/front_door/alerts", "$SYS/x",
                         "zigbee2mqtt/front_door_lock/set"]),
    )
    return reply_to.map(lambda r: BadInput("request_bad_reply_to", "request",
                                           json.dumps({"camera": "front_door", "reply_to": r}).encode(), "response",
                                           "bad_reply_topic", request_id=True))


def categories() -> dict[str, tuple[int, st.SearchStrategy[BadInput]]]:
    """Each kind of bad input, with how many of each 500 are of that kind."""
    camera = st.sampled_from(CAMERAS)
    return {
        "snapshot": (150, st.tuples(camera, image_payloads()).map(
            lambda t: BadInput(t[1][0], f"{t[0]}/snapshot", t[1][1], f"{t[0]}/error", t[1][2]))),
        "trigger": (60, st.tuples(camera, bad_trigger_payloads()).map(
            lambda t: BadInput("trigger_" + t[1][0], f"{t[0]}/trigger", t[1][1], f"{t[0]}/error", "bad_trigger"))),
        "unknown_camera_trigger": (50, st.tuples(_unknown_camera, st.one_of(st.just(("empty", b"")),
                                                                            bad_trigger_payloads())).map(
            lambda t: BadInput("unknown_camera_trigger", f"{t[0]}/trigger", t[1][1], f"{t[0]}/error",
                               "unknown_camera" if t[1][1] == b"" else "bad_trigger"))),
        "unknown_camera_snapshot": (20, st.tuples(_unknown_camera, st.binary(max_size=50)).map(
            lambda t: BadInput("unknown_camera_snapshot", f"{t[0]}/snapshot", t[1], f"{t[0]}/error",
                               "unknown_camera"))),
        "request_garbage": (40, garbage_payloads().map(
            lambda t: BadInput("request_" + t[0], "request", t[1], "response", "bad_trigger"))),
        "request_long_reply_to": (10, _longer_than(1024).map(lambda r: BadInput(
            "request_long_reply_to", "request", json.dumps({"camera": "front_door", "reply_to": r}).encode(),
            "response", "bad_trigger"))),
        "request_answered": (120, answered_requests()),
        "request_bad_reply_to": (50, misdirected_requests()),
    }
