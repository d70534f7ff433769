"""The trigger and request topics, as the router hands them over: each message becomes a trigger,
or a refusal that says what is wrong with it."""

from __future__ import annotations

import logging
from collections.abc import Callable

from paho.mqtt.client import topic_matches_sub

from edge_vlm.config.models import AppConfig
from edge_vlm.contracts import Failure, Origin
from edge_vlm.errors import ErrorCode, ImageError, InputError
from edge_vlm.ingest.requests import RequestTopics, read_request
from edge_vlm.ingest.trigger import Trigger
from edge_vlm.ingest.triggers import parse_trigger
from edge_vlm.mqtt.inbox import Received
from edge_vlm.topics import SNAPSHOT, TRIGGER, Topics

logger = logging.getLogger(__name__)


def inbox_priorities(config: AppConfig, topics: Topics) -> tuple[Callable[[str], bool], Callable[[str], bool]]:
    """Which messages the inbox keeps longest (a request or a trigger: someone waits for its
    answer), and which it may coalesce (a snapshot: a newer one will do). Run on paho's thread."""
    snapshot_filters = list(dict.fromkeys(f for camera in config.cameras for f in camera.snapshot_topics))

    def asked_for(topic: str) -> bool:
        return topic == topics.request or topics.camera_of(topic, TRIGGER) is not None

    def is_snapshot(topic: str) -> bool:
        return topics.camera_of(topic, SNAPSHOT) is not None or any(
            topic_matches_sub(f, topic) for f in snapshot_filters)

    return asked_for, is_snapshot


class TriggerTopics:
    def __init__(self, request_topics: RequestTopics, max_payload_bytes: int, *, submit: Callable[[Trigger], None],
                 refuse: Callable[[Failure], None]) -> None:
        self._request_topics = request_topics
        self._max_payload_bytes = max_payload_bytes
        self._submit = submit
        self._refuse = refuse

    def trigger(self, message: Received) -> None:
        """``<base>/<camera>/trigger``."""
        camera = message.topic.split("/")[-2]
        if message.retain:
            # A retained trigger would fire again at every start; whoever left it there should know.
            logger.warning("Ignoring a retained trigger on %s: publish triggers without retain", message.topic)
            return
        try:
            if message.size > len(message.payload):  # paho's thread dropped a payload over the limit
                raise ImageError(f"payload of {message.size} bytes is over the limit of {self._max_payload_bytes} "
                                 "(limits.max_payload_bytes)", code=ErrorCode.PAYLOAD_TOO_LARGE)
            request = parse_trigger(message.payload)
        except InputError as error:
            self._refuse(Failure(camera, error.code, str(error), error.request_id, message.topic))
            return
        self._submit(Trigger(camera, Origin.TRIGGER, request.prompt, request.id, message.topic, message.received_at,
                             message.wall_time, profile=request.profile))

    def request(self, message: Received) -> None:
        """``<base>/request``: ask anything."""
        if message.retain:  # it would be asked again at every start and reconnect
            logger.warning("Ignoring a retained request on %s: publish requests without retain", message.topic)
            return
        outcome = read_request(message, self._request_topics)
        if isinstance(outcome, Failure):
            self._refuse(outcome)
        else:
            self._submit(outcome)
