"""Counters of what the daemon did, published retained on ``<base>/<node>/diagnostics``."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from edge_vlm import __version__
from edge_vlm.mqtt.topics import Outbound, Topics

COUNTERS = ("jobs_done", "jobs_failed", "jobs_coalesced", "jobs_skipped", "inputs_refused")


class Stats:
    """Thread-safe counters; the dispatcher and the worker both count."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.started_at = time.time()
        self._counts: Counter[str] = Counter()
        self._last_latency_ms: float | None = None
        self._lock = threading.Lock()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def job_done(self, latency_ms: float) -> None:
        with self._lock:
            self._counts["jobs_done"] += 1
            self._last_latency_ms = latency_ms

    def values(self, **extra: Any) -> dict[str, Any]:
        with self._lock:
            counts = {name: self._counts[name] for name in COUNTERS}
            latency = self._last_latency_ms
        return {
            "backend": self.backend,
            "version": __version__,
            **counts,
            "last_latency_ms": None if latency is None else round(latency, 1),
            "uptime_s": round(time.time() - self.started_at),
            **extra,
        }


def diagnostics_message(topics: Topics, values: dict[str, Any]) -> Outbound:
    return Outbound(topics.diagnostics, json.dumps(values, separators=(",", ":")).encode(), retain=True)


def model_state_message(topics: Topics, *, available: bool, reason: str) -> Outbound:
    """Whether the backend's model can describe frames now (retained)."""
    payload = {"state": "ready" if available else "unavailable", "reason": reason,
               "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return Outbound(topics.model, json.dumps(payload, separators=(",", ":")).encode(), retain=True)
