"""The one routing table: which route takes a message, in what order its handlers run, and what
the daemon subscribes to because of it."""

from __future__ import annotations

from edge_vlm.ingest.router import Router
from edge_vlm.mqtt.inbox import Received


def message(topic: str) -> Received:
    return Received(topic, b"x", retain=False, received_at=0.0, wall_time=0.0, size=1)


class Calls:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def handler(self, name: str):  # type: ignore[no-untyped-def]
        return lambda m: self.seen.append((name, m.topic))


def test_the_first_route_added_that_matches_takes_the_message() -> None:
    calls = Calls()
    router = Router()
    router.add("frigate/+/+/snapshot", calls.handler("frigate"), calls.handler("snapshot_topics"))
    router.add("frigate/porch/person/snapshot", calls.handler("exact, added later"))
    router.add("edge_vlm/porch/enabled/set", calls.handler("control"))
    router.add("edge_vlm/+/trigger", calls.handler("trigger"))
    router.add("edge_vlm/#", calls.handler("anything else"))

    for topic in ["frigate/porch/person/snapshot", "edge_vlm/porch/enabled/set", "edge_vlm/porch/trigger",
                  "edge_vlm/porch/x/y"]:
        assert router.route(message(topic))
    assert not router.route(message("elsewhere/porch"))

    assert calls.seen == [("frigate", "frigate/porch/person/snapshot"),
                          ("snapshot_topics", "frigate/porch/person/snapshot"),
                          ("control", "edge_vlm/porch/enabled/set"), ("trigger", "edge_vlm/porch/trigger"),
                          ("anything else", "edge_vlm/porch/x/y")]


def test_an_exact_topic_added_first_wins_over_a_later_wildcard() -> None:
    calls = Calls()
    router = Router()
    router.add("edge_vlm/request", calls.handler("request"))
    router.add("edge_vlm/#", calls.handler("anything"))
    router.route(message("edge_vlm/request"))
    assert calls.seen == [("request", "edge_vlm/request")]


def test_a_tap_sees_every_message_first_routed_or_not() -> None:
    calls = Calls()
    router = Router()
    router.tap(calls.handler("tap"))
    router.add("a/b", calls.handler("route"))
    router.route(message("a/b"))
    router.route(message("c/d"))
    assert calls.seen == [("tap", "a/b"), ("route", "a/b"), ("tap", "c/d")]


def test_the_subscriptions_follow_the_routes() -> None:
    router = Router()
    router.add("edge_vlm/+/trigger", print)
    router.add("edge_vlm/request", print, shared=True)
    router.add("edge_vlm/porch/enabled", print, replay_only=True)
    assert router.subscriptions(None) == (["edge_vlm/+/trigger", "edge_vlm/request"], ["edge_vlm/porch/enabled"])
    assert router.subscriptions("boards") == (["edge_vlm/+/trigger", "$share/boards/edge_vlm/request"],
                                              ["edge_vlm/porch/enabled"])


def test_the_inbox_asks_the_router_what_is_asked_for_and_what_a_newer_one_replaces() -> None:
    router = Router()
    router.add("edge_vlm/request", print, asked=True)
    router.add("edge_vlm/+/snapshot", print, latest_wins=True)
    router.add("edge_vlm/porch/enabled/set", print)
    assert [router.asked(t) for t in ("edge_vlm/request", "edge_vlm/porch/snapshot", "x")] == [True, False, False]
    assert [router.latest_wins(t) for t in ("edge_vlm/porch/snapshot", "edge_vlm/porch/enabled/set")] == [True, False]
