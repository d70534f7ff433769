"""Ask anything: a request on ``<base>/request`` becomes a trigger, with where its answer goes.

A request names a camera (its current frame), or brings its image (base64), or names a topic whose
retained image to use. Whatever is wrong with it is answered, on its response topic, unless even
that is unusable: then on the default response topic.

The daemon publishes and subscribes with its own broker rights, so a requester may not point it
anywhere: a reply goes only to a topic under ``mqtt.reply_topics`` (default ``<base>/response/#``),
never to one the daemon publishes or listens on (a status, a command: the answer would be taken for
it), never to a ``$`` topic; an image is read only from the cameras' snapshot topics and
``mqtt.image_topics`` (default ``<base>/images/#``), never from any retained topic the daemon can
read (another integration's state, ``$SYS``). Both refusals are ours, answered with their own codes
(``bad_reply_topic``, ``bad_image_topic``) before anything reaches the broker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from edge_vlm.config.models import AppConfig
from edge_vlm.config.topic_rules import filter_matches, our_topic_filters
from edge_vlm.core.contracts import Failure, Origin, Reply, new_request_id
from edge_vlm.core.errors import ErrorCode, ImageError, InputError, TriggerError
from edge_vlm.core.topics import SNAPSHOT, Topics
from edge_vlm.ingest.payloads import MAX_REPLY_TO, MAX_REQUEST_BYTES, AskRequest, parse_request
from edge_vlm.ingest.trigger import IMAGE_REQUESTS, Trigger
from edge_vlm.mqtt.inbox import Received


@dataclass(frozen=True)
class RequestTopics:
    """Where requests may have their answers sent and their images read from."""

    default_reply: str  # <base>/response: answers to requests that name no usable reply topic
    replies: tuple[str, ...]  # filters a reply topic must match
    images: tuple[str, ...]  # filters an image topic must match
    forbidden: tuple[str, ...]  # filters a reply never goes to, allowed or not: topics we publish or listen on

    @classmethod
    def from_config(cls, config: AppConfig, topics: Topics) -> RequestTopics:
        base = config.base_topic
        cameras = config.cameras
        listened = [t for c in cameras for t in c.snapshot_topics] + [config.discovery.ha_status_topic]
        if config.frigate.enabled:
            listened.append(f"{config.frigate.topic_prefix}/#")
        snapshots = [topics.camera(c.id, SNAPSHOT) for c in cameras] + [t for c in cameras for t in c.snapshot_topics]
        return cls(
            default_reply=topics.default_response,
            replies=tuple(config.mqtt.reply_topics or [f"{base}/response/#"]),
            images=tuple(dict.fromkeys([*(config.mqtt.image_topics or [f"{base}/images/#"]), *snapshots])),
            forbidden=tuple([*our_topic_filters(base, config.node_id, config.discovery.prefix), *listened]),
        )


def read_request(message: Received, topics: RequestTopics) -> Trigger | Failure:
    """The trigger ``message`` asks for, or a Failure to answer when it is bad. A request whose
    reply topic cannot be used is answered on the default response topic (``bad_reply_topic`` if
    nothing else is wrong with it), so that every request gets an answer somewhere, and never one
    the requester had no right to point us at."""
    request = None
    try:
        if message.size > len(message.payload):  # paho's thread dropped a payload over the limit
            raise ImageError(f"request of {message.size} bytes is over limits.max_payload_bytes",
                             code=ErrorCode.PAYLOAD_TOO_LARGE)
        request = parse_request(message.payload)
        return _trigger(message, request, reply_for(message, request, topics), topics)
    except InputError as error:
        text = str(error)
        try:
            reply = reply_for(message, request or _reply_to_in(message.payload), topics)
        except InputError as unusable:
            reply = Reply(topics.default_reply, message.correlation)
            if unusable.code != error.code:  # the request's own problem comes first; say this one too
                text = f"{text}; and {unusable}"
        camera = (request.camera or IMAGE_REQUESTS) if request else IMAGE_REQUESTS
        request_id = error.request_id or (request.id if request else None)
        return Failure(camera, error.code, text, request_id, message.topic, reply, Origin.REQUEST)


def _trigger(message: Received, request: AskRequest, reply: Reply, topics: RequestTopics) -> Trigger:
    if request.image_topic is not None and (problem := _image_topic_problem(request.image_topic, topics.images)):
        raise TriggerError(f"will not read image_topic {request.image_topic!r}: {problem}",
                           code=ErrorCode.BAD_IMAGE_TOPIC)
    return Trigger(request.camera or IMAGE_REQUESTS, Origin.REQUEST, request.prompt, request.id or new_request_id(),
                   message.topic, message.received_at, message.wall_time, profile=request.profile, reply=reply,
                   image_base64=request.image, image_topic=request.image_topic, clip=request.clip)


def _image_topic_problem(topic: str, allowed: tuple[str, ...]) -> str | None:
    """Why the daemon will not read ``topic``'s retained message for a requester: it holds what the
    broker refuses or a wildcard, or it is not an image topic the configuration allows (the daemon
    can read more than the requester may: another integration's state, ``$SYS``)."""
    if problem := _topic_problem(topic):
        return f"it holds {problem}"
    if "+" in topic or "#" in topic:
        return "it holds a wildcard"
    if topic.startswith("$") or not any(filter_matches(f, topic) for f in allowed):
        # The allowed ones are not listed: a camera's snapshot topics may be another integration's.
        return "it is not an image topic requests may use (mqtt.image_topics, the cameras' snapshot topics)"
    return None


def _reply_to_in(payload: bytes) -> str | None:
    """The ``reply_to`` of a request refused as invalid, so that its error still goes there."""
    try:
        data = json.loads(payload) if len(payload) <= MAX_REQUEST_BYTES else None
    except (RecursionError, ValueError):  # not JSON (UnicodeDecodeError is a ValueError)
        return None
    value = data.get("reply_to") if isinstance(data, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= MAX_REPLY_TO else None


def reply_for(message: Received, request: AskRequest | str | None, topics: RequestTopics) -> Reply:
    """The MQTT 5 response topic (with its correlation data), else ``reply_to`` (the request's, or
    given), else the default response topic; raises ``bad_reply_topic`` for one we will not use.

    A reply goes only under the allowed reply topics, and never where it would be taken for
    something else even then: a topic we publish (a status, a state) or listen on (a trigger, a
    command), Home Assistant's; nor to a ``$`` topic, or with wildcards or characters the broker
    refuses (and would drop our connection over).
    """
    reply_to = request.reply_to if isinstance(request, AskRequest) else request
    topic = message.response_topic or reply_to or topics.default_reply
    if topic != topics.default_reply and (problem := _reply_topic_problem(topic, topics)):
        raise TriggerError(f"will not answer on {topic!r}: {problem}; answered on {topics.default_reply} instead",
                           code=ErrorCode.BAD_REPLY_TOPIC)
    return Reply(topic, message.correlation)


def _reply_topic_problem(topic: str, topics: RequestTopics) -> str | None:
    if problem := _topic_problem(topic):
        return f"it holds {problem}"
    if "+" in topic or "#" in topic:
        return "it holds a wildcard"
    if topic.startswith("$"):
        return "it is a $ topic, the broker's"
    if any(filter_matches(f, topic) for f in topics.forbidden):
        return "it is a topic edge_vlm publishes or listens on, or Home Assistant's"
    if not any(filter_matches(f, topic) for f in topics.replies):
        return f"it is not under the reply topics requests may use (mqtt.reply_topics: {list(topics.replies)})"
    return None


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
