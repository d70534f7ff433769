"""The daemon's diagnostics against a real mosquitto: counters, stage latencies, queue depth, the
board's values, the periodic refresh, and one log line per event."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_vlm.config.models import AppConfig
from edge_vlm.core.errors import BackendError
from edge_vlm.core.stats import STAGES
from edge_vlm.frames import Frame
from edge_vlm.inference.backends.vlm import VlmBackend
from edge_vlm.inference.results import Description
from edge_vlm.publish.board import BoardMonitor
from edge_vlm.service import Service
from tests.conftest import app_config
from tests.support import images
from tests.support.backends import GatedBackend
from tests.support.broker import Mosquitto
from tests.support.mqtt import Recorder
from tests.support.npu import vlm_backend
from tests.test_board import DEBUGFS_LOAD, RK3588_LOAD, put, zone
from tests.test_daemon import started, topic, wait_until, watch

pytestmark = pytest.mark.mqtt

Daemon = Callable[..., Service]
Recorders = Callable[..., Recorder]


def diagnostics_topic(config: AppConfig) -> str:
    return f"{config.base_topic}/{config.node_id}/diagnostics"


def diagnostics_where(recorder: Recorder, config: AppConfig, condition: Callable[[dict[str, Any]], bool],
                      timeout: float = 15.0) -> dict[str, Any]:
    """The first diagnostics JSON for which ``condition`` holds."""
    message = recorder.wait_for(diagnostics_topic(config), lambda m: condition(m.json()), timeout)
    values: dict[str, Any] = message.json()
    return values


def ready(recorder: Recorder, config: AppConfig, service: Service) -> None:
    """Announced, and each camera's settings read back from the broker: a snapshot is taken now."""
    started(recorder, config)
    wait_until(lambda: all(service.camera_states[camera.id].settled for camera in config.cameras))


def template_path(template: str) -> list[str]:
    """``{{ value_json.a.b }}`` -> ["a", "b"]."""
    match = re.fullmatch(r"\{\{ value_json\.([a-z_.]+) \}\}", template)
    assert match is not None, template
    return match.group(1).split(".")


