"""Sources: where a camera's frames come from when something asks for a description.

``grab()`` returns the camera's current frame or raises ``SourceError`` saying why it cannot;
it may block (an HTTP request, an RTSP connection), so the daemon calls it off its dispatcher
thread. Each source bounds a grab in total time (its timeouts, whatever the camera does). ``start()``
and ``stop()`` bracket a source's life (a persistent stream's reader thread); ``stop()`` ends a grab in
flight where it can (``cancelled``) and waits seconds at most, so the daemon's stop stays within
systemd's TimeoutStopSec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from edge_vlm.config.models import AppConfig, CameraConfig
from edge_vlm.config.secrets import read_secret
from edge_vlm.config.sources import HttpSourceConfig, RtspSourceConfig
from edge_vlm.frames import Frame
from edge_vlm.frames.buffer import FrameBuffer


class Source(Protocol):
    camera: str
    #: grab() returns at once (a frame already in memory): no need for a capture thread
    instant: bool

    def start(self) -> None: ...

    def grab(self) -> Frame: ...

    def stop(self) -> None: ...


def create_source(camera: CameraConfig, config: AppConfig, environ: Mapping[str, str], *,
                  min_long_side: int | None = None, on_state: Callable[[bool, str], None] | None = None) -> Source:
    """The source ``camera`` is configured with, not started yet; SecretUnavailable if its password
    credential cannot be read."""
    source, clip = camera.source, camera.clip
    buffer = None if clip is None else FrameBuffer(clip, camera.motion.ignore)
    if isinstance(source, RtspSourceConfig):
        from edge_vlm.frames.sources.rtsp import RtspSource  # noqa: PLC0415 - keeps OpenCV's FFmpeg out until used

        password = read_secret(source.password_env, source.password_credential, environ)
        return RtspSource(camera.id, source, password=password, on_state=on_state, buffer=buffer)
    if isinstance(source, HttpSourceConfig):
        from edge_vlm.frames.sources.http import HttpSnapshotSource  # noqa: PLC0415
        from edge_vlm.frames.sources.http_poll import PolledHttpSource  # noqa: PLC0415

        password = read_secret(source.password_env, source.password_credential, environ)
        limits = config.limits
        snapshots = HttpSnapshotSource(camera.id, source, password=password, max_bytes=limits.max_payload_bytes,
                                       max_pixels=limits.max_image_pixels, min_long_side=min_long_side)
        return snapshots if buffer is None else PolledHttpSource(snapshots, buffer)
    from edge_vlm.frames.sources.mqtt_snapshot import LatestSnapshot  # noqa: PLC0415

    return LatestSnapshot(camera.id, f"{config.base_topic}/{camera.id}/snapshot", source.max_frame_age_s, buffer)


def stop_all(sources: Mapping[str, Source]) -> None:
    """Stop every source: all asked at once first, so a hung camera does not hold up the rest."""
    for source in sources.values():
        request_stop = getattr(source, "request_stop", None)  # a stream's reader thread
        if request_stop is not None:
            request_stop()
    for source in sources.values():
        source.stop()
