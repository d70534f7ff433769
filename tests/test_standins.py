"""The test stand-ins behave as specified: the ``imgenc`` stand-in like Rockchip's demo program (rknn-llm
examples/multimodal_model_demo/deploy), and the tiny ONNX encoders like their numpy reference."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.support import images
from tests.support.imgenc_standin import (
    DEFAULTS,
    expected_embeddings,
    preprocess,
    write_imgenc_wrapper,
    write_model,
)

TENSOR = re.compile(
    r"^  index=(\d+), name=(\S+), n_dims=(\d+), dims=\[([\d, ]+)\], n_elems=(\d+), size=(\d+), fmt=(\w+), "
    r"type=(\w+), qnt_type=(\w+), zp=(-?\d+), scale=(\d+\.\d{6})$"
)


class Run:
    def __init__(self, workdir: Path, *args: str) -> None:
        self.workdir = workdir
        done = subprocess.run(
            [str(workdir / "imgenc"), *args], cwd=workdir, capture_output=True, text=True, timeout=60, check=False
        )
        self.returncode, self.stdout, self.stderr = done.returncode, done.stdout, done.stderr
        self.lines = done.stdout.splitlines()

    @property
    def vec(self) -> Path:
        return self.workdir / "img_vec.bin"

    def floats(self) -> np.ndarray:
        return np.fromfile(self.vec, dtype="<f4")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory holding the wrapper ``imgenc``, a 640x360 JPEG and a 480x640 one."""
    write_imgenc_wrapper(tmp_path)
    (tmp_path / "wide.jpg").write_bytes(images.jpeg(640, 360, seed=1))
    (tmp_path / "tall.jpg").write_bytes(images.jpeg(480, 640, seed=2))
    return tmp_path


def test_wrapper_is_an_executable_sh_script(workdir: Path) -> None:
    wrapper = workdir / "imgenc"
    assert wrapper.read_text().startswith("#!/bin/sh\nexec ")
    assert wrapper.stat().st_mode & 0o111 == 0o111


def test_default_model_writes_qwen2_vl_2b_sized_embeddings(workdir: Path) -> None:
    model = write_model(workdir / "qwen2-vl-2b.rknn")
    run = Run(workdir, model.name, "wide.jpg", "3")
    assert run.returncode == 0, run.stderr
    assert run.vec.stat().st_size == 196 * 1536 * 4
    values = run.floats().reshape(196, 1536)
    assert np.isfinite(values).all()
    np.testing.assert_array_equal(values, expected_embeddings(workdir / "wide.jpg", **DEFAULTS))

    assert run.lines[0] == "===the core num is 3==="
    assert run.lines[1] == "model input num: 1, output num: 1"
    assert run.lines[2] == "input tensors:"
    tensors = [m.groups() for m in map(TENSOR.match, run.lines) if m]
    assert len(tensors) == 2
    index, _, n_dims, dims, n_elems, size, fmt, dtype, qnt, zp, scale = tensors[0]
    assert (
        ", ".join((index, n_dims, dims, fmt, dtype, qnt, zp, scale))
        == "0, 4, 1, 392, 392, 3, NHWC, FP16, AFFINE, 0, 1.000000"
    )
    assert (int(n_elems), int(size)) == (392 * 392 * 3, 392 * 392 * 3 * 2)
    assert run.lines[4] == "output tensors:"
    index, _, n_dims, dims, n_elems, size, fmt, *_ = tensors[1]
    shape = [int(v) for v in dims.split(", ")][: int(n_dims)]  # the demo prints dims[0..3], zero-padded
    assert (index, shape, int(n_elems), int(size)) == ("0", [196, 1536], 196 * 1536, 196 * 1536 * 2)
    assert "model input height=392, width=392, channel=3" in run.lines
    assert re.fullmatch(r"main: Model loaded in +\d+\.\d\d ms", run.lines[-2])
    assert re.fullmatch(r"main: Encoder the image cost +\d+\.\d\d ms", run.lines[-1])


