"""The one slot policy, for triggers waiting for a frame and for jobs waiting for the NPU.

Per key (a camera): requests ("ask anything") wait in the order they came, each answered, at most
``MAX_REQUESTS``, ahead of the rest; Frigate's events, each an object of its own, also wait in
order and are each answered, at most ``MAX_EVENTS``; anything else waits in one slot where the
newest replaces the one before (it will see a newer frame anyway), except that one that came by
itself (a snapshot, motion, an interval) never replaces one that was asked for (a trigger): it joins
it instead. After the requests, the events and that slot are served in the order they came. Keys
with work take turns in the order their work arrived, so a busy camera cannot push the others back.

Not thread-safe: its owner holds its own lock around it.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from edge_vlm.core.contracts import AUTOMATIC, Origin
from edge_vlm.core.errors import ErrorCode, Refused
from edge_vlm.core.stats import Stats

MAX_REQUESTS = 32  # waiting per camera
MAX_EVENTS = 16  # Frigate events waiting per camera

Item = TypeVar("Item")


@dataclass(frozen=True)
class Placed(Generic[Item]):
    """What putting an item did: the waiting one it ``replaced``, or the waiting one it ``joined``
    (then it will not run itself: that one answers for it)."""

    replaced: Item | None = None
    joined: Item | None = None


@dataclass
class _Slot(Generic[Item]):
    requests: deque[Item] = field(default_factory=deque)
    events: deque[tuple[int, Item]] = field(default_factory=deque)  # (arrival, Frigate event)
    latest: tuple[int, Item] | None = None

    def __iter__(self) -> Iterator[Item]:
        yield from self.requests
        yield from (item for _, item in self.events)
        if self.latest is not None:
            yield self.latest[1]

    def __len__(self) -> int:
        return len(self.requests) + len(self.events) + (self.latest is not None)


class Slots(Generic[Item]):
    def __init__(self, origin: Callable[[Item], Origin], stats: Stats, *, max_requests: int = MAX_REQUESTS,
                 supersede: Callable[[Item, Item], Item] | None = None) -> None:
        """``origin``: what an item came from; ``stats`` counts ``jobs_coalesced``; ``supersede(new,
        waiting)``: what takes the slot when ``new`` replaces ``waiting`` (default ``new``)."""
        self._origin = origin
        self._supersede = supersede
        self._stats = stats
        self._max_requests = max_requests
        self._arrivals = itertools.count()
        self._slots: dict[str, _Slot[Item]] = {}
        self._turns: OrderedDict[str, None] = OrderedDict()  # keys with work, in turn order

    def put(self, key: str, item: Item) -> Placed[Item]:
        """Let ``item`` wait under ``key``; Refused (``busy``) when too many requests or events wait there."""
        slot = self._slots.setdefault(key, _Slot())
        self._turns.setdefault(key, None)
        origin = self._origin(item)
        if origin == Origin.REQUEST:
            if len(slot.requests) >= self._max_requests:
                raise Refused(f"{self._max_requests} requests already wait", code=ErrorCode.BUSY)
            slot.requests.append(item)
            return Placed()
        if origin == Origin.FRIGATE:
            if len(slot.events) >= MAX_EVENTS:
                raise Refused(f"{MAX_EVENTS} Frigate events already wait", code=ErrorCode.BUSY)
            slot.events.append((next(self._arrivals), item))
            return Placed()
        if slot.latest is None:
            slot.latest = (next(self._arrivals), item)
            return Placed()
        waiting = slot.latest[1]
        self._stats.count("jobs_coalesced")
        if origin in AUTOMATIC and self._origin(waiting) not in AUTOMATIC:
            return Placed(joined=waiting)
        slot.latest = (slot.latest[0], item if self._supersede is None else self._supersede(item, waiting))
        return Placed(replaced=waiting)

    def take(self, key: str) -> Item | None:
        """The next item of ``key``: its oldest request, else its event or latest that came first."""
        slot = self._slots.get(key)
        if slot is None:
            return None
        if slot.requests:
            item = slot.requests.popleft()
        elif slot.events and (slot.latest is None or slot.events[0][0] < slot.latest[0]):
            item = slot.events.popleft()[1]
        else:
            assert slot.latest is not None  # a slot with nothing waiting is deleted
            item, slot.latest = slot.latest[1], None
        if not slot:
            del self._slots[key]
            self._turns.pop(key, None)
        return item

    def take_next(self) -> Item | None:
        """The next item of the key whose turn it is; that key goes last if it has more."""
        while self._turns:
            key, _ = self._turns.popitem(last=False)
            item = self.take(key)
            if key in self._slots:
                self._turns[key] = None
            if item is not None:
                return item
        return None

    def take_request(self, key: str, match: Callable[[Item], bool]) -> Item | None:
        """The waiting request of ``key`` that ``match`` picks, taken away (it will not run); None if none."""
        slot = self._slots.get(key)
        found = next((item for item in slot.requests if match(item)), None) if slot is not None else None
        if slot is None or found is None:
            return None
        slot.requests.remove(found)
        if not slot:
            del self._slots[key]
            self._turns.pop(key, None)
        return found

    def last_request(self, key: str) -> Item | None:
        slot = self._slots.get(key)
        return slot.requests[-1] if slot is not None and slot.requests else None

    def drain(self) -> list[Item]:
        """Everything waiting, taken away: the latest-wins items, the events, then the requests."""
        slots = self._slots.values()
        left = ([s.latest[1] for s in slots if s.latest is not None] + [e for s in slots for _, e in s.events]
                + [r for s in slots for r in s.requests])
        self._slots.clear()
        self._turns.clear()
        return left

    def __len__(self) -> int:
        return sum(len(slot) for slot in self._slots.values())

    def __bool__(self) -> bool:
        return bool(self._slots)
