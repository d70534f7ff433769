"""Alert rules: after each description, which rules fire, and turning them off again.

An alert sets its state ``ON`` on ``<base>/<cam>/alert/<rule>`` (retained JSON: Home Assistant's
binary sensor reads its ``state``; an automation gets the description, title and camera too),
fires the camera's Home Assistant event entity (non-retained, as Home Assistant requires), and
goes ``OFF`` by itself after ``off_after_s``. Within a rule's cooldown a match is counted, not
sent; the next alert says how many were held back.
"""

from __future__ import annotations

import heapq
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from edge_vlm.config.automation import AlertRule
from edge_vlm.config.models import AppConfig
from edge_vlm.core.topics import ALERTS, Outbound, Topics
from edge_vlm.inference.results import Result
from edge_vlm.publish.messages import iso_time
from edge_vlm.publish.publisher import Publisher

logger = logging.getLogger(__name__)


def matches(rule: AlertRule, text: str, fields: dict[str, Any], answers: dict[str, bool | None]) -> bool:
    if rule.question is not None:
        return answers.get(rule.name) is True
    if rule.keywords:
        return any(re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE) for word in rule.keywords)
    if rule.regex is not None:
        return re.search(rule.regex, text, re.IGNORECASE) is not None
    return _field_matches(rule, fields.get(str(rule.field)))


def _field_matches(rule: AlertRule, value: Any) -> bool:
    if value is None:
        return False
    if rule.above is not None:
        try:
            return float(value) > rule.above
        except (TypeError, ValueError):
            return False
    if isinstance(rule.equals, str) and isinstance(value, str):
        return value.strip().lower() == rule.equals.strip().lower()
    return bool(value == rule.equals)


@dataclass
class Fired:
    """The rules a description fired, and the messages that say so."""

    names: list[str] = field(default_factory=list)
    messages: list[Outbound] = field(default_factory=list)


@dataclass
class _State:
    fired_at: float = float("-inf")  # time.monotonic() of the last alert sent
    suppressed: int = 0  # matches held back by the cooldown since
    on: bool = False


class Alerts:
    def __init__(self, config: AppConfig, topics: Topics, publisher: Publisher) -> None:
        self._topics = topics
        self._publisher = publisher
        self._rules = {camera.id: camera.alerts for camera in config.cameras}
        self._states = {(c, rule.name): _State() for c, rules in self._rules.items() for rule in rules}
        self._offs: list[tuple[float, str, str]] = []  # (when, camera, rule), a heap
        self._changed = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._turn_off, name="edge_vlm-alerts", daemon=True)

    def start(self) -> None:
        for camera, rule in self._states:
            self._publisher.send(self._state_message(camera, rule, {"state": "OFF"}))
        self._thread.start()

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._thread.is_alive():
            self._thread.join()

    def check(self, result: Result) -> Fired:
        """The camera's rules that match this description: their names, and the messages that say so
        (sent by the caller after the description, which they belong to)."""
        camera = result.job.camera
        values = {**result.description.details, **(result.fields or {})}  # a field rule's values
        fired = Fired()
        for rule in self._rules.get(camera, []):
            if not matches(rule, result.text, values, result.answers):
                continue
            now = time.monotonic()
            with self._changed:
                state = self._states[camera, rule.name]
                if now - state.fired_at < rule.cooldown_s:
                    state.suppressed += 1
                    logger.info("%s: alert %s held back by its cooldown (%d so far)", camera, rule.name,
                                state.suppressed)
                    continue
                suppressed, state.suppressed, state.fired_at, state.on = state.suppressed, 0, now, True
                heapq.heappush(self._offs, (now + rule.off_after_s, camera, rule.name))
                self._changed.notify()
            fired.names.append(rule.name)
            fired.messages += self._messages(rule.name, result, suppressed)
        return fired

    def _messages(self, rule: str, result: Result, suppressed: int) -> list[Outbound]:
        camera = result.job.camera
        logger.info("%s: alert %s [id %s]: %s", camera, rule, result.job.request_id, result.text)
        details = {"rule": rule, "camera": camera, "id": result.job.request_id, "description": result.text,
                   "title": (result.fields or {}).get("title"), "time": iso_time(time.time()),
                   "suppressed": suppressed}
        event = json.dumps({"event_type": rule, **details}, ensure_ascii=False).encode()
        return [self._state_message(camera, rule, {"state": "ON", **details}),
                Outbound(self._topics.camera(camera, ALERTS), event, retain=False)]

    def _state_message(self, camera: str, rule: str, values: dict[str, Any]) -> Outbound:
        return Outbound(self._topics.alert(camera, rule), json.dumps(values, ensure_ascii=False).encode(), True)

    def _turn_off(self) -> None:
        with self._changed:
            while not self._stopping:
                timeout = self._offs[0][0] - time.monotonic() if self._offs else None
                if timeout is None or timeout > 0:
                    self._changed.wait(timeout)
                    continue
                _, camera, rule = heapq.heappop(self._offs)
                state = self._states[camera, rule]
                if state.on and time.monotonic() - state.fired_at >= self._off_after(camera, rule):
                    state.on = False
                    self._publisher.send(self._state_message(camera, rule, {"state": "OFF", "rule": rule,
                                                                           "camera": camera}))

    def _off_after(self, camera: str, rule: str) -> float:
        return next(r.off_after_s for r in self._rules[camera] if r.name == rule)
