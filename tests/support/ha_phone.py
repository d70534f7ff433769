"""A phone for Home Assistant's companion-app notifications, without a phone.

It registers through the companion app's own API (``POST /api/mobile_app/registrations``), which makes
Home Assistant's mobile_app integration create ``notify.mobile_app_<name>``; its ``push_url`` is a
local HTTP server standing in for the push gateway the app would name, so every notification Home
Assistant sends to the phone arrives here as the JSON it would send to the real gateway (message,
title, data). Fetching a notification's ``data.image`` with the user's token is what the app does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.ha import WAIT_S, HomeAssistant, wait_until

Notification = dict[str, Any]


class PushGateway:
    """Records each notification Home Assistant pushes, in order."""

    def __init__(self) -> None:
        self.notifications: list[Notification] = []
        self._changed = threading.Condition()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                gateway._received(json.loads(body))
                answer = b"{}"  # what the real gateway answers, without rate limits
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/push"
        self._thread = threading.Thread(target=self._server.serve_forever, name="push-gateway", daemon=True)
        self._thread.start()

    def _received(self, notification: Notification) -> None:
        with self._changed:
            self.notifications.append(notification)
            self._changed.notify_all()

    def wait_for(self, where: Callable[[Notification], bool], since: int = 0, timeout: float = WAIT_S,
                 what: str = "a notification") -> Notification:
        """The first notification from the ``since``-th on for which ``where`` holds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((n for n in self.notifications[since:] if where(n)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{what}: not pushed within {timeout} s; pushed: "
                                         f"{self.notifications[since:]}")
                self._changed.wait(left)

    def tagged(self, tag: str, since: int = 0) -> list[Notification]:
        with self._changed:
            return [n for n in self.notifications[since:] if (n.get("data") or {}).get("tag") == tag]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def register(hass: HomeAssistant, name: str, gateway: PushGateway) -> str:
    """Register a companion app called ``name`` whose pushes go to ``gateway``; its notify action."""
    hass.api("POST", "mobile_app/registrations", {
        "app_id": "io.homeassistant.companion.android", "app_name": "Home Assistant",
        "app_version": "2025.1.1-full", "device_name": name, "manufacturer": "edge_vlm tests",
        "model": "push gateway", "os_name": "Android", "os_version": "14", "supports_encryption": False,
        "app_data": {"push_token": f"token-{name}", "push_url": gateway.url},
    })
    action = f"mobile_app_{name}"

    def registered() -> bool:
        services = {s["domain"]: s["services"] for s in hass.api("GET", "services")}
        return action in services.get("notify", {})

    wait_until(registered, what=f"notify.{action} registered")
    return f"notify.{action}"


@contextmanager
def phone(hass: HomeAssistant, name: str) -> Iterator[tuple[str, PushGateway]]:
    gateway = PushGateway()
    try:
        yield register(hass, name, gateway), gateway
    finally:
        gateway.close()
