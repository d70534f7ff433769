"""``edge-vlm doctor``: on this machine, and on a fake RK3588 board built in a directory."""

from __future__ import annotations

import io
import os
import platform
from pathlib import Path

import pytest

from edge_vlm.__main__ import main
from edge_vlm.doctor import Check, doctor, run_checks
from edge_vlm.doctor.backend import check_rknnlite
from edge_vlm.inference.llm import runtime
from edge_vlm.inference.vision.rknn import RKNN_LITE_RELEASE

MODELS = "/var/lib/edge-vlm/models"
IMGENC = "/opt/rknn-llm/imgenc"
USAGE = '#!/bin/sh\necho "Usage: ./imgenc model_path image_path core_num" >&2\nexit 255\n'


def put(root: Path, path: str, data: bytes | str = b"", mode: int = 0o644, size: int | None = None) -> Path:
    """``data`` at ``path`` under ``root``, made ``size`` bytes long (sparse: no disk taken) if given."""
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        target.write_text(data)
    else:
        target.write_bytes(data)
    if size is not None:
        os.truncate(target, size)
    target.chmod(mode)
    return target


def write_config(path: Path, *, encoder: str = "imgenc", runtime_version: str = "auto",
                 cpus: str | None = None, cameras: str = "[{id: front_door}]") -> Path:
    encoder_lines = (f"    type: imgenc\n    executable: {IMGENC}\n    model: {MODELS}/qwen2-vl-vision_rk3588.rknn\n"
                     if encoder == "imgenc" else f"    type: rknn\n    model: {MODELS}/qwen2-vl-vision_rk3588.rknn\n")
    path.write_text(
        f"cameras: {cameras}\n"
        "backend:\n"
        "  type: vlm\n"
        "  family: qwen2-vl-2b\n"
        "  encoder:\n" + encoder_lines +
        "  llm:\n"
        f"    model: {MODELS}/qwen2-vl-2b-w8a8_rk3588.rkllm\n"
        "    library: /usr/lib/librkllmrt.so\n"
        f"    runtime_version: '{runtime_version}'\n"
        + (f"    cpus: {cpus}\n" if cpus else ""),
    )
    return path


@pytest.fixture
def board(tmp_path: Path) -> Path:
    """An RK3588 board tree with everything in place: driver 0.9.8, models, runtime, imgenc."""
    root = tmp_path / "board"
    put(root, "proc/device-tree/compatible", b"xunlong,orangepi-5\0rockchip,rk3588s\0rockchip,rk3588\0")
    put(root, "sys/kernel/debug/rknpu/version", "RKNPU driver: v0.9.8\n")
    put(root, "proc/meminfo", "MemTotal:       16000000 kB\nMemAvailable:   12000000 kB\n")
    put(root, "usr/lib/librknnrt.so", b"\x7fELF rknnrt")
    put(root, "usr/lib/librkllmrt.so", b"\x7fELF not an official build")
    put(root, "usr/lib/libomp.so", b"\x7fELF omp")
    put(root, f"{MODELS}/qwen2-vl-vision_rk3588.rknn", b"RKNN", size=1_400_000_000)  # as large as published
    put(root, f"{MODELS}/qwen2-vl-2b-w8a8_rk3588.rkllm", b"RKLLM", size=2_100_000_000)
    put(root, IMGENC, USAGE, mode=0o755)
    return root


def checks_on(root: Path, config: Path | None, affinity: range = range(8)) -> dict[str, Check]:
    found = run_checks(config, root=root, machine="aarch64", affinity=affinity, find_library=lambda name: None)
    return {check.name: check for check in found}


@pytest.fixture
def official(board: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the board's librkllmrt.so pass for the official 1.3.0 build."""
    blob = runtime.git_blob_id(board / "usr/lib/librkllmrt.so")
    monkeypatch.setitem(runtime.RELEASES, blob, "1.3.0")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="says so on an x86-64 machine")