def test_a_described_snapshot_updates_counters_and_stage_latencies_in_the_retained_diagnostics(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    config = app_config(broker.port)
    recorder = watch(make_recorder, broker, config)
    ready(recorder, config, make_daemon(config))

    recorder.publish(topic(config, "front_door", "snapshot"), b"not an image")
    recorder.publish(topic(config, "front_door", "snapshot"), images.sample("front_door"))
    recorder.wait_for(topic(config, "front_door", "result"))
    live = diagnostics_where(recorder, config, lambda d: d["jobs_done"] == 1 and d["inputs_refused"] == 1)

    # What Home Assistant gets when it subscribes later: the retained message, the same values.
    later = make_recorder(broker.port, [diagnostics_topic(config)])
    retained = later.wait_for(diagnostics_topic(config))
    assert retained.retain
    diagnostics = retained.json()
    assert diagnostics["jobs_done"] == live["jobs_done"] == 1
    assert (diagnostics["jobs_failed"], diagnostics["jobs_coalesced"], diagnostics["jobs_skipped"]) == (0, 0, 0)
    assert diagnostics["inputs_refused"] == 1
    stages = diagnostics["stages_ms"]
    assert list(stages) == ["capture", "preprocess", "queued", "encoder", "prefill", "decode", "publish"]
    # opencv has no encoder, prefill or decode: null, so Home Assistant shows those unavailable.
    assert (stages["encoder"], stages["prefill"], stages["decode"]) == (None, None, None)
    assert stages["capture"] > 0  # an MQTT snapshot's capture is its decoding
    assert stages["preprocess"] >= 0
    assert stages["queued"] >= 0
    assert stages["publish"] >= 0  # measured (not null), if well under a millisecond
    assert diagnostics["last_latency_ms"] >= stages["capture"] + stages["preprocess"] + stages["queued"]
    assert (diagnostics["queue_depth"], diagnostics["inbox_waiting"]) == (0, 0)
    assert 10 < diagnostics["memory_mib"] < 4096  # this test process's RSS: the daemon runs in it
    assert 10 < diagnostics["worker_memory_mib"] < 4096  # the opencv analyzer runs in a worker process too

    # Every sensor announced on the daemon's device reads a key that the diagnostics JSON has.
    node = recorder.wait_for(f"{config.discovery.prefix}/device/edge_vlm_{config.node_id}/config").json()
    read = [c for c in node["cmps"].values() if c.get("state_topic") == diagnostics_topic(config)]
    # All but status and model, and what this machine cannot have: the vlm backend's encoder, prefill
    # and decode times, an NPU load and a SoC temperature.
    assert len(read) == 14
    for component in read:
        value: Any = diagnostics
        for key in template_path(component["value_template"]):
            assert key in value, component["unique_id"]
            value = value[key]


def test_queue_depth_shows_a_job_waiting(broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    config = app_config(broker.port)
    recorder = watch(make_recorder, broker, config)
    backend = GatedBackend()
    ready(recorder, config, make_daemon(config, backend))
    recorder.publish(topic(config, "front_door", "snapshot"), images.jpeg(seed=1))
    assert backend.entered.wait(10)  # in flight: not waiting

    recorder.publish(topic(config, "driveway", "snapshot"), images.jpeg(seed=2))

    waiting = diagnostics_where(recorder, config, lambda d: d["queue_depth"] == 1)
    assert waiting["jobs_done"] == 0
    backend.gate.set()
    done = diagnostics_where(recorder, config, lambda d: d["jobs_done"] == 2)
    assert done["queue_depth"] == 0


def test_board_values_are_published_and_refreshed_while_nothing_happens(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders, tmp_path: Path) -> None:
    config = app_config(broker.port, diagnostics={"interval_s": 1})
    recorder = watch(make_recorder, broker, config)
    put(tmp_path, DEBUGFS_LOAD, RK3588_LOAD)
    zone(tmp_path, 0, "soc-thermal", "47250")
    put(tmp_path, "proc/self/status", "VmRSS:\t  102400 kB\n")
    service = make_daemon(config)
    service.diagnostics.board = BoardMonitor(tmp_path)  # a fake RK3588 (this machine has no NPU)
    ready(recorder, config, service)

    first = diagnostics_where(recorder, config, lambda d: d["npu_load"] is not None)
    assert (first["npu_load"], first["npu_load_cores"]) == (37.3, {"core0": 12, "core1": 0, "core2": 100})
    assert (first["soc_temperature_c"], first["soc_thermal_zone"]) == (47.2, "soc-thermal")
    assert first["memory_mib"] == 100.0

    # No snapshot, no trigger: the periodic diagnostics alone bring the board's new values.
    put(tmp_path, DEBUGFS_LOAD, "NPU load:  Core0: 90%, Core1: 80%, Core2: 70%,\n")
    zone(tmp_path, 0, "soc-thermal", "71000")
    later = diagnostics_where(recorder, config, lambda d: d["npu_load"] == 80.0, timeout=30)
    assert later["soc_temperature_c"] == 71.0
    assert later["jobs_done"] == 0


class _FailsOnDriveway(GatedBackend):
    """Holds each job at the gate; the driveway's then fail, as a crashed model would."""

    def describe(self, prepared: np.ndarray | None, frame: Frame | None, prompt: str) -> Description:
        description = super().describe(prepared, frame, prompt)
        if frame is not None and frame.camera == "driveway":
            raise BackendError("model crashed")
        return description


def events(recorder: Recorder, config: AppConfig, camera: str, kind: str, n: int = 1) -> list[dict[str, Any]]:
    """The camera's first ``n`` events of ``kind`` (pending, described, failed, superseded), waited for."""
    event_topic = topic(config, camera, "event")

    def of_kind() -> list[dict[str, Any]]:
        return [m.json() for m in recorder.on(event_topic) if m.json()["event_type"] == kind]

    recorder.wait_for(event_topic, lambda m: len(of_kind()) >= n)
    return of_kind()


def only(lines: dict[str, list[str]], request_id: str) -> str:
    assert len(lines[request_id]) == 1, lines[request_id]
    return lines[request_id][0]


def test_each_event_is_one_log_line_with_camera_id_and_timings(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge_vlm")
    config = app_config(broker.port)
    recorder = watch(make_recorder, broker, config)
    backend = _FailsOnDriveway()
    ready(recorder, config, make_daemon(config, backend))
    recorder.publish(topic(config, "front_door", "snapshot"), images.jpeg(seed=1))
    assert backend.entered.wait(10)  # held in flight; the next two wait, and the third replaces the second
    recorder.publish(topic(config, "front_door", "snapshot"), images.jpeg(seed=2))
    recorder.publish(topic(config, "front_door", "snapshot"), images.jpeg(seed=3))
    recorder.publish(topic(config, "driveway", "snapshot"), images.jpeg(seed=4))
    recorder.publish(topic(config, "driveway", "snapshot"), b"not an image")
    refused = recorder.wait_for(topic(config, "driveway", "error")).json()
    superseded = events(recorder, config, "front_door", "superseded")[0]

    backend.gate.set()

    described = events(recorder, config, "front_door", "described", 2)
    failed = events(recorder, config, "driveway", "failed")[0]  # the refused snapshot has none: nobody asked
    assert failed["error"] == "backend_failed"
    assert refused["id"] is None  # a snapshot that is no image never became a job: no id; its topic says which
    ids = [*(e["id"] for e in described), failed["id"], superseded["id"], refused["topic"]]
    assert len(set(ids)) == 5
    lines: dict[str, list[str]] = {}

    def logged() -> bool:
        lines.clear()
        for record in (r for r in caplog.records if r.name == "edge_vlm.publish.outcomes"):
            for request_id in ids:  # the event's own id, not the "by id" of the one that superseded it
                if re.search(rf"(id|topic) {request_id}[],]", record.getMessage()):
                    lines.setdefault(request_id, []).append(f"{record.levelname} {record.getMessage()}")
        return len(lines) == 5

    wait_until(logged)  # the described line follows the result on the broker
    for request_id in (e["id"] for e in described):
        assert re.fullmatch(rf"INFO front_door: described in \d+ ms \[snapshot, id {request_id}, capture \d+ "
                            r"preprocess \d+ queued \d+ people \d+ faces \d+ light_motion \d+ publish \d+ ms\]: .+",
                            only(lines, request_id))
    assert re.fullmatch(rf"INFO front_door: superseded after \d+ ms \[snapshot, id {superseded['id']}\]: "
                        rf"by id {described[1]['id']}", only(lines, superseded["id"]))
    assert re.fullmatch(rf"WARNING driveway: failed after \d+ ms \[snapshot, id {failed['id']}, capture \d+ "
                        r"preprocess \d+ queued \d+ ms\]: backend_failed: model crashed", only(lines, failed["id"]))
    assert re.fullmatch(rf"WARNING driveway: refused \[topic {refused['topic']}, id None\]: bad_image: .+",
                        only(lines, refused["topic"]))


def test_the_npu_backend_fills_every_stage_and_shows_its_workers_memory(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders, fake_rkllmrt: dict[str, Path],
        tmp_path: Path) -> None:
    config = app_config(broker.port, backend=vlm_backend(tmp_path, fake_rkllmrt["1.3"], abi="1.3", encoder="imgenc"))
    recorder = watch(make_recorder, broker, config)
    service = make_daemon(config)
    ready(recorder, config, service)

    recorder.publish(topic(config, "front_door", "snapshot"), images.sample("front_door"))

    result = recorder.wait_for(topic(config, "front_door", "result"), timeout=60).json()
    diagnostics = diagnostics_where(recorder, config, lambda d: d["jobs_done"] == 1)
    stages = diagnostics["stages_ms"]
    assert all(stages[stage] is not None for stage in STAGES), stages
    assert {stage: stages[stage] for stage in ("encoder", "prefill", "decode")} == {
        stage: round(result["timings_ms"][stage], 1) for stage in ("encoder", "prefill", "decode")}
    assert isinstance(service.backend, VlmBackend) and service.backend.worker_pid is not None
    assert diagnostics["worker_memory_mib"] > 10  # a Python process with numpy and the test runtime loaded
    assert diagnostics["memory_mib"] > 10
