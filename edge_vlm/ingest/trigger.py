"""A trigger: a request to describe a camera's current frame, or an image that came with it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edge_vlm.core.contracts import Origin, Reply, Sampling

if TYPE_CHECKING:
    from edge_vlm.config.automation import FieldSpec
    from edge_vlm.ingest.frigate import FrigateEvent

IMAGE_REQUESTS = ""  # the "camera" of requests that bring their own image


@dataclass(frozen=True)
class Trigger:
    """What to describe and how to answer. Its frame is the camera's current one, unless it names
    another (``images``, ``image_base64``, ``image_topic``, ``frigate``): edge_vlm.frames.grab gets it."""

    camera: str
    origin: Origin
    prompt: str | None = None  # None: the profile's
    request_id: str | None = None
    topic: str | None = None  # where it came from, for error messages
    received_at: float = field(default_factory=time.monotonic)
    wall_time: float = field(default_factory=time.time)  # when it arrived, by our clock
    event: dict[str, Any] | None = None  # what started it (a Frigate event), published with the result
    superseded: tuple[str, ...] = ()  # triggers this one replaced while they waited for a frame
    profile: str | None = None  # asked for by the trigger
    reply: Reply | None = None  # a request's answer goes here
    image_base64: str | None = field(default=None, repr=False)  # a request's own image (JPEG or PNG), base64
    # ...or an HTTP API request's images, in order: base64, or URLs of hosts in http.image_url_hosts;
    # several are described at once, as a numbered grid
    images: tuple[str, ...] = field(default=(), repr=False)
    image_topic: str | None = None  # ...or the topic whose retained image to describe
    frigate: FrigateEvent | None = None  # ...or the snapshot of this Frigate event
    # An update of a result already published under the same id (a Frigate event that got a name, a
    # review item that grew): never held back by the camera's cooldown.
    revision: int = 0
    # Describe what happened, not only what is: True (the camera's clip.seconds) or seconds of its
    # buffer, as a grid of key frames; False: not; None: as the camera's clip.default says.
    clip: bool | float | None = None
    # A question without an image, for the language model alone (the HTTP API's plain chat).
    no_image: bool = False
    # The JSON answer its asker wants (the HTTP API's format or response_format), instead of the profile's.
    fields: Mapping[str, FieldSpec] | None = None
    json_object: bool = False  # ...or any JSON object (the HTTP API's format "json", json_object)
    # How long an answer and how its tokens are picked, as its asker wants (the HTTP API's options).
    max_new_tokens: int | None = None
    sampling: Sampling | None = None

    @property
    def own_image(self) -> bool:
        """Its frame is not the camera's current one."""
        return self.brings_image or self.frigate is not None

    @property
    def brings_image(self) -> bool:
        """A request with an image of its own, or a topic's: no camera to check or grab from."""
        return self.image_base64 is not None or self.image_topic is not None or bool(self.images)
