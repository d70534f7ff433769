"""One router for every inbound message: a table from topic to handler, built once by the service.

A route is an exact topic or an MQTT filter with wildcards; the first route added that matches
takes the message (exact topics are looked up in a dict, so only wildcard filters are tried one by
one), and may have several handlers (a Frigate snapshot topic that is also a camera's snapshot
topic). A tap sees every message first (a request waiting for a topic's retained image). A route's
filter is also what the daemon subscribes to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from paho.mqtt.client import topic_matches_sub

from edge_vlm.mqtt.inbox import Received

logger = logging.getLogger(__name__)

Handler = Callable[[Received], None]


@dataclass(frozen=True)
class Route:
    topic_filter: str
    handlers: tuple[Handler, ...]
    replay_only: bool = False  # only the retained replay on subscribe matters (see MqttConnection)
    shared: bool = False  # consumed through the group's shared subscription (one board of the group)
    asked: bool = False  # someone waits for the answer: the inbox keeps these longest
    latest_wins: bool = False  # an image a newer one replaces: the inbox may coalesce these


class Router:
    def __init__(self) -> None:
        self._exact: dict[str, tuple[int, Route]] = {}
        self._wildcard: list[tuple[int, Route]] = []
        self._taps: list[Handler] = []

    def add(self, topic_filter: str, *handlers: Handler, replay_only: bool = False, shared: bool = False,
            asked: bool = False, latest_wins: bool = False) -> None:
        route = Route(topic_filter, handlers, replay_only, shared, asked, latest_wins)
        entry = (len(self._exact) + len(self._wildcard), route)
        if "+" in topic_filter or "#" in topic_filter:
            self._wildcard.append(entry)
        else:
            self._exact.setdefault(topic_filter, entry)

    def tap(self, handler: Handler) -> None:
        """Show ``handler`` every message, before its route."""
        self._taps.append(handler)

    def route(self, message: Received) -> bool:
        """Hand ``message`` to its route's handlers; False when no route takes it."""
        for tap in self._taps:
            tap(message)
        route = self._find(message.topic)
        if route is None:
            logger.debug("No route for a message on %s", message.topic)
            return False
        for handler in route.handlers:
            handler(message)
        return True

    def asked(self, topic: str) -> bool:
        """Whether someone waits for the answer to a message on ``topic`` (a trigger, a request)."""
        route = self._find(topic)
        return route is not None and route.asked

    def latest_wins(self, topic: str) -> bool:
        """Whether a newer message on ``topic`` will do instead of a waiting one (an image)."""
        route = self._find(topic)
        return route is not None and route.latest_wins

    def _find(self, topic: str) -> Route | None:
        """The route that takes ``topic``: the first added that matches. (Any thread: the table does
        not change once the daemon starts.)"""
        exact = self._exact.get(topic)
        before = len(self._wildcard) + len(self._exact) if exact is None else exact[0]
        return next((r for i, r in self._wildcard if i < before and topic_matches_sub(r.topic_filter, topic)),
                    None if exact is None else exact[1])

    def routes(self) -> list[Route]:
        """Every route, in the order added."""
        return [route for _, route in sorted([*self._exact.values(), *self._wildcard], key=lambda e: e[0])]

    def subscriptions(self, shared_group: str | None) -> tuple[list[str], list[str]]:
        """The filters to subscribe to (shared ones in the group's shared subscription, if any), and
        those of them that matter only for their retained replay."""
        routes = self.routes()
        live = [f"$share/{shared_group}/{r.topic_filter}" if r.shared and shared_group else r.topic_filter
                for r in routes if not r.replay_only]
        return live, [r.topic_filter for r in routes if r.replay_only]