def test_core_num_is_echoed_and_output_goes_to_the_working_directory(workdir: Path) -> None:
    model = write_model(workdir / "enc.rknn", input_size=28, tokens=4, dim=8)
    (workdir / "sub").mkdir()
    run = Run(workdir, model.name, "tall.jpg", "1")
    assert run.lines[0] == "===the core num is 1===" and run.vec.stat().st_size == 4 * 8 * 4
    assert not (workdir / "sub" / "img_vec.bin").exists()


def test_embeddings_depend_on_the_pixels_and_are_deterministic(workdir: Path) -> None:
    keys = {"input_size": 56, "tokens": 16, "dim": 64}
    wide, tall = (expected_embeddings(workdir / name, **keys) for name in ("wide.jpg", "tall.jpg"))
    assert wide.shape == (16, 64) and wide.dtype == np.float32
    assert not np.allclose(wide, tall)
    np.testing.assert_array_equal(wide, expected_embeddings(workdir / "wide.jpg", **keys))
    assert len({row.tobytes() for row in wide}) == 16  # tokens differ from each other


def test_multi_output_layout_is_token_output_dim(workdir: Path) -> None:
    """Qwen3-VL "deepstack": 4 outputs, interleaved per token; a token count that is not a square."""
    keys = {"input_size": 112, "tokens": 30, "dim": 16, "outputs": 4}
    run = Run(workdir, write_model(workdir / "qwen3.rknn", **keys).name, "wide.jpg", "2")
    assert run.returncode == 0
    assert "model input num: 1, output num: 4" in run.lines
    outputs = [m.groups() for m in map(TENSOR.match, run.lines) if m][1:]
    assert [(o[0], o[3]) for o in outputs] == [(str(i), "30, 16, 0, 0") for i in range(4)]
    raw = run.floats()
    assert raw.size == 30 * 4 * 16
    expected = expected_embeddings(workdir / "wide.jpg", **keys)
    assert expected.shape == (30, 64)
    by_token = raw.reshape(30, 4, 16)
    for o in range(4):
        np.testing.assert_array_equal(by_token[:, o, :], expected[:, o * 16 : (o + 1) * 16])
    assert not np.allclose(by_token[:, 0], by_token[:, 1])


def test_preprocessing_pads_to_a_centred_square_of_128(tmp_path: Path) -> None:
    pixels = np.zeros((32, 64, 3), np.uint8)
    pixels[..., 0] = 200  # pure red, lossless
    Image.fromarray(pixels).save(tmp_path / "red.png")
    square = preprocess(tmp_path / "red.png", 64)
    assert square.shape == (64, 64, 3) and square.dtype == np.uint8
    assert (square[:16] == 128).all() and (square[48:] == 128).all()
    assert (square[16:48] == [200, 0, 0]).all()  # RGB order, not BGR


def test_delay_is_reported_as_encoder_time(workdir: Path) -> None:
    run = Run(
        workdir, write_model(workdir / "slow", input_size=28, tokens=4, dim=8, delay_ms=200).name, "wide.jpg", "3"
    )
    cost = re.fullmatch(r"main: Encoder the image cost +(\d+\.\d\d) ms", run.lines[-1])
    assert cost and float(cost[1]) >= 200


@pytest.mark.parametrize(
    ("behaviour", "message", "floats"),
    [
        ("run_fail", True, 6 * 8),
        ("no_file", True, None),
        ("short_file", False, 3 * 8),
        ("garbage_file", False, 6 * 8),
    ],
)
def test_run_behaviours_exit_0(workdir: Path, behaviour: str, message: bool, floats: int | None) -> None:
    model = write_model(workdir / "enc", input_size=28, tokens=6, dim=8, behaviour=behaviour)
    run = Run(workdir, model.name, "wide.jpg", "3")
    assert run.returncode == 0
    assert ("run_imgenc fail! ret=-1" in run.lines) is message
    assert run.lines[-1].startswith("main: Encoder the image cost")
    if floats is None:
        assert not run.vec.exists()
        return
    values = run.floats()
    assert values.size == floats
    if behaviour == "garbage_file":
        assert np.isnan(values).all()
    if behaviour == "run_fail":
        assert not values.any()


