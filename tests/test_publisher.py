"""The publisher without a broker: what waits, in what order it goes out, and what is dropped first.

Against tests/support/fake_connection.py, whose members are checked here against MqttConnection's.
"""

from __future__ import annotations

import inspect
import logging

import pytest

from edge_vlm.core.topics import Outbound
from edge_vlm.mqtt.connection import MqttConnection
from edge_vlm.publish.publisher import Publisher
from tests.support.fake_connection import FakeConnection, Publishing


def state(topic: str, payload: bytes) -> Outbound:
    return Outbound(topic, payload, retain=True)


def event(topic: str, payload: bytes, *, asked: bool = False) -> Outbound:
    return Outbound(topic, payload, retain=False, asked=asked)


def sent(connection: FakeConnection) -> list[tuple[str, bytes]]:
    return [(message.topic, message.payload) for message in connection.published]


def outbox(*, connected: bool = True, room: bool = True,
           max_waiting_events: int = 10) -> tuple[FakeConnection, Publisher]:
    """A publisher on a fake connection, as connected and with as much room as asked."""
    connection = FakeConnection(connected=connected)
    connection.has_room = room
    return connection, Publisher(connection, max_waiting_events)


# The fake itself


def _members(cls: type) -> dict[str, object]:
    return {name: member for name, member in vars(cls).items() if not name.startswith("_")}


def test_the_fake_has_the_real_connections_signatures() -> None:
    fake = {name: m for name, m in _members(FakeConnection).items() if name not in FakeConnection.HELPERS}
    real = _members(MqttConnection)
    methods = {name: m for name, m in fake.items() if inspect.isfunction(m)}
    assert sorted(methods) == ["publish", "subscribe", "unsubscribe"]
    for name, method in methods.items():
        real_method = real.get(name)
        assert inspect.isfunction(real_method), f"MqttConnection has no method {name}"
        assert list(inspect.signature(method).parameters) == list(inspect.signature(real_method).parameters), name
    # What the publishing side reads: properties of MqttConnection, attributes or properties of the fake.
    for name in ("connected", "has_room"):
        assert isinstance(real[name], property), name
        assert isinstance(getattr(FakeConnection(), name), bool), name
    assert {name for name in vars(Publishing) if not name.startswith("_")} == {*methods, "connected", "has_room"}
    assert not FakeConnection.HELPERS & set(dir(MqttConnection))  # a helper never hides a real member


def test_the_fake_records_and_runs_out_of_room() -> None:
    connection = FakeConnection()
    connection.room = 2
    room = []
    for message in (state("a/s", b"1"), event("a/e", b"2"), event("a/e", b"3")):
        connection.publish(message)  # the third too: paho takes it, the Publisher should not have sent it
        room.append(connection.has_room)
    assert room == [True, False, False]
    assert (connection.topics(), connection.on("a/e")) == (["a/s", "a/e", "a/e"], [b"2", b"3"])
    connection.has_room = True  # and no limit any more
    for _ in range(3):
        connection.publish(event("a/e", b"4"))
    assert connection.has_room
    connection.subscribe("x/+/image")
    connection.subscribe("y")
    connection.unsubscribe("x/+/image")
    assert connection.subscriptions == ["y"]


# Retained states


def test_states_are_sent_at_once_while_the_broker_has_room() -> None:
    connection, publisher = outbox()
    publisher.send_all([state("cam/description", b"a cat"), event("cam/result", b"{}"), state("cam/image", b"jpg")])
    assert sent(connection) == [("cam/description", b"a cat"), ("cam/result", b"{}"), ("cam/image", b"jpg")]
    assert publisher.backlog == 0


def test_only_the_newest_state_of_each_topic_waits_and_all_go_on_republish() -> None:
    connection, publisher = outbox(connected=False)
    publisher.send(state("cam/description", b"first"))
    publisher.send(state("cam/image", b"jpg 1"))
    publisher.send(state("cam/description", b"second"))
    publisher.send(state("cam/description", b"third"))
    assert connection.published == []
    assert publisher.backlog == 2

    connection.connected = True
    publisher.republish()

    assert sent(connection) == [("cam/description", b"third"), ("cam/image", b"jpg 1")]
    assert publisher.backlog == 0


def test_republish_sends_every_state_again_after_a_reconnect() -> None:
    connection, publisher = outbox()
    publisher.send_all([state("n/status", b"online"), state("cam/enabled", b"ON"), event("cam/result", b"r")])
    connection.published.clear()
    connection.connected = False
    publisher.send(state("cam/enabled", b"OFF"))  # changed while away: sent once, with the others
    connection.connected = True

    publisher.republish()

    # Every state again, the one changed while away as it is now; never an event that went out already.
    assert sent(connection) == [("n/status", b"online"), ("cam/enabled", b"OFF")]


# Events


