"""Temporary files are private to the service user and always removed.

The only ones the daemon writes are imgenc's: per frame, a directory (0700) holding the frame
(0600) and imgenc's output, inside the inference worker's own directory (0700). Each goes away when
the run succeeds, fails, times out or is killed; the worker's when the worker ends or is killed.
The imgenc stand-in here first records what it sees (modes of its working directory and of the
frame it is given), then runs as usual.
"""

from __future__ import annotations

import os
import shlex
import signal
import stat
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from edge_vlm.config.vlm import ImgencEncoderConfig, VlmBackendConfig
from edge_vlm.core.errors import BackendError
from edge_vlm.frames import Frame
from edge_vlm.inference.backends.vlm import VlmBackend
from edge_vlm.inference.vision.imgenc import ImgencEncoder
from tests.support.imgenc_standin import write_imgenc_wrapper, write_model
from tests.support.npu import vlm_backend
from tests.test_daemon import wait_until


def recording_imgenc(directory: Path, record: Path) -> Path:
    """An imgenc that appends "<pid> <mode of .> <mode of the image> <uid>" to ``record``, then runs the stand-in."""
    (directory / "standin").mkdir(parents=True, exist_ok=True)
    standin = write_imgenc_wrapper(directory / "standin")
    wrapper = directory / "imgenc"
    wrapper.write_text(f'#!/bin/sh\necho "$$ $(stat -c %a .) $(stat -c %a "$2") $(stat -c %u "$2")" >> '
                       f"{shlex.quote(str(record))}\nexec {shlex.quote(str(standin))} \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where temporary files go in this test (what systemd's PrivateTmp= gives the service)."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def seen(record: Path) -> list[list[str]]:
    return [line.split() for line in record.read_text().splitlines()] if record.exists() else []


def frame(size: int = 392) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, (size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize(("case", "model_keys", "code"), [
    ("success", {}, None),
    ("failure", {"behaviour": "init_fail"}, "backend_failed"),
    ("no output", {"behaviour": "no_file"}, "backend_failed"),
    ("timeout", {"delay_ms": 10_000}, "timed_out"),
])
def test_imgenc_files_are_private_and_removed(tmp_path: Path, private_tmp: Path, case: str,
                                              model_keys: dict[str, object], code: str | None) -> None:
    record = tmp_path / "record.txt"
    model = write_model(tmp_path / "vision.rknn", **model_keys)  # type: ignore[arg-type]
    config = ImgencEncoderConfig(type="imgenc", executable=recording_imgenc(tmp_path, record), model=model,
                                 timeout_s=1 if case == "timeout" else 60)  # a stand-in's start may take > 1 s
    encoder = ImgencEncoder(config, VlmBackendConfig.model_validate({
        "type": "vlm", "family": "qwen2-vl-2b", "encoder": config.model_dump(), "llm": {"model": "/m.rkllm"}}).spec)

    if code is None:
        assert encoder.encode(frame()).shape == (196, 1536)
    else:
        with pytest.raises(BackendError) as caught:
            encoder.encode(frame())
        assert caught.value.code == code

    ((_, directory_mode, image_mode, uid),) = seen(record)
    assert (directory_mode, image_mode, int(uid)) == ("700", "600", os.getuid())
    assert list(private_tmp.iterdir()) == []


def test_imgenc_killed_from_outside_leaves_nothing(tmp_path: Path, private_tmp: Path) -> None:
    record = tmp_path / "record.txt"
    model = write_model(tmp_path / "vision.rknn", delay_ms=30_000)
    config = ImgencEncoderConfig(type="imgenc", executable=recording_imgenc(tmp_path, record), model=model,
                                 timeout_s=60)
    encoder = ImgencEncoder(config, VlmBackendConfig.model_validate({
        "type": "vlm", "family": "qwen2-vl-2b", "encoder": config.model_dump(), "llm": {"model": "/m.rkllm"}}).spec)

    def kill_it() -> None:
        wait_until(lambda: bool(seen(record)), timeout=30)
        os.kill(int(seen(record)[0][0]), signal.SIGKILL)

    killer = threading.Thread(target=kill_it)
    killer.start()
    with pytest.raises(BackendError, match="killed by signal 9"):
        encoder.encode(frame())
    killer.join()
    assert list(private_tmp.iterdir()) == []


def test_a_killed_worker_leaves_no_files(tmp_path: Path, private_tmp: Path, fake_rkllmrt: dict[str, Path]) -> None:
    """The worker is killed while imgenc runs: its directory, and the frame in it, go with it."""
    record = tmp_path / "record.txt"
    backend_data = vlm_backend(tmp_path, fake_rkllmrt["1.3"], abi="1.3", job_timeout_s=60)
    write_model(Path(backend_data["encoder"]["model"]), delay_ms=1000)
    backend_data["encoder"]["executable"] = str(recording_imgenc(tmp_path / "rec", record))
    backend = VlmBackend(VlmBackendConfig.model_validate(backend_data))
    backend.load()  # encodes a grey frame once: one line in the record
    try:
        (worker_dir,) = list(private_tmp.iterdir())
        assert stat.S_IMODE(worker_dir.stat().st_mode) == 0o700
        image = frame()
        failed: list[BaseException] = []

        def describe() -> None:
            try:
                backend.describe(backend.prepare(_frame(image)), _frame(image), "What?")
            except BackendError as exc:
                failed.append(exc)

        job = threading.Thread(target=describe)
        job.start()
        wait_until(lambda: len(seen(record)) == 2, timeout=30)  # imgenc runs for the job
        worker = backend.worker_pid  # not active_children(): other tests' workers may be there
        assert worker is not None
        os.kill(worker, signal.SIGKILL)
        job.join(30)
        assert [getattr(e, "code", None) for e in failed] == ["worker_crashed"]
        wait_until(lambda: worker_dir not in list(private_tmp.iterdir()), timeout=30)
    finally:
        backend.close()
    assert list(private_tmp.iterdir()) == []


def _frame(pixels: np.ndarray) -> Frame:
    height, width = pixels.shape[:2]
    return Frame("porch", pixels, (width, height), b"", "RAW", 0.0)

