"""The NPU pipeline end to end through the real broker: snapshot in, encoder, RKLLM, text out.

The board's parts stand in at their interfaces: the test runtime (tests/native) is loaded with
ctypes as librkllmrt.so, and the imgenc stand-in runs as a program (or onnxruntime runs a small
ONNX encoder). Everything else is the production path, worker process included.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_vlm.config.models import AppConfig
from edge_vlm.core.errors import BackendError
from edge_vlm.frames import decode_image
from edge_vlm.inference.backends.vlm import VlmBackend
from edge_vlm.inference.vision.preprocess import encoder_input
from edge_vlm.service import Service
from tests.conftest import app_config
from tests.support import images
from tests.support.broker import Mosquitto
from tests.support.imgenc_standin import write_model
from tests.support.mqtt import Recorder
from tests.support.native import LOG_ENV
from tests.support.npu import ONNX_SIZE, imgenc_signature, onnx_signature, vlm_backend
from tests.test_daemon import wait_until

pytestmark = pytest.mark.mqtt

Daemon = Callable[..., Service]
Recorders = Callable[..., Recorder]


def prepared(jpeg: bytes, size: int) -> Any:
    frame = decode_image(jpeg, camera="x", captured_at=0, max_bytes=10**8, max_pixels=10**8)
    return encoder_input(frame.pixels, size)


class Npu:
    """A running daemon with the NPU backend, and a recorder of everything it publishes."""

    def __init__(self, broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders, backend: dict[str, Any]):
        self.config: AppConfig = app_config(broker.port, backend=backend)
        base = self.config.base_topic
        self.recorder = make_recorder(broker.port, [f"{base}/#"])
        self.service = make_daemon(self.config)
        self.model_topic = f"{base}/{self.config.node_id}/model"
        self.recorder.wait_for(f"{base}/{self.config.node_id}/status", lambda m: m.payload == b"online")

    def topic(self, camera: str, leaf: str) -> str:
        return f"{self.config.base_topic}/{camera}/{leaf}"

    def describe(self, camera: str, jpeg: bytes, prompt: str | None = None, request_id: str = "r") -> dict[str, Any]:
        """Publish a snapshot, and a trigger with ``prompt`` if given; the result or error of the last."""
        answers = (self.topic(camera, "result"), self.topic(camera, "error"))
        after = len(self.recorder.messages)
        self.recorder.publish(self.topic(camera, "snapshot"), jpeg)
        if prompt is not None:
            self.recorder.publish(self.topic(camera, "trigger"), json.dumps({"id": request_id, "prompt": prompt}))
        found = self.recorder.wait_where(
            lambda m: m.index >= after and m.topic in answers and (prompt is None or m.json()["id"] == request_id),
            timeout=60,
        )
        answer: dict[str, Any] = found.json()
        return answer

    def model_states(self) -> list[str]:
        return [m.json()["state"] for m in self.recorder.on(self.model_topic)]


@pytest.fixture
def npu(broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders, fake_rkllmrt: dict[str, Path],
        tmp_path: Path) -> Callable[..., Npu]:
    def start(abi: str = "1.3", encoder: str = "imgenc", **overrides: Any) -> Npu:
        backend = vlm_backend(tmp_path, fake_rkllmrt[abi], abi=abi, encoder=encoder, **overrides)
        return Npu(broker, make_daemon, make_recorder, backend)

    return start


def test_snapshot_through_imgenc_and_rkllm_becomes_a_description(npu: Callable[..., Npu]) -> None:
    daemon = npu(abi="1.3", encoder="imgenc")
    jpeg = images.sample("front_door")

    result = daemon.describe("front_door", jpeg)

    assert result["text"] == (f"Test runtime saw 196 image tokens, signature {imgenc_signature(prepared(jpeg, 392))}, "
                              "tags <|vision_start|>|<|vision_end|>|<|image_pad|>, 392x392: "
                              f"{daemon.config.prompt} Café … ok")
    assert result["backend"] == "qwen2-vl-2b"
    assert {"decode", "preprocess", "queued", "encoder", "prefill"} <= set(result["timings_ms"])
    assert result["details"]["image_tokens"] == 196
    assert daemon.model_states() == ["ready"]
    other = daemon.describe("driveway", images.sample("driveway"))
    assert other["text"] != result["text"]  # another image, other embeddings, other text


def test_onnx_encoder_and_the_1_2_abi(npu: Callable[..., Npu], tmp_path: Path) -> None:
    daemon = npu(abi="1.2", encoder="onnx")
    jpeg = images.sample("garden_night")

    result = daemon.describe("front_door", jpeg, prompt="What moves?", request_id="o1")

    expected = onnx_signature(tmp_path / "models" / "vision.onnx", prepared(jpeg, ONNX_SIZE))
    assert result["text"].startswith(f"Test runtime saw 16 image tokens, signature {expected}, ")
    assert result["text"].endswith("56x56: What moves? Café … ok")


def test_a_crashing_worker_fails_the_job_and_comes_back(npu: Callable[..., Npu]) -> None:
    daemon = npu()
    crashed = daemon.describe("front_door", images.jpeg(seed=1), prompt="[[segfault]]", request_id="c1")
    assert crashed["error"] == "worker_crashed"
    assert "killed by SIGSEGV" in crashed["message"]

    daemon.recorder.wait_for(daemon.model_topic, lambda m: m.json()["state"] == "unavailable")
    after = daemon.describe("front_door", images.jpeg(seed=2), prompt="Still there?", request_id="c2")

    assert after["text"].endswith("Still there? Café … ok")
    assert daemon.model_states() == ["ready", "unavailable", "ready"]


def test_a_hung_run_is_aborted_then_the_worker_killed(npu: Callable[..., Npu]) -> None:
    # Long enough for the run to reach its hang on a loaded machine: cut short before it, the run
    # honours the abort, and the worker is rightly kept.
    daemon = npu(job_timeout_s=5)
    hung = daemon.describe("front_door", images.jpeg(seed=3), prompt="[[hang]]", request_id="h1")
    assert hung["error"] == "timed_out"
    assert "ignored the abort" in hung["message"]
    after = daemon.describe("front_door", images.jpeg(seed=4), prompt="Next", request_id="h2")
    assert after["text"].endswith("Next Café … ok")
    assert daemon.model_states() == ["ready", "unavailable", "ready"]


def test_a_slow_run_is_aborted_and_the_worker_kept(npu: Callable[..., Npu]) -> None:
    # The abort is honoured; a busy machine may take more than the default 1 s grace to say so. The
    # slow answer's 30 words take 6 s (200 ms a token): well past the 3 s a quick one has, loaded or not.
    daemon = npu(job_timeout_s=3, abort_grace_s=30)
    slow = daemon.describe("front_door", images.jpeg(seed=5), prompt="[[slow]]" + " word" * 30, request_id="s1")
    assert slow["error"] == "timed_out"
    assert "aborted" in slow["message"]
    after = daemon.describe("front_door", images.jpeg(seed=6), prompt="Quick", request_id="s2")
    assert after["text"].endswith("Quick Café … ok")
    assert daemon.model_states() == ["ready"]


def test_models_that_cannot_load_stop_the_start_with_the_reason(
        fake_rkllmrt: dict[str, Path], tmp_path: Path, broker: Mosquitto, make_daemon: Daemon) -> None:
    backend = vlm_backend(tmp_path, fake_rkllmrt["1.3"], abi="1.3", encoder="onnx",
                          image_tokens=20)  # the ONNX encoder gives 16
    with pytest.raises(BackendError, match="gives 16 tokens x 32 floats per image, but qwen2-vl-2b expects 20 x 32"):
        make_daemon(app_config(broker.port, backend=backend))


def test_sigterm_to_the_whole_service_stops_it_in_order(
        fake_rkllmrt: dict[str, Path], tmp_path: Path, broker: Mosquitto, make_recorder: Recorders) -> None:
    """systemd signals every process of the service; the worker leaves stopping to the daemon."""
    config = app_config(broker.port, backend=vlm_backend(tmp_path, fake_rkllmrt["1.3"], abi="1.3"))
    config_file = tmp_path / "edge_vlm.yaml"
    config_file.write_text(yaml.safe_dump(json.loads(config.model_dump_json(exclude_defaults=True))))
    status = f"{config.base_topic}/{config.node_id}/status"
    recorder = make_recorder(broker.port, [f"{config.base_topic}/#"])
    calls = tmp_path / "rkllm-calls.jsonl"
    daemon = subprocess.Popen([sys.executable, "-m", "edge_vlm", "run", "-c", str(config_file)],
                              stderr=subprocess.PIPE, text=True, start_new_session=True,
                              env={**os.environ, LOG_ENV: str(calls)})
    try:
        recorder.wait_for(status, lambda m: m.payload == b"online", timeout=60)
        recorder.publish(f"{config.base_topic}/front_door/snapshot", images.sample("front_door"))
        recorder.wait_for(f"{config.base_topic}/front_door/result", timeout=60)
        recorder.publish(f"{config.base_topic}/front_door/trigger", '{"id": "slow", "prompt": "[[slow]]"}')
        wait_until(lambda: calls.exists() and "[[slow]]" in calls.read_text())  # in flight in the runtime
        os.killpg(daemon.pid, signal.SIGTERM)
        _, log = daemon.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.pid, signal.SIGKILL)
    assert daemon.returncode == 0, log
    recorder.wait_for(status, lambda m: m.payload == b"offline")
    assert "restarting" not in log
    assert log.rstrip().endswith("Stopped")
    assert recorder.wait_json(f"{config.base_topic}/front_door/result", id="slow")["text"].endswith("Café … ok")


def test_a_prompt_with_two_images_is_refused(npu: Callable[..., Npu]) -> None:
    daemon = npu()
    refused = daemon.describe("front_door", images.jpeg(seed=7), prompt="<image> or <image>?", request_id="t1")
    assert (refused["error"], refused["message"]) == ("bad_trigger", "the prompt may hold <image> once at most")


def test_a_worker_that_dies_while_idle_is_noticed_and_restarted(npu: Callable[..., Npu]) -> None:
    daemon = npu()
    backend = daemon.service.backend
    assert isinstance(backend, VlmBackend)
    worker = backend.worker_pid  # not active_children(): other tests' workers may be there
    assert worker is not None
    # "ready" heard first: a retained state not yet sent when the next comes is replaced by it
    daemon.recorder.wait_for(daemon.model_topic, lambda m: m.json()["state"] == "ready")
    os.kill(worker, signal.SIGKILL)
    daemon.recorder.wait_for(daemon.model_topic, lambda m: m.json()["state"] == "unavailable")
    daemon.recorder.wait_for(daemon.model_topic, lambda m: len(daemon.model_states()) == 3)
    assert daemon.model_states() == ["ready", "unavailable", "ready"]
    assert daemon.describe("front_door", images.jpeg(seed=8), prompt="Back?", request_id="i1")["text"].endswith(
        "Back? Café … ok")


def test_an_abort_during_encoding_stops_the_job_not_the_worker(npu: Callable[..., Npu], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the worker's private directory goes
    daemon = npu(job_timeout_s=1, abort_grace_s=10)
    write_model(Path(daemon.config.backend.encoder.model), delay_ms=2500)  # type: ignore[union-attr]
    aborted = daemon.describe("front_door", images.jpeg(seed=9), prompt="Slow eyes", request_id="e1")
    assert (aborted["error"], aborted["message"]) == (
        "timed_out", "no answer within backend.job_timeout_s = 1 s: aborted")
    assert daemon.model_states() == ["ready"]
    daemon.service.stop()
    assert list(tmp_path.glob("edge_vlm-worker-*")) == []  # the worker's directory went with it


def test_an_imgenc_model_that_cannot_work_stops_the_start(
        fake_rkllmrt: dict[str, Path], tmp_path: Path, broker: Mosquitto, make_daemon: Daemon) -> None:
    backend = vlm_backend(tmp_path, fake_rkllmrt["1.3"], abi="1.3")
    write_model(Path(backend["encoder"]["model"]), tokens=100)
    with pytest.raises(BackendError, match="gives 100 tokens x 1536 floats per image, but qwen2-vl-2b expects 196"):
        make_daemon(app_config(broker.port, backend=backend))


def test_embeddings_that_are_not_numbers_never_reach_the_model(npu: Callable[..., Npu]) -> None:
    daemon = npu()
    write_model(Path(daemon.config.backend.encoder.model), behaviour="garbage_file")  # type: ignore[union-attr]
    failed = daemon.describe("front_door", images.jpeg(seed=10), prompt="Anything?", request_id="n1")
    assert (failed["error"], failed["message"]) == (
        "backend_failed", "the encoder produced values that are not finite numbers (NaN or infinity)")
