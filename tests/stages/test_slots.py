"""The one slot policy, for triggers waiting for a frame and jobs waiting for the NPU."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from edge_vlm.core import slots as slots_module
from edge_vlm.core.contracts import Origin
from edge_vlm.core.errors import ErrorCode, Refused
from edge_vlm.core.slots import Placed, Slots
from edge_vlm.core.stats import Stats


@dataclass(frozen=True)
class Item:
    name: str
    origin: Origin


def slots(max_requests: int = 3) -> tuple[Slots[Item], Stats]:
    stats = Stats("test")
    return Slots(lambda item: item.origin, stats, max_requests=max_requests), stats


def test_latest_wins_and_the_replaced_ones_are_counted() -> None:
    policy, stats = slots()
    a1, a2, a3 = (Item(f"a{n}", Origin.SNAPSHOT) for n in range(1, 4))
    assert policy.put("a", a1).replaced is None
    assert policy.put("a", a2).replaced is a1
    assert policy.put("a", a3).replaced is a2
    assert (len(policy), stats.values()["jobs_coalesced"]) == (1, 2)
    assert policy.take("a") is a3
    assert policy.take("a") is None and not policy


def test_what_came_by_itself_joins_what_was_asked_for_and_never_replaces_it() -> None:
    policy, stats = slots()
    asked = Item("t1", Origin.TRIGGER)
    policy.put("a", asked)
    placed = policy.put("a", Item("m1", Origin.MOTION))
    assert (placed.joined, placed.replaced) == (asked, None)
    again = Item("t2", Origin.TRIGGER)
    assert policy.put("a", again).replaced is asked  # asked replaces asked
    assert policy.take("a") is again
    assert stats.values()["jobs_coalesced"] == 2


def test_frigate_events_are_each_answered_in_the_order_they_came_with_the_latest() -> None:
    policy, stats = slots(max_requests=1)
    first, trigger, second = Item("f1", Origin.FRIGATE), Item("t1", Origin.TRIGGER), Item("f2", Origin.FRIGATE)
    for item in (first, trigger, second):  # each event is an object of its own: none replaces another
        assert policy.put("a", item) == Placed()
    request = Item("r1", Origin.REQUEST)
    policy.put("a", request)
    with pytest.raises(Refused):
        policy.put("a", Item("r2", Origin.REQUEST))  # events do not count against the requests' limit
    assert [policy.take("a") for _ in range(5)] == [request, first, trigger, second, None]
    assert stats.values().get("jobs_coalesced", 0) == 0
    for n in range(slots_module.MAX_EVENTS):
        policy.put("b", Item(f"e{n}", Origin.FRIGATE))
    with pytest.raises(Refused) as refused:
        policy.put("b", Item("one too many", Origin.FRIGATE))
    assert "Frigate events already wait" in str(refused.value)


def test_requests_wait_in_order_ahead_of_the_latest_and_too_many_are_refused() -> None:
    policy, _ = slots(max_requests=2)
    policy.put("a", Item("s1", Origin.SNAPSHOT))
    policy.put("a", Item("r1", Origin.REQUEST))
    policy.put("a", Item("r2", Origin.REQUEST))
    with pytest.raises(Refused) as refused:
        policy.put("a", Item("r3", Origin.REQUEST))
    assert refused.value.code == ErrorCode.BUSY
    assert policy.last_request("a") == Item("r2", Origin.REQUEST)
    assert [policy.take("a") for _ in range(4)] == [Item("r1", Origin.REQUEST), Item("r2", Origin.REQUEST),
                                                   Item("s1", Origin.SNAPSHOT), None]


def test_keys_take_turns_in_the_order_their_work_arrived() -> None:
    policy, _ = slots()
    for name, key in [("b1", "busy"), ("q1", "quiet"), ("b2", "busy")]:
        policy.put(key, Item(name, Origin.REQUEST))
    taken = [policy.take_next() for _ in range(4)]
    assert [t.name if t else None for t in taken] == ["b1", "q1", "b2", None]


def test_supersede_decides_what_takes_the_slot_and_drain_empties_it() -> None:
    stats = Stats("test")
    policy = Slots(lambda item: item.origin, stats, supersede=lambda new, old: Item(new.name + "+" + old.name,
                                                                                     new.origin))
    policy.put("a", Item("s1", Origin.SNAPSHOT))
    policy.put("a", Item("s2", Origin.SNAPSHOT))
    policy.put("b", Item("r1", Origin.REQUEST))
    assert sorted(i.name for i in policy.drain()) == ["r1", "s2+s1"]
    assert len(policy) == 0 and policy.take_next() is None
