"""Starting and stopping: SIGTERM, the job in flight, the commands a user runs."""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from edge_vlm.__main__ import build_parser, main
from edge_vlm.service import Service
from tests.conftest import app_config
from tests.support import images
from tests.support.backends import GatedBackend
from tests.support.broker import Mosquitto
from tests.support.mqtt import Recorder
from tests.support.npu import vlm_backend
from tests.test_daemon import wait_until

Daemon = Callable[..., Service]
Recorders = Callable[..., Recorder]
REPO = Path(__file__).parent.parent


@pytest.mark.mqtt
def test_sigterm_publishes_offline_and_exits_0(broker: Mosquitto, make_recorder: Recorders, tmp_path: Path) -> None:
    config = app_config(broker.port)
    config_file = tmp_path / "edge_vlm.yaml"
    config_file.write_text(yaml.safe_dump(json.loads(config.model_dump_json(exclude_defaults=True))))
    status = f"{config.base_topic}/{config.node_id}/status"
    recorder = make_recorder(broker.port, [f"{config.base_topic}/#"])
    daemon = subprocess.Popen([sys.executable, "-m", "edge_vlm", "run", "-c", str(config_file)],
                              stderr=subprocess.PIPE, text=True)
    try:
        recorder.wait_for(status, lambda m: m.payload == b"online")
        recorder.publish(f"{config.base_topic}/front_door/snapshot", images.sample("front_door"))
        recorder.wait_for(f"{config.base_topic}/front_door/result")

        daemon.send_signal(signal.SIGTERM)
        _, log = daemon.communicate(timeout=20)
    finally:
        daemon.kill()
    assert daemon.returncode == 0
    recorder.wait_for(status, lambda m: m.payload == b"offline")
    assert "Received SIGTERM" in log
    assert "front_door: described in" in log
    assert log.rstrip().endswith("Stopped")


