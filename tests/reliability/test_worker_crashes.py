"""The inference worker crashed 10 times in a row, end to end through MQTT: each job in flight is
reported failed with ``worker_crashed``, the job waiting behind it is described by the worker that
comes back, and a good job at the end is described too.

The board's parts stand in as in tests/test_npu_pipeline.py: the fake librkllmrt (a prompt holding
``[[segfault]]`` makes it raise SIGSEGV inside the worker process) and the imgenc stand-in.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_vlm.service import Service
from tests.reliability.conftest import DaemonSecrets, SecretScan, secret_config
from tests.reliability.figures import report, spread
from tests.support import images
from tests.support.broker import Mosquitto
from tests.support.mqtt import Message, Recorder
from tests.support.npu import vlm_backend

pytestmark = pytest.mark.mqtt

CRASHES = 10
WAIT_S = 60.0


def is_log(name: str, start: str) -> Callable[[logging.LogRecord], bool]:
    return lambda r: r.name == name and r.getMessage().startswith(start)


def outcome_of(request_id: str) -> Callable[[dict[str, object]], bool]:
    return lambda e: e["id"] == request_id and e["event_type"] != "pending"


def test_the_worker_crashed_10_times_in_a_row_reports_every_job_and_comes_back(
        broker: Mosquitto, start_daemon: Callable[..., Service], make_recorder: Callable[..., Recorder],
        secret_scan: SecretScan, daemon_secrets: DaemonSecrets, fake_rkllmrt: dict[str, Path], tmp_path: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    backend = vlm_backend(tmp_path, fake_rkllmrt["1.3"], abi="1.3")
    config = secret_config(broker.port, ["front_door", "driveway"], daemon_secrets, backend=backend)
    base = config.base_topic
    model, status = f"{base}/{config.node_id}/model", f"{base}/{config.node_id}/status"
    recorder = secret_scan.watch(make_recorder(broker.port, [f"{base}/+/event", f"{base}/+/error", f"{base}/+/result",
                                                             model, status, f"{config.discovery.prefix}/#"]))
    started = time.monotonic()
    start_daemon(config)
    recorder.wait_for(status, lambda m: m.payload == b"online")

    def event(camera: str, where: Callable[[dict[str, object]], bool], since: int = 0) -> Message:
        return recorder.wait_for(f"{base}/{camera}/event", lambda m: m.index >= since and where(m.json()),
                                 timeout=WAIT_S)

    # front_door's triggers describe its last snapshot: give it one.
    recorder.publish(f"{base}/front_door/snapshot", images.jpeg(seed=1))
    event("front_door", lambda e: e["event_type"] == "described")

    log = secret_scan.log
    respawn_s: list[float] = []
    crashed_messages: list[str] = []
    for n in range(CRASHES):
        mark, log_mark = len(recorder.messages), len(log)
        recorder.publish(f"{base}/front_door/trigger", json.dumps({"id": f"crash-{n}", "prompt": "[[segfault]]"}))
        # A job that waits behind the one that crashes: the worker that comes back describes it.
        recorder.publish(f"{base}/driveway/snapshot", images.jpeg(seed=100 + n))
        failed = event("front_door", outcome_of(f"crash-{n}")).json()
        assert failed["event_type"] == "failed" and failed["error"] == "worker_crashed"
        crashed_messages.append(str(failed["message"]))
        waiting = event("driveway", lambda e: e["event_type"] == "pending", mark).json()
        described = event("driveway", outcome_of(str(waiting["id"])), mark)
        assert described.json()["event_type"] == "described"
        lost = log.wait_for(is_log("edge_vlm.inference.worker.keeper", "The inference worker"), since=log_mark)
        ready = log.wait_for(is_log("edge_vlm.inference.worker.keeper", "Inference worker ready"), since=log_mark)
        respawn_s.append(ready.created - lost.created)

    good = len(recorder.messages)
    recorder.publish(f"{base}/front_door/trigger", json.dumps({"id": "after", "prompt": "Still there?"}))
    after = event("front_door", outcome_of("after"), good).json()
    assert after["event_type"] == "described"
    assert str(after["text"]).endswith("Still there? Café … ok")

    # The worker processes log to the inherited stderr: scanned for secrets too.
    secret_scan.add_text("worker processes' stderr", capfd.readouterr().err)
    states = [m.json()["state"] for m in recorder.on(model)]
    errors = [m.json() for m in recorder.on(f"{base}/front_door/error")]
    report("worker_crashes", {
        "crashes": CRASHES, "jobs_failed_worker_crashed": sum(e["error"] == "worker_crashed" for e in errors),
        "waiting_jobs_described_after_respawn": CRASHES, "worker_restarts": states.count("unavailable"),
        "respawn_s": spread(respawn_s), "restart_delay_config_s": backend["restart_max_delay_s"],
        "duration_s": round(time.monotonic() - started, 1),
    })
    assert all("killed by SIGSEGV" in m for m in crashed_messages), crashed_messages
    assert [e["id"] for e in errors] == [f"crash-{n}" for n in range(CRASHES)]
    assert states == ["ready", *["unavailable", "ready"] * CRASHES]
