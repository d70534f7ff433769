"""Ask anything: a request on ``<base>/request`` becomes a trigger, with where its answer goes.

A request names a camera (its current frame), or brings its image (base64), or names a topic whose
retained image to use. Whatever is wrong with it is answered, on its response topic, unless even
that is unusable (then it is only logged).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable

from edge_vlm.config.topic_rules import filter_matches
from edge_vlm.errors import ImageError, InputError, TriggerError
from edge_vlm.frames import Frame
from edge_vlm.jobs import Failure, Reply, new_request_id
from edge_vlm.mqtt.inbox import Received
from edge_vlm.scheduler import REQUEST
from edge_vlm.triggers import MAX_REPLY_TO, MAX_REQUEST_BYTES, AskRequest, Trigger, parse_request

logger = logging.getLogger(__name__)

IMAGE_TOPIC_WAIT_S = 5.0
IMAGE_REQUESTS = ""  # the "camera" of requests that bring their own image

Decoder = Callable[[bytes, str, float], Frame]  # data, camera, captured_at


def read_request(message: Received, *, default_reply: str, forbidden: list[str], images: RetainedImages,
                 decode: Decoder) -> Trigger | Failure:
    """The trigger ``message`` asks for, or a Failure to answer when it is bad. A request whose
    reply topic cannot be used is answered on ``default_reply``, so that every request gets an
    answer somewhere. ``forbidden``: filters a reply may not go to (see ``reply_for``)."""
    request = None
    try:
        if message.size > len(message.payload):  # paho's thread dropped a payload over the limit
            raise ImageError(f"request of {message.size} bytes is over limits.max_payload_bytes",
                             code="payload_too_large")
        request = parse_request(message.payload)
        return _trigger(message, request, reply_for(message, request, default_reply, forbidden), images, decode)
    except InputError as error:
        try:
            reply = reply_for(message, request or _reply_to_in(message.payload), default_reply, forbidden)
        except InputError as unusable:
            logger.debug("Request on %s: %s; answering on %s", message.topic, unusable, default_reply)
            reply = Reply(default_reply, message.correlation)
        camera = (request.camera or IMAGE_REQUESTS) if request else IMAGE_REQUESTS
        request_id = error.request_id or (request.id if request else None)
        return Failure(camera, error.code, str(error), request_id, message.topic, reply, REQUEST)


def _trigger(message: Received, request: AskRequest, reply: Reply, images: RetainedImages,
             decode: Decoder) -> Trigger:
    trigger = Trigger(request.camera or IMAGE_REQUESTS, REQUEST, request.prompt, request.id or new_request_id(),
                      message.topic, message.received_at, profile=request.profile, reply=reply)
    if request.image is not None:
        data = request.image
        return dataclasses.replace(trigger, grab=lambda: decode(_base64(data), IMAGE_REQUESTS, time.time()))
    if request.image_topic is not None:
        topic = request.image_topic
        if "+" in topic or "#" in topic:
            raise TriggerError(f"image_topic {topic!r} holds a wildcard")
        if problem := _topic_problem(topic):
            raise TriggerError(f"image_topic {topic!r} holds {problem}")
        return dataclasses.replace(trigger, grab=lambda: decode(images.fetch(topic), IMAGE_REQUESTS, time.time()))
    return trigger


def _base64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("image is not valid base64") from None


def _reply_to_in(payload: bytes) -> str | None:
    """The ``reply_to`` of a request refused as invalid, so that its error still goes there."""
    try:
        data = json.loads(payload) if len(payload) <= MAX_REQUEST_BYTES else None
    except (RecursionError, ValueError):  # not JSON (UnicodeDecodeError is a ValueError)
        return None
    value = data.get("reply_to") if isinstance(data, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= MAX_REPLY_TO else None


def reply_for(message: Received, request: AskRequest | str | None, default: str, forbidden: list[str]) -> Reply:
    """The MQTT 5 response topic (with its correlation data), else ``reply_to`` (the request's, or
    given), else ``default``.

    A reply may not go where it would be taken for something else: a topic we listen on (a
    trigger, a command) or Home Assistant's discovery; nor hold wildcards, or characters the broker
    refuses.
    """
    reply_to = request.reply_to if isinstance(request, AskRequest) else request
    topic = message.response_topic or reply_to or default
    if problem := _topic_problem(topic):
        raise TriggerError(f"cannot answer on {topic!r}: it holds {problem}")
    if "+" in topic or "#" in topic or any(filter_matches(f, topic) for f in forbidden):
        raise TriggerError(f"will not answer on {topic!r}: it is a topic edge_vlm listens on, or discovery")
    return Reply(topic, message.correlation)


def _topic_problem(topic: str) -> str | None:
    """What in ``topic`` the broker refuses, and drops our connection over (for good: paho sends
    the message again on each reconnect): MQTT forbids NUL and surrogates, Mosquitto also control
    characters and Unicode noncharacters."""
    for char in topic:
        code = ord(char)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            return f"the control character U+{code:04X}"
        if 0xD800 <= code <= 0xDFFF:
            return f"the lone surrogate U+{code:04X}"
        if 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE:
            return f"the noncharacter U+{code:04X}"
    return None


class RetainedImages:
    """Reads the retained message of a topic once: subscribe, take it, unsubscribe."""

    def __init__(self, subscribe: Callable[[str], None], unsubscribe: Callable[[str], None]) -> None:
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self._waiting: dict[str, list[tuple[threading.Event, list[bytes]]]] = {}
        self._lock = threading.Lock()

    def fetch(self, topic: str) -> bytes:
        """The retained payload of ``topic``; blocks (a capture thread) up to a few seconds."""
        arrived, box = threading.Event(), list[bytes]()
        with self._lock:
            first = topic not in self._waiting
            self._waiting.setdefault(topic, []).append((arrived, box))
        if first:
            self._subscribe(topic)
        try:
            if not arrived.wait(IMAGE_TOPIC_WAIT_S):
                raise TriggerError(f"no retained image on {topic!r} within {IMAGE_TOPIC_WAIT_S:g} s", code="no_frame")
            if not box[0]:
                raise ImageError(f"the image on {topic!r} is over limits.max_payload_bytes", code="payload_too_large")
            return box[0]
        finally:
            with self._lock:
                waiters = self._waiting.get(topic, [])
                waiters[:] = [w for w in waiters if w[0] is not arrived]
                last = not waiters
                if last:
                    self._waiting.pop(topic, None)
            if last:
                self._unsubscribe(topic)

    def offer(self, message: Received) -> None:
        """Hand ``message`` to the requests waiting for its topic, if any (dispatcher thread). It is
        not taken away: the topic may also be one the daemon listens on."""
        if message.size == 0:  # no retained message (or its removal)
            return
        with self._lock:
            for arrived, box in self._waiting.get(message.topic, []):
                box.append(message.payload)  # empty when over limits.max_payload_bytes
                arrived.set()