@pytest.mark.mqtt
def test_stop_finishes_the_job_in_flight_and_cancels_the_waiting_ones(
        broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    config = app_config(broker.port)
    recorder = make_recorder(broker.port, [f"{config.base_topic}/#"])
    backend = GatedBackend()
    service = make_daemon(config, backend)
    recorder.wait_for(f"{config.base_topic}/{config.node_id}/status", lambda m: m.payload == b"online")
    recorder.publish(f"{config.base_topic}/front_door/snapshot", images.sample("front_door"))
    assert backend.entered.wait(10)
    recorder.publish(f"{config.base_topic}/driveway/snapshot", images.sample("driveway"))
    recorder.publish(f"{config.base_topic}/driveway/trigger", '{"id": "late"}')
    wait_until(lambda: service.stats.values()["jobs_coalesced"] == 1)

    stopper = threading.Thread(target=service.stop)
    stopper.start()
    cancelled = recorder.wait_json(f"{config.base_topic}/driveway/error", id="late")
    # One more while the job in flight finishes: the dispatcher has stopped, but it is answered too.
    recorder.publish(f"{config.base_topic}/driveway/trigger", '{"id": "during"}')
    wait_until(lambda: service.inbox.waiting == 1)
    backend.gate.set()
    stopper.join(10)

    assert not stopper.is_alive()
    assert cancelled["error"] == "cancelled"
    assert recorder.wait_json(f"{config.base_topic}/driveway/error", id="during")["error"] == "cancelled"
    result = recorder.wait_for(f"{config.base_topic}/front_door/result").json()
    assert result["text"] == "1 person; 1 face visible; daylight"
    status = recorder.on(f"{config.base_topic}/{config.node_id}/status")[-1]
    assert status.payload == b"offline"
    assert status.index > recorder.on(f"{config.base_topic}/front_door/result")[0].index


@pytest.mark.mqtt
def test_mqtt_3_1_1_works_too(broker: Mosquitto, make_daemon: Daemon, make_recorder: Recorders) -> None:
    config = app_config(broker.port, mqtt={"port": broker.port, "protocol": "3.1.1"})
    recorder = make_recorder(broker.port, [f"{config.base_topic}/#"])
    make_daemon(config)
    recorder.wait_for(f"{config.base_topic}/{config.node_id}/status", lambda m: m.payload == b"online")
    recorder.publish(f"{config.base_topic}/driveway/snapshot", images.sample("driveway"))
    assert recorder.wait_for(f"{config.base_topic}/driveway/description").payload == b"No people; dusk light"


def test_demo_runs_the_whole_daemon_and_exits_0() -> None:
    demo = subprocess.run([sys.executable, "-m", "edge_vlm", "demo"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    assert "Home Assistant discovered 4 devices" in out
    assert "sensor.edge_vlm_front_door_description = '1 person; 1 face visible; daylight'" in out
    assert "sensor.edge_vlm_front_door_description = '1 person; 1 face visible; daylight; strong motion'" in out
    assert "sensor.edge_vlm_garden_description = 'No people; dark scene'" in out
    assert "attributes: id demo-1" in out
    assert "error on edge_vlm/garden/error: bad_image" in out
    assert "edge_vlm/demo/status = 'offline'" in out
    # the README's sample of it is what it prints, line by line, but for the ids and latencies that
    # change with every run (issue 14: the README said 34 entities, and an older error message)
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    sample = readme.split("Home Assistant's part and prints what Home Assistant receives:\n\n```\n", 1)[1]
    sample_lines = [line for line in sample.split("\n```", 1)[0].splitlines() if line not in ("", "...")]
    assert len(sample_lines) >= 6
    for line in sample_lines:
        pattern = re.escape(line).replace("1296b1\\-1", r"[0-9a-f]{6}\-1").replace("103\\ ms", r"\d+\ ms")
        assert any(re.fullmatch(pattern, printed) for printed in out.splitlines()), line


def test_describe_prints_the_text_and_stage_timings(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    image = tmp_path / "porch.jpg"
    image.write_bytes(images.sample("front_door"))
    assert main(["describe", str(image), "--prompt", "Who is there?"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "1 person; 1 face visible; daylight\n"
    note, timings = captured.err.splitlines()[:2]
    assert note.startswith("note: the opencv backend reads no prompt")  # not ignored without a word
    assert timings.startswith("timings: load ")
    assert "people " in captured.err and "capture " in captured.err


@pytest.mark.parametrize("abi", ["1.2", "1.3"])
def test_describe_with_follow_ups_shows_each_turns_npu_work(
        abi: str, fake_rkllmrt: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What the board check of docs/backends.md prints: the follow-up answered from the kept image, no encoder pass
    and a prefill of its own words only (the test runtime counts a word as a token)."""
    image = tmp_path / "porch.jpg"
    image.write_bytes(images.sample("front_door"))
    config = tmp_path / "edge_vlm.yaml"
    config.write_text(yaml.safe_dump({"backend": vlm_backend(tmp_path, fake_rkllmrt[abi], abi=abi),
                                      "cameras": [{"id": "porch"}]}))

    assert main(["describe", str(image), "-c", str(config), "--prompt", "Describe. [[reply:A person waits]]",
                 "--ask", "Is there a person? [[see:Yes.]]"]) == 0

    out, err = capsys.readouterr()
    assert out == "A person waits\nIs there a person? [[see:Yes.]] Yes.\n"
    turns = [line for line in err.splitlines() if line.startswith("turn ")]
    assert turns[0].startswith("turn 1: encoder ") and ", prefill 200 tokens in " in turns[0]  # 196 + 4 words
    assert turns[1].startswith("turn 2: no encoder pass, prefill 5 tokens in ")
    assert ", 1 tokens generated in " in turns[1]


def test_every_command_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 14: the help showed reST backticks and named four of six commands; demo had no description."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(commands.choices) == {"run", "check", "describe", "doctor", "demo", "install-service"}
    for name, command in commands.choices.items():
        assert command.description and len(command.description) > 40, f"{name} has no description"
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    assert "``" not in shown and "edge-vlm demo" in shown


def test_describe_says_what_is_wrong_with_a_bad_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(images.jpeg()[:2000])
    assert main(["describe", str(broken)]) == 1
    assert "broken.jpg: JPEG image 640x360 could not be decoded: image file is truncated" in capsys.readouterr().err
    assert main(["describe", str(tmp_path / "missing.jpg")]) == 1
    assert "missing.jpg: No such file or directory" in capsys.readouterr().err