def test_events_wait_in_order_while_the_broker_has_no_room_and_go_after_the_states() -> None:
    connection, publisher = outbox(room=False)
    publisher.send(event("cam/event", b"pending"))
    publisher.send(state("cam/description", b"a dog"))
    publisher.send(event("cam/result", b"described"))
    publisher.send(event("cam/event", b"described"))
    assert connection.published == []

    connection.has_room = True
    publisher.flush()

    assert sent(connection) == [("cam/description", b"a dog"), ("cam/event", b"pending"),
                                ("cam/result", b"described"), ("cam/event", b"described")]


def test_flush_sends_only_as_much_as_the_broker_has_room_for() -> None:
    connection, publisher = outbox(connected=False)
    publisher.send_all([event("e", b"1"), state("s", b"a"), state("t", b"b"), event("e", b"2"), event("e", b"3")])
    connection.connected = True
    connection.room = 1

    publisher.flush()
    assert sent(connection) == [("s", b"a")]
    assert publisher.backlog == 4

    connection.room = 2
    publisher.flush()
    assert sent(connection) == [("s", b"a"), ("t", b"b"), ("e", b"1")]
    connection.room = 5
    publisher.flush()
    assert sent(connection) == [("s", b"a"), ("t", b"b"), ("e", b"1"), ("e", b"2"), ("e", b"3")]
    assert publisher.backlog == 0


def test_while_the_broker_has_no_room_a_changed_state_waits_as_its_newest_value_behind_the_others() -> None:
    connection, publisher = outbox(room=False)
    publisher.send_all([state("cam/description", b"first"), state("cam/image", b"jpg"),
                        state("cam/description", b"second")])
    assert publisher.backlog == 2

    connection.has_room = True
    publisher.flush()

    assert sent(connection) == [("cam/image", b"jpg"), ("cam/description", b"second")]


def test_an_event_made_while_others_wait_goes_behind_them() -> None:
    connection, publisher = outbox(room=False)
    publisher.send(event("cam/event", b"pending"))
    connection.has_room = True  # room again, but the dispatcher has not flushed yet

    publisher.send(event("cam/event", b"described"))

    assert connection.published == []  # sent now, the outcome would overtake its "pending"
    publisher.flush()
    assert sent(connection) == [("cam/event", b"pending"), ("cam/event", b"described")]


def test_an_event_made_while_a_state_waits_goes_behind_it_but_a_state_does_not_wait() -> None:
    connection, publisher = outbox(connected=False)
    publisher.send(state("cam/image", b"jpg"))
    connection.connected = True  # reconnected; the dispatcher has not republished yet

    publisher.send(event("cam/event", b"pending"))
    assert connection.published == []
    publisher.send(state("cam/description", b"a fox"))  # a state goes out when it can, events waiting or not
    assert sent(connection) == [("cam/description", b"a fox")]

    publisher.flush()
    assert sent(connection) == [("cam/description", b"a fox"), ("cam/image", b"jpg"), ("cam/event", b"pending")]


# What is dropped


def test_over_the_limit_events_nobody_asked_for_are_dropped_first() -> None:
    connection, publisher = outbox(connected=False, max_waiting_events=3)
    publisher.send_all([event("e", b"trigger 1", asked=True), event("e", b"snapshot 1"),
                        event("e", b"request 1", asked=True), event("e", b"snapshot 2"),
                        event("e", b"snapshot 3")])
    assert publisher.dropped == 2

    connection.connected = True
    publisher.flush()

    assert connection.on("e") == [b"trigger 1", b"request 1", b"snapshot 3"]


def test_when_every_waiting_event_was_asked_for_the_oldest_is_dropped() -> None:
    connection, publisher = outbox(connected=False, max_waiting_events=2)
    publisher.send_all([event("e", f"request {n}".encode(), asked=True) for n in range(1, 5)])
    assert publisher.dropped == 2

    connection.connected = True
    publisher.flush()

    assert connection.on("e") == [b"request 3", b"request 4"]


def test_states_are_never_dropped() -> None:
    connection, publisher = outbox(connected=False, max_waiting_events=1)
    publisher.send_all([state(f"cam{n}/description", b"text") for n in range(5)])
    publisher.send_all([event("e", b"1"), event("e", b"2")])
    assert publisher.dropped == 1

    connection.connected = True
    publisher.flush()

    assert connection.topics() == [f"cam{n}/description" for n in range(5)] + ["e"]
    assert connection.on("e") == [b"2"]


def test_drops_are_reported_once_until_the_backlog_clears(caplog: pytest.LogCaptureFixture) -> None:
    connection, publisher = outbox(connected=False, max_waiting_events=1)
    with caplog.at_level(logging.WARNING, "edge_vlm.publish.publisher"):
        publisher.send_all([event("a", b"1"), event("b", b"2"), event("c", b"3")])
        connection.connected = True
        publisher.flush()
        connection.connected = False
        publisher.send_all([event("d", b"4"), event("e", b"5")])

    assert publisher.dropped == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "1 events wait for the broker (mqtt.max_queued_messages): dropping the oldest, first to a; "
        "counted as outbox_dropped",
        "1 events wait for the broker (mqtt.max_queued_messages): dropping the oldest, first to d; "
        "counted as outbox_dropped",
    ]
    assert connection.topics() == ["c"]
