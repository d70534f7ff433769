"""A snapshot's trip through the daemon, counted, from paho's ``on_message`` to its description
published:

- hops: the edge_vlm functions on the stack each time the snapshot is handed on (to the inbox, to
  the scheduler, and the description to the broker connection): the path its data takes;
- cross-module calls: calls from one edge_vlm module into another during the trip (any depth);
- functions run: the distinct edge_vlm functions that ran for it;
- hand-offs: the threads it crossed (and the worker process, there and back, as one).

The real Service (the built-in opencv backend, in its worker process) against a private mosquitto.
Every thread of the daemon is profiled from its start; the calls made while the daemon idles for
as long as the trip took (its dispatcher's chores: flush, acknowledgements, diagnostics) are left
out, so what remains is the trip. The worker process is one hop there and back (not profiled).
Runs against any version of the package that has ``Service(config, password)``, so the same
script measured the tree before the reshape (``git worktree add /tmp/before ba8db2f``, then run
it from there with this file copied in).

Run: .venv/bin/python -m benchmarks.snapshot_trip
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks import help_argument
from edge_vlm.config.models import AppConfig
from edge_vlm.service import Service
from tests.support import images
from tests.support.broker import Mosquitto

PACKAGE = str(Path(sys.modules["edge_vlm"].__file__ or "").parent)
TIMEOUT_S = 30.0

Edge = tuple[str, str]  # caller "module.function" -> callee "module.function"


def _where(frame: FrameType) -> str | None:
    path = frame.f_code.co_filename
    if not path.startswith(PACKAGE):
        return None
    module = path[len(PACKAGE) + 1:].removesuffix(".py").replace("/", ".")
    return f"{module}:{frame.f_code.co_name}"


def _is_hand_off(where: str, frame: FrameType) -> bool:
    """The snapshot handed on: into the inbox, into the scheduler, the description to the connection."""
    if where.endswith("inbox:put") or where.endswith("scheduler:submit"):
        return True
    message = frame.f_locals.get("message")
    return where.endswith("connection:publish") and str(getattr(message, "topic", "")).endswith("/description")


class Calls:
    """edge_vlm's calls, by thread, while recording."""

    def __init__(self) -> None:
        self.recording = False
        self.edges: dict[Edge, set[str]] = {}
        self.functions: set[str] = set()
        self.paths: list[list[str]] = []
        self._lock = threading.Lock()

    def profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or not self.recording:
            return
        callee = _where(frame)
        if callee is None:
            return
        caller = None if frame.f_back is None else _where(frame.f_back)
        with self._lock:
            self.functions.add(callee)
            if caller is not None and callee.split(":")[0] != caller.split(":")[0]:
                self.edges.setdefault((caller, callee), set()).add(threading.current_thread().name)
            if _is_hand_off(callee, frame):
                self.paths.append(_stack(frame))

    def during(self, action: Callable[[], None]) -> tuple[dict[Edge, set[str]], set[str], list[list[str]]]:
        with self._lock:
            self.edges, self.functions, self.paths = {}, set(), []
        self.recording = True
        try:
            action()
        finally:
            self.recording = False
        with self._lock:
            return dict(self.edges), set(self.functions), list(self.paths)


def _stack(frame: FrameType | None) -> list[str]:
    """The edge_vlm functions on the stack, outermost first."""
    found = []
    while frame is not None:
        if (where := _where(frame)) is not None:
            found.append(where)
        frame = frame.f_back
    return found[::-1]


def main() -> None:
    help_argument(__doc__)
    calls = Calls()
    with tempfile.TemporaryDirectory() as directory:
        broker = Mosquitto(Path(directory))
        broker.start()
        config = AppConfig.model_validate({"mqtt": {"port": broker.port}, "cameras": [{"id": "porch"}]})
        threading.setprofile(calls.profile)  # every thread started from now on: the daemon's
        service = Service(config, password=None)
        service.start()
        described = threading.Event()
        client = paho.Client(CallbackAPIVersion.VERSION2)
        client.on_message = lambda *args: described.set()
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        client.subscribe(f"{config.base_topic}/porch/description", qos=1)
        try:
            assert service.serving.wait(TIMEOUT_S), "the daemon did not serve"
            time.sleep(1.0)  # the retained replay and the announcements are over
            jpeg = images.jpeg(1280, 720, seed=5)
            started = time.monotonic()

            def trip() -> None:
                client.publish(f"{config.base_topic}/porch/snapshot", jpeg, qos=1)
                assert described.wait(TIMEOUT_S), "no description"

            trip_edges, trip_functions, paths = calls.during(trip)
            took = time.monotonic() - started
            idle_edges, idle_functions, _ = calls.during(lambda: time.sleep(max(1.0, 2 * took)))
        finally:
            threading.setprofile(None)
            client.loop_stop()
            service.stop()
            broker.stop()
    edges = {edge: threads for edge, threads in trip_edges.items() if edge not in idle_edges}
    threads = sorted({thread for names in edges.values() for thread in names})
    hops = [where for path in paths for where in path]
    modules = {m for edge in edges for m in (edge[0].split(":")[0], edge[1].split(":")[0])}
    print(f"A snapshot's trip: {len(hops)} hops; {len(edges)} cross-module calls in {len(modules)} modules; "
          f"{len(trip_functions - idle_functions)} functions run; {len(threads)} threads "
          f"({', '.join(threads)}) and the worker process: {len(threads)} hand-offs")
    for path in paths:
        print("  " + " -> ".join(path))
    if "-v" in sys.argv:
        print("Functions run:", ", ".join(sorted(trip_functions - idle_functions)))


if __name__ == "__main__":
    main()
