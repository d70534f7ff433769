"""Where a trigger's frame comes from: the image it brought, a topic's retained image, a Frigate
event's snapshot, or the camera's source; and the one decoder every image goes through."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import time
from collections.abc import Mapping

from edge_vlm.config.models import AppConfig
from edge_vlm.core.contracts import Origin
from edge_vlm.core.errors import ErrorCode, ImageError, InputError, TriggerError
from edge_vlm.frames import Frame, decode_image
from edge_vlm.frames.buffer import FrameBuffer, fit_long_side
from edge_vlm.frames.clip import Clip, composite, key_frames, numbered
from edge_vlm.frames.sources import Source, image_url
from edge_vlm.frames.sources.frigate import FrigateSnapshots
from edge_vlm.frames.sources.mqtt_snapshot import LatestSnapshot
from edge_vlm.frames.sources.retained import RetainedImages
from edge_vlm.ingest.trigger import IMAGE_REQUESTS, Trigger

# What a camera's clip.default applies to: what asks about the camera's moment, by a person or motion.
CLIP_BY_DEFAULT = frozenset({Origin.TRIGGER, Origin.REQUEST, Origin.MOTION})
SENT_CELL = 1024  # the long side of a picture in the grid of those a request sent (the encoder reads 448 or so)


class FrameGrabber:
    def __init__(self, config: AppConfig, sources: Mapping[str, Source], *, retained: RetainedImages,
                 min_long_side: int | None) -> None:
        self._config = config
        self._sources = sources
        self._retained = retained
        self._min_long_side = min_long_side
        self.frigate = FrigateSnapshots(config, self.decode)

    def decode(self, data: bytes, camera: str, captured_at: float) -> Frame:
        limits = self._config.limits
        return decode_image(data, camera=camera, captured_at=captured_at, max_bytes=limits.max_payload_bytes,
                            max_pixels=limits.max_image_pixels, min_long_side=self._min_long_side)

    @property
    def blocking_sources(self) -> int:
        """How many cameras' grabs may block (each wants a capture thread): their sources', a Frigate
        event's, which waits for its own snapshot, and a clip's, which decodes and lays out its frames."""
        frigate = {c.id for c in self._config.cameras if c.frigate is not None}
        clips = {c.id for c in self._config.cameras if c.clip is not None}  # a composite takes a while
        return sum(not source.instant or camera in frigate | clips for camera, source in self._sources.items())

    def arrived(self, frame: Frame) -> None:
        """A snapshot for ``frame.camera`` arrived: the camera's latest frame, if its source keeps that."""
        source = self._sources.get(frame.camera)
        if isinstance(source, LatestSnapshot):
            source.update(frame)

    def instant(self, trigger: Trigger) -> bool:
        """Whether grab() returns at once (a frame in memory, no clip to make): no capture thread needed."""
        return not trigger.own_image and self._sources[trigger.camera].instant and not self._clip_wanted(trigger)

    def grab(self, trigger: Trigger) -> Frame:
        """The trigger's frame; InputError (SourceError, ImageError, …) saying why there is none."""
        if trigger.images:
            return self._sent(trigger.images)
        if trigger.image_base64 is not None:  # an MQTT request's: base64 only
            return self.decode(_base64(trigger.image_base64), IMAGE_REQUESTS, time.time())
        if trigger.image_topic is not None:
            return self.decode(self._retained.fetch(trigger.image_topic), IMAGE_REQUESTS, time.time())
        clip = self._clip_asked(trigger)  # first: a camera without a buffer says so, whatever its frame
        if trigger.frigate is not None:  # the event's snapshot, the last frame of its clip
            camera = self._config.camera(trigger.camera)
            assert camera is not None  # the gate checked it
            frame = self.frigate.grab(camera, trigger.frigate, trigger.received_at, trigger.revision)
        else:
            frame = self._sources[trigger.camera].grab()
        return frame if clip is None else self._clip(frame, *clip)

    def _clip_wanted(self, trigger: Trigger) -> bool | float:
        """Whether the trigger asks for a clip: True, seconds, or False (its frame alone). A Frigate
        object that has ended is described from its snapshot alone: the seconds before the message
        that said so show where it was, not what it did."""
        if trigger.frigate is not None and trigger.frigate.type == "end":
            return False
        if trigger.clip is not None:
            return trigger.clip
        camera = self._config.camera(trigger.camera)
        clip = None if camera is None else camera.clip
        return clip is not None and clip.default and trigger.origin in CLIP_BY_DEFAULT

    def _clip_asked(self, trigger: Trigger) -> tuple[float, int] | None:
        """How many seconds before the trigger to describe, in how many key frames; None for its
        frame alone."""
        asked = self._clip_wanted(trigger)
        if asked is False:
            return None
        camera = self._config.camera(trigger.camera)
        clip = None if camera is None else camera.clip
        if clip is None:
            why = ("an rtsp source in mode on_demand keeps no stream open: set its mode to persistent, and "
                   "cameras[].clip" if camera is not None and not camera.keeps_frames
                   else "set cameras[].clip to keep its last seconds")
            raise TriggerError(f"camera {trigger.camera!r} keeps no clip: {why}", code=ErrorCode.NO_CLIP)
        return (clip.seconds if asked is True else min(float(asked), clip.seconds)), clip.frames

    def _clip(self, now: Frame, seconds: float, frames: int) -> Frame:
        """At most ``frames`` key frames of the camera's last ``seconds`` up to ``now``, as one image
        (frames.clip)."""
        buffer = getattr(self._sources[now.camera], "buffer", None)
        assert isinstance(buffer, FrameBuffer)  # create_source gives a camera with clip a buffer
        kept = [f for f in buffer.frames(since=now.captured_at - seconds) if f.captured_at < now.captured_at]
        newest = buffer.as_kept(now.pixels, now.captured_at)
        picked = key_frames([*kept, newest], frames) if newest is not None else []
        if len(picked) < 2:  # nothing happened (or nothing kept): the frame of the moment, at its full size
            return dataclasses.replace(now, clip=Clip((now.captured_at,), 1, 1))
        pixels, clip = composite(picked)  # shown as JPEG by Frame.jpeg(), as a stream's frame is
        return Frame(now.camera, pixels, (pixels.shape[1], pixels.shape[0]), b"", "RAW", now.captured_at, clip=clip)


    def _sent(self, images: tuple[str, ...]) -> Frame:
        """A request's image; several: a grid of them, numbered in their order (frames.clip), each
        decoded and made small in turn (at most SENT_CELL pixels on its long side)."""
        now, until = time.time(), time.monotonic() + image_url.TIMEOUT_S  # for all of its URLs
        if len(images) == 1:
            return self.decode(self._sent_bytes(images[0], until), IMAGE_REQUESTS, now)
        pictures = []
        for number, image in enumerate(images, 1):
            try:
                decoded = self.decode(self._sent_bytes(image, until), IMAGE_REQUESTS, now)
                pictures.append(fit_long_side(decoded.pixels, SENT_CELL))
            except InputError as error:
                raise type(error)(f"image {number} of {len(images)}: {error}", code=error.code) from None
        pixels, clip = numbered(pictures, now)
        return Frame(IMAGE_REQUESTS, pixels, (pixels.shape[1], pixels.shape[0]), b"", "RAW", now, clip=clip)


    def _sent_bytes(self, image: str, until: float) -> bytes:
        """A sent image's bytes: base64, or fetched from its URL (a host the API allowed) by ``until``."""
        if image.startswith(("http://", "https://")):  # base64 has no ':'
            limit, seconds = self._config.limits.max_payload_bytes, until - time.monotonic()
            return image_url.fetch_image(image, self._config.http.fetches, max_bytes=limit, seconds=seconds)
        return _base64(image)


def _base64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("image is not valid base64") from None
