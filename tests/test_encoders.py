"""Vision encoders on real images: imgenc (stand-in program), onnx (onnxruntime), rknn (RKNNLite stand-in)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from edge_vlm.config.vlm import ImgencEncoderConfig, OnnxEncoderConfig, RknnEncoderConfig, VlmBackendConfig
from edge_vlm.core.errors import BackendError
from edge_vlm.frames import decode_image
from edge_vlm.inference.vision.imgenc import ImgencEncoder, output_shape
from edge_vlm.inference.vision.onnx import OnnxEncoder
from edge_vlm.inference.vision.preprocess import PAD_GREY, encoder_input
from edge_vlm.inference.vision.rknn import RknnEncoder
from tests.support import images
from tests.support.imgenc_standin import PASSES_ENV, embeddings_from_pixels, write_imgenc_wrapper, write_model
from tests.support.onnx_models import build_encoder, reference_output


def spec(family: str = "qwen2-vl-2b", **overrides: object):  # type: ignore[no-untyped-def]
    backend = VlmBackendConfig.model_validate({
        "type": "vlm", "family": family, "encoder": {"type": "onnx", "model": "/m.onnx"},
        "llm": {"model": "/m.rkllm"}, **overrides})
    return backend.spec


def frame_pixels(size: int, seed: int = 0) -> np.ndarray:
    frame = decode_image(images.jpeg(640, 360, seed=seed), camera="c", captured_at=0, max_bytes=10**8,
                         max_pixels=10**8)
    return encoder_input(frame.pixels, size)


def test_preprocessing_pads_with_grey_and_resizes_like_the_demo() -> None:
    wide = np.zeros((100, 300, 3), np.uint8)
    out = encoder_input(wide, 60)
    assert out.shape == (60, 60, 3)
    assert (out[:15] == PAD_GREY).all() and (out[-15:] == PAD_GREY).all()  # bands above and below
    assert (out[25:35] == 0).all()  # the image, centred


@pytest.fixture
def imgenc(tmp_path: Path) -> tuple[Path, Path]:
    return write_imgenc_wrapper(tmp_path), tmp_path / "vision.rknn"


def test_imgenc_embeddings_are_read_back_exactly(imgenc: tuple[Path, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    executable, model = imgenc
    write_model(model)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    encoder = ImgencEncoder(ImgencEncoderConfig(type="imgenc", executable=executable, model=model), spec())
    encoder.load()
    pixels = frame_pixels(392)
    embeddings = encoder.encode(pixels)
    assert embeddings.dtype == np.float32 and embeddings.flags.c_contiguous
    np.testing.assert_array_equal(embeddings, embeddings_from_pixels(pixels, 196, 1536, 1))
    assert not list(tmp_path.glob("edge_vlm-imgenc-*"))  # its private directory is gone


def test_imgenc_multi_output_models_are_joined_per_token(imgenc: tuple[Path, Path]) -> None:
    executable, model = imgenc
    write_model(model, input_size=448, tokens=196, dim=64, outputs=4)
    encoder = ImgencEncoder(ImgencEncoderConfig(type="imgenc", executable=executable, model=model),
                            spec("qwen3-vl-2b", floats_per_token=256))
    pixels = frame_pixels(448, seed=3)
    np.testing.assert_array_equal(encoder.encode(pixels), embeddings_from_pixels(pixels, 196, 64, 4))


@pytest.mark.parametrize(("keys", "code", "says"), [
    ({"behaviour": "run_fail"}, "backend_failed", "imgenc reported a failure: "),
    ({"behaviour": "no_file"}, "backend_failed", "imgenc reported a failure: "),
    ({"behaviour": "short_file"}, "backend_failed", "expected 1204224 (196 tokens x 1536 float32)"),
    ({"behaviour": "init_fail"}, "backend_failed", "imgenc failed with exit status 255: "),
    ({"delay_ms": 5000}, "timed_out", "did not finish within 1 s and was killed"),
    ({"tokens": 100}, "backend_failed", "gives 100 tokens x 1536 floats per image, but qwen2-vl-2b expects 196"),
])
def test_imgenc_failures_are_caught_even_when_it_exits_0(imgenc: tuple[Path, Path], keys: dict[str, object],
                                                        code: str, says: str) -> None:
    executable, model = imgenc
    write_model(model, **keys)  # type: ignore[arg-type]
    encoder = ImgencEncoder(ImgencEncoderConfig(type="imgenc", executable=executable, model=model, timeout_s=1),
                            spec())
    with pytest.raises(BackendError) as caught:
        encoder.encode(frame_pixels(392))
    assert caught.value.code == code
    assert says in str(caught.value)


def test_imgenc_output_shape_is_read_from_its_printout() -> None:
    printed = ("model input num: 1, output num: 2\ninput tensors:\n"
               "  index=0, name=input, n_dims=4, dims=[1, 448, 448, 3], n_elems=602112, size=1204224\n"
               "output tensors:\n"
               "  index=0, name=out0, n_dims=2, dims=[196, 2048, 0, 0], n_elems=401408\n"
               "  index=1, name=out1, n_dims=3, dims=[1, 196, 2048, 0], n_elems=401408\n")
    shape = output_shape(printed)
    assert shape is not None and (shape.tokens, shape.floats_per_token) == (196, 4096)
    assert output_shape("nothing printed") is None


@pytest.mark.parametrize(("layout", "dtype", "outputs"), [("NHWC", "uint8", 1), ("NCHW", "float32", 2)])
def test_onnx_encoder_reads_its_shape_from_the_model(tmp_path: Path, layout: str, dtype: str, outputs: int) -> None:
    model = build_encoder(tmp_path / "vision.onnx", input_size=56, tokens=16, dim=32, outputs=outputs,
                          input_layout=layout, input_dtype=dtype)
    # The test models normalise inside (like a .rknn), so float input gets raw pixel values here.
    config = OnnxEncoderConfig(type="onnx", model=model, mean=(0, 0, 0), std=(1, 1, 1))
    encoder = OnnxEncoder(config, spec(image_tokens=16, floats_per_token=32 * outputs))
    encoder.load()
    assert encoder.input_size == 56  # from the model, not the preset's 392
    pixels = frame_pixels(56, seed=4)
    np.testing.assert_allclose(encoder.encode(pixels), reference_output(model, pixels), atol=1e-4)


def test_onnx_encoder_refuses_a_model_the_family_cannot_use(tmp_path: Path) -> None:
    model = build_encoder(tmp_path / "vision.onnx", input_size=56, tokens=16, dim=32)
    encoder = OnnxEncoder(OnnxEncoderConfig(type="onnx", model=model), spec())
    with pytest.raises(BackendError, match="gives 16 tokens x 32 floats per image, but qwen2-vl-2b expects 196 x 1536"):
        encoder.load()


def test_float_onnx_input_gets_the_family_normalisation() -> None:
    assert spec().mean == pytest.approx((122.77, 116.75, 104.09), abs=0.01)  # CLIP, for Qwen2-VL
    assert spec("internvl3-1b").std == pytest.approx((58.395, 57.12, 57.375))


@pytest.mark.usefixtures("rknnlite_standin")  # RKNNLite needs the board: its stand-in runs ONNX
def test_rknn_encoder_through_rknnlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    passes = tmp_path / "passes.txt"
    monkeypatch.setenv(PASSES_ENV, str(passes))  # the stand-in counts its encoder passes, as imgenc's does
    model = build_encoder(tmp_path / "vision.rknn", input_size=392, tokens=196, dim=48)
    encoder = RknnEncoder(RknnEncoderConfig(type="rknn", model=model, core_mask="0_1_2"),
                          spec(floats_per_token=48))
    encoder.load()
    try:
        pixels = frame_pixels(392, seed=5)
        before = len(passes.read_text().splitlines()) if passes.exists() else 0
        np.testing.assert_allclose(encoder.encode(pixels), reference_output(model, pixels), atol=1e-4)
        assert len(passes.read_text().splitlines()) == before + 1
        from rknnlite.api import RKNNLite

        assert ("init_runtime", 7) in RKNNLite.calls
    finally:
        encoder.close()
    missing = RknnEncoder(RknnEncoderConfig(type="rknn", model=tmp_path / "missing.rknn"), spec())
    with pytest.raises(BackendError, match="RKNNLite could not load it"):
        missing.load()
