"""Files no one would write on purpose: the reader refuses each with a listed problem, quickly, for
``edge-vlm check``, ``edge-vlm run`` and a SIGHUP reload alike; the daemon's own retained values
read back from the broker likewise.

The times in these tests are bounds on waiting, generous so that a busy machine does not fail them;
how fast ``check`` is on each file is measured in benchmarks/hostile_config.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_vlm.config import load_config, load_config_text, preflight
from edge_vlm.config.loader import ConfigFile
from edge_vlm.config.yaml_reader import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES
from edge_vlm.core.errors import ConfigError
from edge_vlm.doctor.backend import check_file, check_imgenc
from tests.conftest import app_config
from tests.support import images
from tests.support.broker import Mosquitto
from tests.support.mqtt import Recorder
from tests.support.notify import DaemonProcess, Notification, NotifySocket, ready, reloading, write_config

CHECK_BOUND_S = 120.0  # far above what any of these takes: only a hang would reach it
VALID = "cameras: [{id: a}]\n"


def billion_laughs() -> str:
    """Ten aliases of ten aliases ... nine levels: 10^9 values from 500 bytes."""
    lines = ['lol0: &l0 ["lol"]']
    lines += [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    return VALID + "\n".join(lines) + "\n"


def alias_chain(levels: int) -> str:
    """Each anchor holds the one before it a level down: shallow as written, ``levels`` deep built."""
    lines = ["x0: &x0 [1]"] + [f"x{i}: &x{i} [*x{i - 1}]" for i in range(1, levels)]
    return VALID + "\n".join(lines) + "\n"


def merge_chain(levels: int) -> str:
    """Each mapping merges the one before it: a recursion per level for a naive reader."""
    lines = ["m0: &m0 {a: 1}"] + [f"m{i}: &m{i} {{<<: *m{i - 1}}}" for i in range(1, levels)]
    return VALID + "\n".join(lines) + "\n"


# name -> (the file's text, a pattern its one problem must match)
HOSTILE: dict[str, tuple[str, str]] = {
    "billion laughs": (billion_laughs(), rf"^line \d+: lol\d(\[\d\])+: more than {MAX_VALUES} values, counting "
                                         "those of an alias each time it is used$"),
    "recursive alias in a list": ("cameras: &c [{id: a}, *c]\n",
                                  r"^line 1: cameras\[1\]: an alias used inside the value it names"),
    "recursive alias in a merge": ("cameras: [{id: a}]\nmqtt: &m {<<: *m}\n",
                                   r"^line 2: mqtt: an alias used inside the value it names"),
    "200,000 [": ("cameras: " + "[" * 200_000 + "\n",
                  rf"^line 1: lists and mappings nested more than {MAX_DEPTH} deep$"),
    "nested block mappings": ("cameras:\n" + "".join(f"{' ' * i}k{i}:\n" for i in range(1, 600)),
                              rf"^line \d+: lists and mappings nested more than {MAX_DEPTH} deep$"),
    "aliases nesting past the limit": (alias_chain(2000),
                                       rf"^line \d+: x\d+(\[0\])+: lists, mappings and merges nested more than "
                                       rf"{MAX_DEPTH} deep, counting those of aliases$"),
    "merges of merges": (merge_chain(2000), rf"^line \d+: m\d+(\.a)?: lists, mappings and merges nested more than "
                                            rf"{MAX_DEPTH} deep"),
    "more values than the limit": (VALID + "x: [" + "0," * (MAX_VALUES + 10) + "]\n",
                                   rf"^line 2: the file holds more than {MAX_VALUES} values$"),
    "an integer of 5000 digits": (VALID + "mqtt: {username: " + "1" * 5000 + "}\n",
                                  r"^line 2: mqtt.username: not a valid int: Exceeds the limit \(4300 digits\)"),
    "a date that does not exist": (VALID + "mqtt: {username: 2001-13-45}\n",
                                   r"^line 2: mqtt.username: not a valid timestamp: month must be in 1\.\.12$"),
    "a time zone past a day": (VALID + "mqtt: {username: 2001-12-14t21:59:43.10-99:99}\n",
                               r"^line 2: mqtt.username: not a valid timestamp: offset must be a timedelta"),
    "a value of 900,000 characters": (VALID + "node_id: " + "x" * 900_000 + "\n",
                                      r"^line 2: node_id: \(a value of 900000 characters\): use 1 to 64"),
}


def write_hundred_megabytes(path: Path) -> None:
    """A valid file but for a 100 MB string in it, written a megabyte at a time."""
    chunk = "x" * (1 << 20)
    with path.open("w") as file:
        file.write(VALID + "node_id: '")
        for _ in range(100):
            file.write(chunk)
        file.write("'\n")


def only_problem(load: Callable[[], ConfigFile]) -> str:
    with pytest.raises(ConfigError) as caught:
        load()
    assert len(caught.value.problems) == 1, caught.value.problems
    return caught.value.problems[0]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_file_is_one_listed_problem(tmp_path: Path, name: str) -> None:
    text, expected = HOSTILE[name]
    path = tmp_path / "edge_vlm.yaml"
    path.write_text(text)
    assert re.search(expected, only_problem(lambda: load_config(path))), name


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "edge_vlm.yaml"
    write_hundred_megabytes(path)
    size = path.stat().st_size
    assert only_problem(lambda: load_config(path)) == (f"{path}: the file is {size} bytes; a configuration may "
                                                       "be at most 1 MiB")
    assert only_problem(lambda: load_config_text(VALID + "#" * MAX_FILE_BYTES)) == (
        f"<config>: {len(VALID) + MAX_FILE_BYTES} characters; a configuration may be at most 1 MiB")


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "edge_vlm.yaml"
    os.mkfifo(path)
    assert only_problem(lambda: load_config(path)) == f"{path}: the configuration is not a regular file"


def test_anchors_and_merges_within_the_limits_still_work() -> None:
    text = ("cameras:\n  - &a {id: a, cooldown_s: 5}\n  - {<<: *a, id: b}\n"
            "  - {<<: [*a, {enabled: false}], id: c}\n")
    cameras = load_config_text(text).config.cameras
    assert [(c.id, c.cooldown_s, c.enabled) for c in cameras] == [("a", 5, True), ("b", 5, True), ("c", 5, False)]


# The files above, through `edge-vlm check` as a user runs it


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_vlm", "check", "-c", str(path)], capture_output=True,
                          text=True, timeout=CHECK_BOUND_S, check=False)


@pytest.mark.parametrize("name", ["billion laughs", "recursive alias in a list", "200,000 [",
                                  "a value of 900,000 characters", "an integer of 5000 digits"])
def test_check_lists_the_problem_of_a_hostile_file(tmp_path: Path, name: str) -> None:
    text, expected = HOSTILE[name]
    path = tmp_path / "edge_vlm.yaml"
    path.write_text(text)
    done = run_check(path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    header, problem = done.stderr.splitlines()
    assert header == f"{path}: 1 problem(s):"
    assert re.search(expected, problem)


def test_check_refuses_a_hundred_megabyte_string(tmp_path: Path) -> None:
    path = tmp_path / "edge_vlm.yaml"
    write_hundred_megabytes(path)
    done = run_check(path)
    assert (done.returncode, done.stderr) == (1, f"{path}: 1 problem(s):\n{path}: the file is {path.stat().st_size} "
                                                 "bytes; a configuration may be at most 1 MiB\n")


# Any text at all: a listed problem or a configuration, never another exception

YAML_PIECES = ["[", "]", "{", "}", ": ", ", ", "- ", "&a ", "*a", "&b ", "*b", "<<: ", "!!int ", "!!binary ",
               "!!timestamp ", "!secret ", "? ", "|\n  ", "'", '"', "\n", "  ", "#", "cameras", "id", "a", "1",
               "2001-02-30", "9" * 40, "~", "---\n", "%YAML 1.1\n", "\t", "\\x00", "\udcff", "\x00"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(YAML_PIECES), max_size=60).map("".join))
def test_any_text_is_a_configuration_or_listed_problems(text: str) -> None:
    problems: list[str] = ["(none)"]
    try:
        load_config_text(text)
    except ConfigError as exc:
        problems = exc.problems
    assert problems
    assert all(isinstance(p, str) and p for p in problems)


# Symlink loops: said as such, not "file not found"


@pytest.fixture
def loop(tmp_path: Path) -> Path:
    a, b = tmp_path / "a", tmp_path / "b"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def test_a_symlink_loop_as_the_config_path_is_said(loop: Path) -> None:
    assert only_problem(lambda: load_config(loop)) == f"{loop}: cannot read the configuration file: symlink loop"


def test_a_symlink_loop_in_a_file_the_config_names_is_said(loop: Path) -> None:
    loaded = load_config_text(f"cameras: [{{id: a}}]\nmqtt:\n  tls: {{enabled: true, ca_file: {loop}}}\n")
    assert preflight(loaded, {}) == [f"line 3: mqtt.tls.ca_file: {str(loop)!r}: symlink loop"]
    check, size = check_file("llm.model", loop, Path("/"))
    assert (check.status, size) == ("FAIL", None)
    assert check.finding.endswith(": symlink loop")
    assert check_imgenc(loop, Path("/")).finding.endswith(": symlink loop")


def test_a_missing_file_is_still_not_found(tmp_path: Path) -> None:
    check, _ = check_file("llm.model", tmp_path / "gone.rkllm", Path("/"))
    assert check.finding.endswith(": file not found")


# The daemon: a reload with a hostile file, a hostile retained value


def reload(daemon: DaemonProcess, notify_socket: NotifySocket, last: Notification) -> Notification:
    """SIGHUP, then the READY=1 that ends the reload (refused or done)."""
    daemon.signal(signal.SIGHUP)
    started = notify_socket.wait_for(reloading, after=last.index + 1, timeout=CHECK_BOUND_S)
    return notify_socket.wait_for(ready, after=started.index, timeout=CHECK_BOUND_S)


@pytest.mark.mqtt
def test_reloads_of_hostile_files_are_refused_and_the_daemon_serves_on(
        tmp_path: Path, broker: Mosquitto, make_recorder: Callable[..., Recorder], notify_socket: NotifySocket,
        daemons: Callable[..., DaemonProcess]) -> None:
    config = app_config(broker.port)
    config_file = tmp_path / "edge_vlm.yaml"
    write_config(config_file, config)
    recorder = make_recorder(broker.port, [f"{config.base_topic}/#"])
    daemon = daemons(config_file, tmp_path / "daemon.log", NOTIFY_SOCKET=notify_socket.address)
    last = notify_socket.wait_for(ready)

    for name in ("recursive alias in a list", "billion laughs", "200,000 [", "a value of 900,000 characters"):
        config_file.write_text(HOSTILE[name][0])
        last = reload(daemon, notify_socket, last)
        assert "Reload refused" in last.fields["STATUS"], name
    write_hundred_megabytes(config_file)
    last = reload(daemon, notify_socket, last)
    assert "Reload refused" in last.fields["STATUS"]

    since = len(recorder.messages)
    recorder.publish(f"{config.base_topic}/front_door/snapshot", images.sample("front_door"))
    description = recorder.wait_for(f"{config.base_topic}/front_door/description", recorder.since(since))
    assert description.payload == b"1 person; 1 face visible; daylight"  # served all along

    write_config(config_file, config.model_copy(update={"cameras": config.cameras[:1]}))
    last = reload(daemon, notify_socket, last)  # a later reload of a good file takes effect
    assert last.fields["STATUS"].startswith("Serving 1 camera(s)")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(CHECK_BOUND_S) == 0
    log = daemon.text()
    assert log.count("Reload refused") == 5 and "Reloaded" in log, log
    assert "an alias used inside the value it names" in log
    assert f"more than {MAX_VALUES} values" in log
    assert f"nested more than {MAX_DEPTH} deep" in log
    assert "(a value of 900000 characters)" in log
    assert "a configuration may be at most 1 MiB" in log
    assert "Traceback" not in log


@pytest.mark.mqtt
def test_a_hostile_retained_configured_value_is_ignored_with_one_line(
        tmp_path: Path, broker: Mosquitto, make_recorder: Callable[..., Recorder], notify_socket: NotifySocket,
        daemons: Callable[..., DaemonProcess]) -> None:
    config = app_config(broker.port)
    config_file = tmp_path / "edge_vlm.yaml"
    write_config(config_file, config)
    recorder = make_recorder(broker.port, [f"{config.base_topic}/#"])
    configured = f"{config.base_topic}/front_door/configured"
    recorder.publish(configured, "[" * 200_000, retain=True)
    recorder.publish(f"{config.base_topic}/driveway/configured", json.dumps({"enabled": [[[1]]]}), retain=True)
    daemon = daemons(config_file, tmp_path / "daemon.log", NOTIFY_SOCKET=notify_socket.address)
    notify_socket.wait_for(ready, timeout=CHECK_BOUND_S)
    recorder.wait_for(configured, lambda m: m.payload.startswith(b"{"))  # ours, replacing it

    since = len(recorder.messages)
    recorder.publish(f"{config.base_topic}/front_door/snapshot", images.sample("front_door"))
    recorder.wait_for(f"{config.base_topic}/front_door/description", recorder.since(since))
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(CHECK_BOUND_S) == 0
    log = daemon.text()
    ignored = [line for line in log.splitlines() if "Ignoring the stored configured values" in line]
    assert ignored == [ignored[0]] and "camera front_door" in ignored[0] and "200000 bytes" in ignored[0], log
    assert "Traceback" not in log and "Unexpected error" not in log, log
