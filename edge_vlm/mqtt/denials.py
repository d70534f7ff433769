"""The broker's ACL refusals, each reported once: a subscription (SUBACK) or a publish (MQTT 5 PUBACK).

paho matches acknowledgements to packets by message id only, and its callbacks run on its network
thread, which may see an acknowledgement before the thread that sent the packet has recorded the id
(paho's ``publish()`` returns it only afterwards). So refusals that arrive first wait, keyed by the
message id, for the record; nothing here blocks on paho (a lock held around a paho call that paho's
thread also waits for would deadlock). Both maps are keyed by message id: at most 65535 entries.

MQTT 3.1.1 has no way to refuse a publish: Mosquitto drops a denied one silently (its log says
"Denied PUBLISH"), so only MQTT 5 reports it.

Requesters choose their reply topics, so the topics remembered as reported are capped (``LISTED``):
past that, one line says so and further denials are only counted (``unlisted``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

logger = logging.getLogger(__name__)

LISTED = 100  # topics (and filters) whose denial is logged and remembered; later ones are counted


class Denials:
    def __init__(self, username: str | None) -> None:
        self._user = username
        self._lock = threading.Lock()
        self._sent: dict[int, tuple[str, tuple[str, ...]]] = {}  # mid -> (kind, topics or filters)
        self._early: dict[int, list[tuple[int, str]]] = {}  # mid -> (value, name) per topic, before recorded
        self._reported: set[tuple[str, str]] = set()
        self.unlisted = 0  # denials past LISTED topics: counted, not logged

    def sent(self, kind: str, mid: int, topics: Iterable[str]) -> None:
        """``kind`` ("subscribe" or "publish") packet ``mid`` went out for ``topics`` (any thread)."""
        names = tuple(topics)
        with self._lock:
            early = self._early.pop(mid, None)
            if early is None:
                self._sent[mid] = (kind, names)
        if early is not None:
            self._report(kind, names, early)

    def acknowledged(self, kind: str, mid: int, reasons: list[tuple[int, str]]) -> None:
        """The broker answered packet ``mid``: a (reason code, name) per topic (paho's thread)."""
        refused = any(value >= 0x80 for value, _ in reasons)
        with self._lock:
            entry = self._sent.pop(mid, None)
            if entry is None:
                if refused:
                    self._early[mid] = reasons
                return
        if refused:
            self._report(entry[0], entry[1], reasons)

    def _report(self, kind: str, names: tuple[str, ...], reasons: list[tuple[int, str]]) -> None:
        who = f"user {self._user!r}" if self._user is not None else "anonymous clients"
        for name, (value, given) in zip(names, reasons, strict=False):
            if value < 0x80:
                continue
            first_unlisted: bool | None  # None: listed; True: the first past the cap
            with self._lock:
                if (kind, name) in self._reported:
                    continue
                if len(self._reported) >= LISTED:
                    self.unlisted += 1
                    first_unlisted = self.unlisted == 1
                else:
                    self._reported.add((kind, name))
                    first_unlisted = None
            if first_unlisted is not None:
                if first_unlisted:
                    logger.error("broker denied access to %d topics: further denials are counted, not listed",
                                 LISTED)
                continue
            reason = given
            if value == 0x80 and kind == "subscribe":  # all MQTT 3.1.1 can say
                reason = "Failure (SUBACK 0x80; MQTT 3.1.1 gives no reason: usually not authorized)"
            what = "subscription to" if kind == "subscribe" else "publish to"
            access = "read" if kind == "subscribe" else "write"
            logger.error("broker denied %s %s: %s — check the broker ACL for %s (it needs %s access there)",
                         what, name, reason, who, access)