def test_on_this_x86_machine_doctor_says_there_is_no_npu(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL  board")
    assert "this machine has no Rockchip NPU (x86_64)" in out
    assert "the daemon can still run here with the opencv backend" in out
    assert "SKIP  models      no configuration given" in out


def test_an_x86_machine_fails_and_skips_the_board_checks(tmp_path: Path, board: Path) -> None:
    config = write_config(tmp_path / "vlm.yaml")
    out = io.StringIO()
    assert doctor(config, root=board, machine="x86_64", affinity=range(8), out=out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("FAIL  board ") and "no Rockchip NPU (x86_64)" in lines[0]
    assert lines[1].strip() == "fix: run edge-vlm doctor on the RK3588 or RK3576 board"
    assert any(line.startswith("SKIP  npu driver ") and line.endswith("not a Rockchip board") for line in lines)
    assert any(line.startswith("SKIP  board checks") for line in lines)


def test_a_ready_board_passes_everything(tmp_path: Path, board: Path, official: None) -> None:
    checks = checks_on(board, write_config(tmp_path / "vlm.yaml"))
    assert {name: c.status for name, c in checks.items()} == {
        "board": "PASS", "npu driver": "PASS", "config": "PASS", "rkllm runtime": "PASS",
        "encoder model": "PASS", "llm model": "PASS", "memory": "PASS", "cpus": "PASS",
        "libomp": "PASS", "imgenc": "PASS",
    }
    assert checks["board"].finding == "aarch64, RK3588 (3 NPU cores)"
    assert checks["npu driver"].finding == "RKNPU driver 0.9.8"
    assert checks["rkllm runtime"].finding.endswith("RKLLM runtime 1.3.0 (ABI 1.3)")
    assert checks["llm model"].finding == f"backend.llm.model {MODELS}/qwen2-vl-2b-w8a8_rk3588.rkllm: 2.10 GB"
    assert checks["cpus"].finding == "default CPUs [4, 5, 6, 7]: 4 for 3 NPU cores"
    assert checks["libomp"].finding.endswith("usr/lib/libomp.so")
    out = io.StringIO()
    assert doctor(write_config(tmp_path / "vlm.yaml"), root=board, machine="aarch64", affinity=range(8),
                  find_library=lambda name: None, out=out) == 0
    assert out.getvalue().splitlines()[-1] == "10 PASS, 0 FAIL, 0 WARN, 0 SKIP"


def test_an_old_driver_fails_with_the_fix(tmp_path: Path, board: Path) -> None:
    put(board, "sys/kernel/debug/rknpu/version", "RKNPU driver: v0.9.6\n")
    out = io.StringIO()
    assert doctor(None, root=board, machine="aarch64", out=out) == 1
    lines = out.getvalue().splitlines()
    driver = next(i for i, line in enumerate(lines) if line.startswith("FAIL  npu driver"))
    assert "RKNPU driver 0.9.6: RKLLM needs 0.9.8 or later" in lines[driver]
    assert "fix: use a board kernel with RKNPU driver 0.9.8" in lines[driver + 1]


def test_driver_version_unreadable_or_missing(board: Path) -> None:
    (board / "sys/kernel/debug/rknpu/version").unlink()
    missing = checks_on(board, None)["npu driver"]
    assert (missing.status, missing.finding) == (
        "FAIL", "no RKNPU driver: /sys/kernel/debug/rknpu/version does not exist")
    (board / "sys/kernel/debug/rknpu").rmdir()
    unmounted = checks_on(board, None)["npu driver"]
    assert unmounted.status == "WARN" and unmounted.fix == "sudo mount -t debugfs debugfs /sys/kernel/debug"


def test_without_a_config_or_with_opencv_the_model_checks_are_skipped(tmp_path: Path, board: Path) -> None:
    assert checks_on(board, None)["models"].status == "SKIP"
    opencv = tmp_path / "opencv.yaml"
    opencv.write_text("cameras: [{id: front_door}]\n")
    checks = checks_on(board, opencv)
    assert checks["config"].status == "PASS"
    assert (checks["models"].status, checks["models"].finding) == ("SKIP", "the opencv backend uses no model files")


def test_an_invalid_config_fails(tmp_path: Path, board: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: [{id: Front Door}]\n")
    checks = checks_on(board, bad)
    assert checks["config"].status == "FAIL" and f"edge-vlm check -c {bad}" in checks["config"].fix
    assert checks["models"].status == "SKIP"


def test_a_missing_model_fails_naming_the_config_key(tmp_path: Path, board: Path, official: None) -> None:
    (board / MODELS.lstrip("/") / "qwen2-vl-2b-w8a8_rk3588.rkllm").unlink()
    checks = checks_on(board, write_config(tmp_path / "vlm.yaml"))
    assert checks["llm model"].status == "FAIL"
    assert checks["llm model"].finding == f"backend.llm.model {MODELS}/qwen2-vl-2b-w8a8_rk3588.rkllm: file not found"
    assert "backend.llm.model" in checks["llm model"].fix
    assert checks["memory"].status == "SKIP"
    # as `edge-vlm check` says it (it used to say "valid" here while check refused the file)
    assert checks["config"].status == "FAIL"
    assert checks["config"].finding.endswith(f"valid, but 1 problem(s) stop the daemon here, the first: line 10: "
                                             f"backend.llm.model: '{MODELS}/qwen2-vl-2b-w8a8_rk3588.rkllm': "
                                             "file not found (models/README.md says where to get it)")


def test_an_unknown_runtime_fails_when_auto_and_warns_when_set(tmp_path: Path, board: Path) -> None:
    auto = checks_on(board, write_config(tmp_path / "auto.yaml"))["rkllm runtime"]
    assert auto.status == "FAIL" and "unknown build" in auto.finding and "set runtime_version" in auto.finding
    assert 'backend.llm.runtime_version to "1.2"' in auto.fix
    pinned = checks_on(board, write_config(tmp_path / "pinned.yaml", runtime_version="1.3"))["rkllm runtime"]
    assert pinned.status == "WARN" and "bound as ABI 1.3" in pinned.finding


def test_a_runtime_of_another_abi_than_configured_fails(tmp_path: Path, board: Path, official: None) -> None:
    check = checks_on(board, write_config(tmp_path / "vlm.yaml", runtime_version="1.2"))["rkllm runtime"]
    assert check.status == "FAIL" and check.fix == 'set backend.llm.runtime_version to "1.3" or "auto"'


def test_too_little_memory_fails(tmp_path: Path, board: Path) -> None:
    put(board, "proc/meminfo", "MemTotal:       16000000 kB\nMemAvailable:          4 kB\n")
    memory = checks_on(board, write_config(tmp_path / "vlm.yaml"))["memory"]
    assert memory.status == "FAIL"
    assert memory.finding == "0.0 MB available for 3.50 GB of model files: the models do not fit"
    put(board, "proc/meminfo", "MemAvailable:    4000000 kB\n")  # 4.1 GB for 3.5: under 1.5x
    assert checks_on(board, write_config(tmp_path / "vlm.yaml"))["memory"].status == "WARN"


def test_clip_buffers_count_beside_the_models(tmp_path: Path, board: Path) -> None:
    """Each camera's clip buffer at its most (docs/cameras.md: 26.3 MB with the defaults)."""
    put(board, "proc/meminfo", "MemAvailable:    3500000 kB\n")  # 3.58 GB: the 3.5 GB of models fit, not more
    cameras = "[{id: a, clip: {}}, {id: b, clip: {seconds: 30, fps: 5, long_side: 1920}}]"
    memory = checks_on(board, write_config(tmp_path / "vlm.yaml", cameras=cameras))["memory"]
    assert memory.status == "FAIL"
    assert memory.finding == ("3.58 GB available for 3.50 GB of model files and 1.70 GB of clip buffers at most: "
                              "they do not fit")
    assert memory.fix.endswith("; shorter clips (cameras[].clip: seconds, fps, long_side)")


def test_a_model_download_that_is_a_web_page_or_cut_off_is_named(tmp_path: Path, board: Path) -> None:
    config = write_config(tmp_path / "vlm.yaml")
    put(board, f"{MODELS}/qwen2-vl-2b-w8a8_rk3588.rkllm", "\n  <!DOCTYPE html><html><title>Sign in</title>")
    page = checks_on(board, config)["llm model"]
    assert page.status == "FAIL" and "start like a web page (HTML), not a model" in page.finding
    put(board, f"{MODELS}/qwen2-vl-vision_rk3588.rknn", b"RKNN", size=20_000_000)
    cut = checks_on(board, config)["encoder model"]
    assert cut.status == "WARN" and cut.finding.endswith(
        "only 20.0 MB, less than any published model file (the smallest, Qwen3.5-0.8B's encoder, is 219 MB): "
        "a cut-off download?")


def test_fewer_cpus_than_npu_cores_fails(tmp_path: Path, board: Path) -> None:
    cpus = checks_on(board, write_config(tmp_path / "vlm.yaml", cpus="[4, 5]"))["cpus"]
    assert cpus.status == "FAIL"
    assert cpus.finding.startswith("backend.llm.cpus [4, 5]: 2 for 3 NPU cores")
    assert cpus.fix == "list at least 3 CPUs in backend.llm.cpus, e.g. [4, 5, 6, 7]"
    restricted = checks_on(board, write_config(tmp_path / "vlm.yaml"), affinity=range(4))["cpus"]
    assert restricted.status == "WARN" and "[4, 5, 6, 7] are not available" in restricted.finding


def test_rk3576_has_two_npu_cores(tmp_path: Path, board: Path) -> None:
    put(board, "proc/device-tree/compatible", b"rockchip,rk3576-evb\0rockchip,rk3576\0")
    checks = checks_on(board, write_config(tmp_path / "vlm.yaml", cpus="[6, 7]"))
    assert checks["board"].finding == "aarch64, RK3576 (2 NPU cores)"
    assert checks["cpus"].status == "PASS"


def test_another_soc_or_none_is_not_a_board(board: Path) -> None:
    put(board, "proc/device-tree/compatible", b"radxa,rock-pi-4\0rockchip,rk3399\0")
    assert checks_on(board, None)["board"].finding.startswith("Rockchip rk3399:")
    (board / "proc/device-tree/compatible").unlink()
    assert "no Rockchip NPU (aarch64" in checks_on(board, None)["board"].finding


def test_imgenc_must_run_and_print_its_usage(tmp_path: Path, board: Path) -> None:
    config = write_config(tmp_path / "vlm.yaml")
    put(board, IMGENC, USAGE, mode=0o644)
    assert checks_on(board, config)["imgenc"].fix == f"chmod +x {IMGENC}"
    put(board, IMGENC, "#!/bin/sh\necho 'error while loading shared libraries: librknnrt.so' >&2\nexit 127\n",
        mode=0o755)
    broken = checks_on(board, config)["imgenc"]
    assert broken.status == "FAIL" and "exit status 127" in broken.finding and "librknnrt.so" in broken.finding
    (board / IMGENC.lstrip("/")).unlink()
    assert checks_on(board, config)["imgenc"].finding == f"backend.encoder.executable {IMGENC}: file not found"


def test_the_rknn_encoder_needs_librknnrt_and_rknnlite(tmp_path: Path, board: Path) -> None:
    config = write_config(tmp_path / "vlm.yaml", encoder="rknn")
    (board / "usr/lib/librknnrt.so").unlink()
    checks = checks_on(board, config)
    assert checks["librknnrt"].status == "FAIL" and "/usr/lib/" in checks["librknnrt"].fix
    assert checks["rknnlite"].status == "FAIL"  # the wheel exists for aarch64 only
    assert "imgenc" not in checks


def test_rknnlite_is_the_pinned_release_on_a_python_it_has_wheels_for(request: pytest.FixtureRequest) -> None:
    newest = check_rknnlite(python=(3, 13))  # not importable here, as on a board's Python 3.13
    assert newest.status == "FAIL" and "Python 3.13" in newest.finding and "3.7-3.12" in newest.finding
    assert "Python 3.10-3.12" in newest.fix and "imgenc" in newest.fix
    request.getfixturevalue("rknnlite_standin")  # importable as on a board; its version is what pip says
    assert check_rknnlite(python=(3, 12), installed=lambda _: "2.3.2").status == "PASS"
    drifted = check_rknnlite(python=(3, 11), installed=lambda _: "2.5.0")
    assert drifted.status == "WARN" and "2.5.0" in drifted.finding
    assert drifted.fix == "pip install 'rknn-toolkit-lite2==2.3.2'"


def test_the_rknn_extra_pins_the_release_doctor_checks_for() -> None:
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert (f'rknn = ["rknn-toolkit-lite2=={RKNN_LITE_RELEASE}; platform_machine == \'aarch64\' and '
            "sys_platform == 'linux' and python_version < '3.13'\"]") in pyproject
