"""Descriptions back into Frigate (``frigate.write_descriptions``): each described event's text on
its tracked object, ``POST /api/events/<id>/description`` (Frigate 0.15+), where Frigate's Explore
shows it and its semantic search finds it.

Frigate rewrites an event's stored data while it still tracks the object, so a description is written
once the event has ended: ``GET /api/events/<id>`` says so with an ``end_time``, asked every
``POLL_S`` for up to ``GIVE_UP_S``. On Frigate's authenticated port the writer logs in
(``POST /api/login``) and sends the JWT it gets (cookie ``frigate_token``) as a bearer token, logging
in again when it is refused. All of it runs on one thread of its own: a result is never held back,
and a failure is one log line and one ``frigate_write_failed`` error on the camera's error topic.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote

from edge_vlm.config.sources import FrigateConfig
from edge_vlm.core.errors import ErrorCode

logger = logging.getLogger(__name__)

POLL_S = 10.0  # how often an event still tracked is asked about
GIVE_UP_S = 3600.0  # an event not ended after this is given up on
TIMEOUT_S = 10.0  # each HTTP request
MAX_WAITING = 256  # descriptions waiting for their event to end; beyond, the oldest is dropped
TOKEN_COOKIE = "frigate_token"  # noqa: S105 - the name of Frigate's cookie, not a secret

Report = Callable[[str, str, ErrorCode, str], None]  # camera, event id, code, message


class WriteFailed(Exception):
    """It cannot be written: said once, not tried again."""


class NotYet(WriteFailed):
    """Not now (Frigate down, restarting, or not storing the event yet): tried again until GIVE_UP_S."""


class FrigateWriter:
    def __init__(self, config: FrigateConfig, password: str | None, report: Report) -> None:
        self._api = (config.api_url or "").rstrip("/")
        self._login = None if config.username is None else {"user": config.username, "password": password or ""}
        self._report = report
        self._token: str | None = None
        self._due: list[tuple[float, float, str]] = []  # (when, given up at, event id), one per event
        self._texts: dict[str, tuple[str, str]] = {}  # event id -> (camera, its newest description)
        self._changed = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="edge_vlm-frigate-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Descriptions still waiting for their event's end are not written (said in the log). Waits
        for a write in progress at most one request's timeout."""
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._thread.is_alive():
            self._thread.join(TIMEOUT_S)
        if self._due:
            logger.warning("Frigate: %d description(s) not written back: their events had not ended before the "
                           "daemon stopped", len(self._due))

    def offer(self, camera: str, event_id: str, text: str) -> None:
        """A description of a Frigate event (the worker's thread: never blocks on Frigate). One
        described again (a name came) replaces its text, also while the older one is being written."""
        now = time.monotonic()
        with self._changed:
            if event_id not in self._texts:
                heapq.heappush(self._due, (now, now + GIVE_UP_S, event_id))
            self._texts[event_id] = (camera, text)
            if len(self._due) > MAX_WAITING:
                dropped = min(self._due, key=lambda item: item[1])  # the oldest: given up on soonest
                self._due.remove(dropped)
                heapq.heapify(self._due)
                del self._texts[dropped[2]]
                logger.warning("Frigate: %d descriptions wait to be written back; dropped event %s's",
                               MAX_WAITING, dropped[2])
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._stopping and (not self._due or self._due[0][0] > time.monotonic()):
                    self._changed.wait(None if not self._due else self._due[0][0] - time.monotonic())
                if self._stopping:
                    return
                _, give_up, event_id = heapq.heappop(self._due)
                camera, text = self._texts[event_id]
            try:
                written = self._write_if_ended(event_id, text)
            except NotYet as exc:
                if time.monotonic() < give_up:
                    logger.debug("Frigate: event %s not written yet: %s", event_id, exc)
                    written = False
                else:
                    self._failed(camera, event_id, f"{exc} (for {GIVE_UP_S:.0f} s)")
                    continue
            except WriteFailed as exc:
                self._failed(camera, event_id, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - one event's surprise must not end the writer
                self._failed(camera, event_id, f"{type(exc).__name__}: {exc}")
                continue
            if written:
                logger.info("Frigate: description written to event %s", event_id)
            elif time.monotonic() >= give_up:
                self._failed(camera, event_id, f"the event had not ended {GIVE_UP_S:.0f} s after its description")
                continue
            with self._changed:
                if written and self._texts[event_id][1] == text:
                    del self._texts[event_id]
                else:  # still tracked, or described again while written: (again) later, or now
                    heapq.heappush(self._due, (time.monotonic() + (0 if written else POLL_S), give_up, event_id))

    def _failed(self, camera: str, event_id: str, why: str) -> None:
        with self._changed:
            self._texts.pop(event_id, None)
        message = f"Frigate event {event_id}: description not written back: {why}"
        logger.warning("%s: %s", camera, message)
        self._report(camera, event_id, ErrorCode.FRIGATE_WRITE_FAILED, message)

    def _write_if_ended(self, event_id: str, text: str) -> bool:
        """True once written; False while Frigate still tracks the object; NotYet, WriteFailed."""
        path = f"/api/events/{quote(event_id, safe='')}"
        event = self._request("GET", path)
        if not isinstance(event, dict) or event.get("end_time") is None:
            return False
        self._request("POST", f"{path}/description", {"description": text})
        return True

    def _request(self, method: str, path: str, body: Any = None, *, again: bool = True) -> Any:
        """Frigate's JSON answer; WriteFailed saying why not. A refusal (401) logs in and tries once more."""
        if self._login is not None and self._token is None:
            self._token = self._log_in()
        headers = {"Content-Type": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self._api + path, data=data, headers=headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 - http(s) by config
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 401 and self._login is not None and again:
                self._token = None
                return self._request(method, path, body, again=False)
            if exc.code in (401, 403):
                what = ("log in: set frigate.username and its password" if exc.code == 401 else
                        "the user is not an admin")
                raise WriteFailed(f"{method} {path}: HTTP {exc.code}: refused: {what}") from None
            what = ("Frigate does not know the event (it keeps only events with a snapshot or a recording)"
                    if exc.code == 404 else "failed")
            raise NotYet(f"{method} {path}: HTTP {exc.code}: {what}") from None
        except (OSError, ValueError) as exc:
            raise NotYet(f"{method} {path}: {exc}") from None

    def _log_in(self) -> str:
        request = urllib.request.Request(self._api + "/api/login", data=json.dumps(self._login).encode(),  # noqa: S310
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 - http(s) by config
                cookies = SimpleCookie(response.headers.get("Set-Cookie", ""))
        except urllib.error.HTTPError as exc:
            exc.close()
            raise WriteFailed(f"login as {self._login and self._login['user']!r} refused: HTTP {exc.code}") from None
        except OSError as exc:
            raise NotYet(f"login: {exc}") from None
        if TOKEN_COOKIE not in cookies:
            raise WriteFailed(f"login answered without a {TOKEN_COOKIE} cookie")
        return cookies[TOKEN_COOKIE].value
