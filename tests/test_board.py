"""The board's readers against fake /proc and /sys trees, and against this machine's real /proc."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.synchronize
import os
from pathlib import Path

import pytest

from edge_vlm.publish.board import (
    BoardMonitor,
    NpuLoad,
    Temperature,
    Unreadable,
    parse_npu_load,
    read_npu_load,
    read_rss_bytes,
    read_soc_temperature,
    unreadable_reason,
)

DEBUGFS_LOAD = "sys/kernel/debug/rknpu/load"
PROCFS_LOAD = "proc/rknpu/load"
# What the RKNPU driver prints (rknpu_debugger.c: "NPU load: ", then " Core%d: " and "%2.d%%," per core).
RK3588_LOAD = "NPU load:  Core0: 12%, Core1:  0%, Core2: 100%,\n"
RK3576_LOAD = "NPU load:  Core0: 45%, Core1: 31%,\n"


def put(root: Path, path: str, text: str) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def zone(root: Path, n: int, kind: str, millidegrees: str) -> None:
    put(root, f"sys/class/thermal/thermal_zone{n}/type", f"{kind}\n")
    put(root, f"sys/class/thermal/thermal_zone{n}/temp", f"{millidegrees}\n")


@pytest.mark.parametrize(("text", "cores"), [
    (RK3588_LOAD, (12, 0, 100)),
    (RK3576_LOAD, (45, 31)),
    ("NPU load:  7%\n", (7,)),  # a single-core NPU (RK3562)
    ("NPU load:  Core0:  0%, Core1:  0%, Core2:  0%,", (0, 0, 0)),  # idle, no newline
])
def test_the_drivers_load_line_is_read_per_core(text: str, cores: tuple[int, ...]) -> None:
    assert parse_npu_load(text) == NpuLoad(cores)


@pytest.mark.parametrize("text", [
    "", "garbage", "NPU load:", "NPU load: Core0: x%,", "load: Core0: 12%,", "NPU load:  Core1: 12%, Core2: 3%,",
    "NPU load:  Core0: 101%,", "NPU load:  Core0: 12%, Core0: 12%,", "NPU load: -5%",
])
def test_anything_else_is_not_a_load(text: str) -> None:
    assert parse_npu_load(text) is None


def test_npu_load_of_an_rk3588_from_debugfs(tmp_path: Path) -> None:
    put(tmp_path, DEBUGFS_LOAD, RK3588_LOAD)
    load = read_npu_load(tmp_path)
    assert load.cores == (12, 0, 100)
    assert load.mean == pytest.approx(37.333, abs=0.001)


def test_npu_load_of_an_rk3576_from_procfs_first(tmp_path: Path) -> None:
    put(tmp_path, PROCFS_LOAD, RK3576_LOAD)
    put(tmp_path, DEBUGFS_LOAD, RK3588_LOAD)  # not read: /proc/rknpu is readable by everyone
    assert read_npu_load(tmp_path).cores == (45, 31)


def test_no_npu_says_so(tmp_path: Path) -> None:
    with pytest.raises(Unreadable, match=r"no RKNPU driver load file \(/proc/rknpu/load or "
                                         r"/sys/kernel/debug/rknpu/load\): not a Rockchip NPU board"):
        read_npu_load(tmp_path)


def test_an_unreadable_load_file_says_why(tmp_path: Path) -> None:
    (tmp_path / DEBUGFS_LOAD).mkdir(parents=True)  # a directory where the file should be: not readable
    with pytest.raises(Unreadable, match=r"^/sys/kernel/debug/rknpu/load: Is a directory$"):
        read_npu_load(tmp_path)


def test_a_permission_denied_in_debugfs_says_how_to_allow_it() -> None:
    # The tests run as root, who may read anything: the reason is checked on the error itself.
    reason = unreadable_reason("/sys/kernel/debug/rknpu/load", PermissionError(13, "Permission denied"))
    assert reason == ("/sys/kernel/debug/rknpu/load: permission denied: debugfs is readable by root only; to show "
                      "NPU load, mount it readable: sudo mount -o remount,mode=0755 /sys/kernel/debug "
                      "(docs/home-assistant.md: Diagnostics)")


def test_a_garbage_load_file_is_not_a_load(tmp_path: Path) -> None:
    put(tmp_path, DEBUGFS_LOAD, "NPU load: who knows\n")
    with pytest.raises(Unreadable, match="says 'NPU load: who knows', which is not the RKNPU driver's load line"):
        read_npu_load(tmp_path)


def test_soc_temperature_is_the_soc_zone_on_an_rk3588(tmp_path: Path) -> None:
    zone(tmp_path, 0, "soc-thermal", "47250")
    zone(tmp_path, 1, "bigcore0-thermal", "49000")
    zone(tmp_path, 6, "npu-thermal", "46100")
    assert read_soc_temperature(tmp_path) == Temperature("soc-thermal", 47.25)


def test_without_a_soc_zone_the_hottest_counts(tmp_path: Path) -> None:
    zone(tmp_path, 0, "package-thermal", "51000")
    zone(tmp_path, 1, "gpu-thermal", "53500")
    zone(tmp_path, 2, "broken-thermal", "-274000")  # an impossible value is left out, not the hottest or coldest
    zone(tmp_path, 3, "off-thermal", "")  # a sensor that is off says nothing
    assert read_soc_temperature(tmp_path) == Temperature("gpu-thermal", 53.5)


def test_no_thermal_zones_say_so(tmp_path: Path) -> None:
    with pytest.raises(Unreadable, match=r"^no readable thermal zone in /sys/class/thermal$"):
        read_soc_temperature(tmp_path)
    zone(tmp_path, 0, "soc-thermal", "garbage")
    with pytest.raises(Unreadable):
        read_soc_temperature(tmp_path)


def test_this_machines_thermal_zones_are_read_or_explained() -> None:
    # /sys/class/thermal may or may not exist here (a VM has none): either way an answer, no crash.
    if any(Path("/sys/class/thermal").glob("thermal_zone*/temp")):
        assert -273 < read_soc_temperature().celsius < 200
    else:
        with pytest.raises(Unreadable, match="no readable thermal zone"):
            read_soc_temperature()


def test_rss_from_a_fake_status(tmp_path: Path) -> None:
    put(tmp_path, "proc/self/status", "Name:\tpython\nVmHWM:\t  90000 kB\nVmRSS:\t   81234 kB\n")
    assert read_rss_bytes(tmp_path) == 81234 * 1024
    put(tmp_path, "proc/42/status", "Name:\tzombie\nState:\tZ (zombie)\n")
    with pytest.raises(Unreadable, match=r"^/proc/42/status has no VmRSS line$"):
        read_rss_bytes(tmp_path, 42)
    with pytest.raises(Unreadable, match=r"^/proc/43/status does not exist$"):
        read_rss_bytes(tmp_path, 43)


def _hold(ready: multiprocessing.synchronize.Event, done: multiprocessing.synchronize.Event) -> None:
    block = bytearray(64 * 2**20)  # 64 MiB, touched: resident
    block[:: 4096] = b"x" * len(block[:: 4096])
    ready.set()
    done.wait(30)


def test_rss_of_this_process_and_of_a_child() -> None:
    own = read_rss_bytes()
    assert 10 * 2**20 < own < 4 * 2**30
    context = multiprocessing.get_context("spawn")
    ready, done = context.Event(), context.Event()
    child = context.Process(target=_hold, args=(ready, done))
    child.start()
    try:
        assert ready.wait(30)
        assert child.pid is not None
        assert read_rss_bytes(pid=child.pid) > 64 * 2**20
    finally:
        done.set()
        child.join(30)
    with pytest.raises(Unreadable):
        read_rss_bytes(pid=child.pid or 0)


def test_monitor_values_on_a_fake_rk3588(tmp_path: Path) -> None:
    put(tmp_path, DEBUGFS_LOAD, RK3588_LOAD)
    zone(tmp_path, 0, "soc-thermal", "47250")
    put(tmp_path, "proc/self/status", "VmRSS:\t  102400 kB\n")
    put(tmp_path, "proc/77/status", "VmRSS:\t 2097152 kB\n")
    assert BoardMonitor(tmp_path).values(worker_pid=77) == {
        "npu_load": 37.3, "npu_load_cores": {"core0": 12, "core1": 0, "core2": 100},
        "soc_temperature_c": 47.2, "soc_thermal_zone": "soc-thermal",
        "memory_mib": 100.0, "worker_memory_mib": 2048.0,
    }


def test_monitor_explains_each_missing_value_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    put(tmp_path, "proc/self/status", "VmRSS:\t  102400 kB\n")
    monitor = BoardMonitor(tmp_path)
    with caplog.at_level(logging.INFO, logger="edge_vlm.publish.board"):
        first = monitor.values(worker_pid=os.getpid() + 10**7)  # a worker that is gone: no value, no log
        second = monitor.values()
    assert first == second == {
        "npu_load": None, "npu_load_cores": None, "soc_temperature_c": None, "soc_thermal_zone": None,
        "memory_mib": 100.0, "worker_memory_mib": None,
    }
    assert [r.getMessage() for r in caplog.records] == [
        "NPU load is not shown in the diagnostics: no RKNPU driver load file (/proc/rknpu/load or "
        "/sys/kernel/debug/rknpu/load): not a Rockchip NPU board, or debugfs is not mounted",
        "SoC temperature is not shown in the diagnostics: no readable thermal zone in /sys/class/thermal",
    ]
