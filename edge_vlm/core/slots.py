"""The one slot policy, for triggers waiting for a frame and for jobs waiting for the NPU.

Per key (a camera): requests ("ask anything") and Frigate's events, each a question of its own, wait
in the order they came, each answered, at most ``MAX_REQUESTS``; anything else waits in one slot
where the newest replaces the one before (it will see a newer frame anyway), except that one that
came by itself (a snapshot, motion, an interval) never replaces one that was asked for (a trigger):
it joins it instead. Keys with
work take turns in the order their work arrived, so a busy camera cannot push the others back.

Not thread-safe: its owner holds its own lock around it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from edge_vlm.core.contracts import AUTOMATIC, EACH_ANSWERED, Origin
from edge_vlm.core.errors import ErrorCode, Refused
from edge_vlm.core.stats import Stats

MAX_REQUESTS = 32  # waiting per camera

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
    latest: Item | None = None

    def __iter__(self) -> Iterator[Item]:
        yield from self.requests
        if self.latest is not None:
            yield self.latest


class Slots(Generic[Item]):
    def __init__(self, origin: Callable[[Item], Origin], stats: Stats, *, max_requests: int = MAX_REQUESTS,
                 supersede: Callable[[Item, Item], Item] | None = None) -> None:
        """``origin``: what an item came from; ``stats`` counts ``jobs_coalesced``; ``supersede(new,
        waiting)``: what takes the slot when ``new`` replaces ``waiting`` (default ``new``)."""
        self._origin = origin
        self._supersede = supersede
        self._stats = stats
        self._max_requests = max_requests
        self._slots: dict[str, _Slot[Item]] = {}
        self._turns: OrderedDict[str, None] = OrderedDict()  # keys with work, in turn order

    def put(self, key: str, item: Item) -> Placed[Item]:
        """Let ``item`` wait under ``key``; Refused (``busy``) when too many requests wait there."""
        slot = self._slots.setdefault(key, _Slot())
        self._turns.setdefault(key, None)
        if self._origin(item) in EACH_ANSWERED:
            if len(slot.requests) >= self._max_requests:
                raise Refused(f"{self._max_requests} requests and events already wait here", code=ErrorCode.BUSY)
            slot.requests.append(item)
            return Placed()
        waiting = slot.latest
        if waiting is None:
            slot.latest = item
            return Placed()
        self._stats.count("jobs_coalesced")
        if self._origin(item) in AUTOMATIC and self._origin(waiting) not in AUTOMATIC:
            return Placed(joined=waiting)
        slot.latest = item if self._supersede is None else self._supersede(item, waiting)
        return Placed(replaced=waiting)

    def take(self, key: str) -> Item | None:
        """The next item of ``key``: its oldest request, else its latest."""
        slot = self._slots.get(key)
        if slot is None:
            return None
        if slot.requests:
            item: Item | None = slot.requests.popleft()
        else:
            item, slot.latest = slot.latest, None
        if not slot.requests and slot.latest is None:
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

    def last_request(self, key: str) -> Item | None:
        slot = self._slots.get(key)
        return slot.requests[-1] if slot is not None and slot.requests else None

    def drain(self) -> list[Item]:
        """Everything waiting, taken away: the latest-wins items, then the requests."""
        slots = self._slots.values()
        left = [s.latest for s in slots if s.latest is not None] + [r for s in slots for r in s.requests]
        self._slots.clear()
        self._turns.clear()
        return left

    def __len__(self) -> int:
        return sum(len(slot.requests) + (slot.latest is not None) for slot in self._slots.values())

    def __bool__(self) -> bool:
        return bool(self._slots)
