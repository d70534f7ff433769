"""The trigger and request topics, as the router hands them over: each message becomes a trigger,
or a refusal that says what is wrong with it."""

from __future__ import annotations

import logging
from collections.abc import Callable

from edge_vlm.core.contracts import Failure, Origin
from edge_vlm.core.errors import InputError
from edge_vlm.core.topics import TRIGGER, Topics
from edge_vlm.ingest.payloads import oversized, parse_trigger
from edge_vlm.ingest.requests import RequestTopics, read_request
from edge_vlm.ingest.trigger import Trigger
from edge_vlm.mqtt.inbox import Received

logger = logging.getLogger(__name__)


class TriggerTopics:
    def __init__(self, topics: Topics, request_topics: RequestTopics, max_payload_bytes: int, *,
                 submit: Callable[[Trigger], None], refuse: Callable[[Failure], None]) -> None:
        self._topics = topics
        self._request_topics = request_topics
        self._max_payload_bytes = max_payload_bytes
        self._submit = submit
        self._refuse = refuse

    def trigger(self, message: Received) -> None:
        """``<base>/<camera>/trigger``."""
        camera = self._topics.camera_of(message.topic, TRIGGER)
        if camera is None:  # <base>//trigger: no camera to answer for
            logger.debug("Ignoring a trigger on %s: no camera in the topic", message.topic)
            return
        if (too_large := oversized(message, self._max_payload_bytes)) is not None:
            self._refuse(Failure(camera, too_large.code, str(too_large), None, message.topic, origin=Origin.TRIGGER))
            return
        if message.retain:
            # A retained trigger would fire again at every start; whoever left it there should know.
            logger.warning("Ignoring a retained trigger on %s: publish triggers without retain", message.topic)
            return
        try:
            request = parse_trigger(message.payload)
        except InputError as error:
            self._refuse(Failure(camera, error.code, str(error), error.request_id, message.topic,
                                 origin=Origin.TRIGGER))
            return
        self._submit(Trigger(camera, Origin.TRIGGER, request.prompt, request.id, message.topic, message.received_at,
                             message.wall_time, profile=request.profile, clip=request.clip))

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
