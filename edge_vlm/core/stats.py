"""Counters of what the daemon did, kept by every stage (published by edge_vlm.publish.diagnostics)."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

from edge_vlm import __version__

COUNTERS = ("jobs_done", "jobs_failed", "jobs_coalesced", "jobs_skipped", "inputs_refused")
# The stages of the last described job, in ``stages_ms`` (None: the backend has no such stage).
# capture: getting the frame (an MQTT snapshot: decoding it); preprocess: making the backend's
# input of it; queued: waiting for the backend; encoder, prefill, decode: the vlm backend's (opencv
# has stages of its own, in each result's timings_ms); publish: building the result messages and
# handing them to the MQTT client.
STAGES = ("capture", "preprocess", "queued", "encoder", "prefill", "decode", "publish")
NPU_WINDOW_S = 3600.0  # "NPU seconds in the last hour", per camera: which camera eats the board


class Stats:
    """Thread-safe counters; the dispatcher and the worker both count."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.started_at = time.time()
        self._counts: Counter[str] = Counter()
        self._last_latency_ms: float | None = None
        self._last_stages_ms: dict[str, float | None] = dict.fromkeys(STAGES)
        self._npu: dict[str, deque[tuple[float, float]]] = {}  # camera -> (time.monotonic(), NPU seconds)
        self._lock = threading.Lock()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def job_done(self, latency_ms: float, timings_ms: Mapping[str, float] | None = None, *,
                 camera: str | None = None, npu_s: float | None = None) -> None:
        with self._lock:
            self._counts["jobs_done"] += 1
            self._last_latency_ms = latency_ms
            if timings_ms is not None:
                self._last_stages_ms = {stage: timings_ms.get(stage) for stage in STAGES}
            if camera is not None and npu_s is not None:
                self._npu.setdefault(camera, deque()).append((time.monotonic(), npu_s))

    def _npu_last_hour(self) -> dict[str, float]:
        since = time.monotonic() - NPU_WINDOW_S
        for jobs in self._npu.values():
            while jobs and jobs[0][0] < since:
                jobs.popleft()
        return {camera: round(sum(s for _, s in jobs), 1) for camera, jobs in self._npu.items()}

    def values(self, **extra: Any) -> dict[str, Any]:
        with self._lock:
            counts = {name: self._counts[name] for name in COUNTERS}
            latency = self._last_latency_ms
            stages = dict(self._last_stages_ms)
            npu = self._npu_last_hour()
        return {
            "backend": self.backend,
            "version": __version__,
            **counts,
            "last_latency_ms": None if latency is None else round(latency, 1),
            "stages_ms": {stage: None if ms is None else round(ms, 1) for stage, ms in stages.items()},
            "npu_s_last_hour": npu,
            "uptime_s": round(time.time() - self.started_at),
            **extra,
        }