@pytest.mark.parametrize("model", ["init_fail", "missing"])
def test_init_failure_exits_255(workdir: Path, model: str) -> None:
    if model == "init_fail":
        write_model(workdir / model, behaviour="init_fail")
    run = Run(workdir, model, "wide.jpg", "3")
    assert run.returncode == 255
    assert run.lines == ["rknn_init fail! ret=-1", f"init_imgenc fail! ret=-1 model_path={model}"]
    assert not run.vec.exists()


@pytest.mark.parametrize("args", [(), ("model",), ("model", "wide.jpg")])
def test_too_few_arguments_print_usage_and_exit_255(workdir: Path, args: tuple[str, ...]) -> None:
    run = Run(workdir, *args)
    assert run.returncode == 255 and run.stdout == ""
    assert "<model_path> <image_path> <core_num>" in run.stderr


@pytest.mark.parametrize("image", ["absent.jpg", "not_an_image.jpg"])
def test_unreadable_image_aborts(workdir: Path, image: str) -> None:
    (workdir / "not_an_image.jpg").write_text("hello")
    run = Run(workdir, write_model(workdir / "enc", input_size=28, tokens=4, dim=8).name, image, "3")
    assert run.returncode == -signal.SIGABRT
    assert "cv::Exception" in run.stderr and "cvtColor" in run.stderr
    assert not run.vec.exists()


def test_write_model_rejects_unknown_keys_and_behaviours(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unknown"):
        write_model(tmp_path / "m", token=196)
    with pytest.raises(ValueError, match="behaviour"):
        write_model(tmp_path / "m", behaviour="explode")


ONNX_VARIANTS: list[dict[str, Any]] = [
    {},
    {"input_layout": "NCHW", "input_dtype": "float32"},
    {"input_layout": "NHWC", "input_dtype": "float32", "batch_output": True},
    {"input_layout": "NCHW", "input_dtype": "uint8", "outputs": 3},
    {"outputs": 2, "batch_output": True, "input_size": 64, "tokens": 64, "dim": 24},
]


@pytest.mark.parametrize("variant", ONNX_VARIANTS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v) or "default")
def test_onnx_encoder_matches_numpy_reference(tmp_path: Path, variant: dict[str, Any]) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from tests.support.onnx_models import build_encoder, model_input, reference_output, reference_outputs

    path = build_encoder(tmp_path / "enc.onnx", **variant)
    config = {"input_size": 56, "tokens": 16, "dim": 32, "outputs": 1, **variant}
    size, tokens, dim, n_out = (int(config[k]) for k in ("input_size", "tokens", "dim", "outputs"))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (workdir := tmp_path / "img").mkdir()
    results = []
    for seed in (1, 2):
        (workdir / "a.jpg").write_bytes(images.jpeg(320, 200, seed=seed))
        image = preprocess(workdir / "a.jpg", size)
        got = session.run(None, {session.get_inputs()[0].name: model_input(path, image)})
        want = reference_outputs(path, image)
        assert len(got) == len(want) == n_out
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape == ((1, tokens, dim) if variant.get("batch_output") else (tokens, dim))
            assert g.dtype == np.float32
            np.testing.assert_allclose(g, w, atol=1e-5)
        flat = reference_output(path, image)
        assert flat.shape == (tokens, n_out * dim) and flat.flags.c_contiguous
        np.testing.assert_allclose(flat, np.concatenate([g.reshape(tokens, dim) for g in got], axis=1), atol=1e-5)
        results.append(flat)
    assert not np.allclose(results[0], results[1])  # the pixels matter
    if n_out > 1:
        assert not np.allclose(results[0][:, :dim], results[0][:, dim : 2 * dim])


def test_onnx_builder_rejects_a_token_count_that_is_not_a_grid(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from tests.support.onnx_models import build_encoder

    with pytest.raises(ValueError, match="square"):
        build_encoder(tmp_path / "bad.onnx", tokens=15)
