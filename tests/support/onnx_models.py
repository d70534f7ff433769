"""Small ONNX vision encoders, built with the ``onnx`` package, for testing encoder code without a real model.

Each model takes one image ``[1, S, S, 3]`` (NHWC) or ``[1, 3, S, S]`` (NCHW) of raw 0-255 RGB pixel values
(uint8, cast inside the model, or float32); normalisation ``(x - 127.5) / 127.5`` is inside the model, as
RKNN conversion bakes mean/std into an ``.rknn``. It average-pools the image into a g x g grid
(tokens = g*g, row-major), multiplies each patch's mean RGB by a fixed [3, dim] weight, adds a bias and
applies Tanh. Each of ``outputs`` outputs has its own weights and is shaped [tokens, dim] (or
[1, tokens, dim] with ``batch_output=True``). :func:`reference_outputs` recomputes the outputs with numpy
from the saved file, independently of onnxruntime.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # the IR version of opset 17; onnxruntime >= 1.13 loads it
_CONFIG_KEYS = ("input_size", "tokens", "dim", "outputs", "input_layout", "input_dtype", "batch_output")


def build_encoder(
    path: Path,
    *,
    input_size: int = 56,
    tokens: int = 16,
    dim: int = 32,
    outputs: int = 1,
    input_layout: str = "NHWC",
    input_dtype: str = "uint8",
    batch_output: bool = False,
    seed: int = 0,
) -> Path:
    """Build and save an encoder; tokens must be a square g*g with input_size divisible by g."""
    grid = math.isqrt(tokens)
    if grid * grid != tokens or input_size % grid:
        raise ValueError(f"tokens={tokens} must be a square whose root divides input_size={input_size}")
    if input_layout not in ("NHWC", "NCHW") or input_dtype not in ("uint8", "float32") or outputs < 1:
        raise ValueError("input_layout is NHWC|NCHW, input_dtype uint8|float32, outputs >= 1")
    elem = TensorProto.UINT8 if input_dtype == "uint8" else TensorProto.FLOAT
    shape = [1, input_size, input_size, 3] if input_layout == "NHWC" else [1, 3, input_size, input_size]
    rng = np.random.default_rng(seed)
    init = [
        numpy_helper.from_array(np.array(127.5, np.float32), "mean"),
        numpy_helper.from_array(np.array(1 / 127.5, np.float32), "inv_std"),
        numpy_helper.from_array(np.array([1, 3, tokens], np.int64), "pooled_shape"),
        numpy_helper.from_array(np.array([1, tokens, dim] if batch_output else [tokens, dim], np.int64), "out_shape"),
    ]
    nodes = [helper.make_node("Cast", ["pixels"], ["x_f"], to=TensorProto.FLOAT)] if input_dtype == "uint8" else []
    x = "x_f" if nodes else "pixels"
    if input_layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["x_nchw"], perm=[0, 3, 1, 2]))
        x = "x_nchw"
    kernel = input_size // grid
    nodes += [
        helper.make_node("Sub", [x, "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "inv_std"], ["normed"]),
        helper.make_node(
            "AveragePool", ["normed"], ["pooled"], kernel_shape=[kernel, kernel], strides=[kernel, kernel]
        ),
        helper.make_node("Reshape", ["pooled", "pooled_shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["patches"], perm=[0, 2, 1]),  # [1, tokens, 3]
    ]
    graph_outputs = []
    for o in range(outputs):
        init += [
            numpy_helper.from_array(rng.standard_normal((3, dim)).astype(np.float32), f"weight_{o}"),
            numpy_helper.from_array((0.1 * rng.standard_normal(dim)).astype(np.float32), f"bias_{o}"),
        ]
        nodes += [
            helper.make_node("MatMul", ["patches", f"weight_{o}"], [f"mm_{o}"]),
            helper.make_node("Add", [f"mm_{o}", f"bias_{o}"], [f"pre_{o}"]),
            helper.make_node("Tanh", [f"pre_{o}"], [f"act_{o}"]),
            helper.make_node("Reshape", [f"act_{o}", "out_shape"], [f"embeds_{o}"]),
        ]
        out_shape = [1, tokens, dim] if batch_output else [tokens, dim]
        graph_outputs.append(helper.make_tensor_value_info(f"embeds_{o}", TensorProto.FLOAT, out_shape))
    graph = helper.make_graph(
        nodes,
        "tiny_vision_encoder",
        [helper.make_tensor_value_info("pixels", elem, shape)],
        graph_outputs,
        initializer=init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edge_vlm-tests")
    model.ir_version = IR_VERSION
    config = dict(
        zip(_CONFIG_KEYS, (input_size, tokens, dim, outputs, input_layout, input_dtype, batch_output), strict=True)
    )
    helper.set_model_props(model, {key: str(value) for key, value in config.items()})
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def model_config(path: Path) -> dict[str, str]:
    """The build_encoder arguments a saved model was made with (all as strings)."""
    return {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props if prop.key in _CONFIG_KEYS}


def model_input(path: Path, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.generic]:
    """The model's input tensor for a preprocessed (S, S, 3) uint8 RGB image (layout, dtype, batch dim)."""
    config = model_config(path)
    size = int(config["input_size"])
    if image.shape != (size, size, 3) or image.dtype != np.uint8:
        raise ValueError(f"expected a ({size}, {size}, 3) uint8 image, got {image.shape} {image.dtype}")
    tensor = image[None] if config["input_layout"] == "NHWC" else image.transpose(2, 0, 1)[None]
    return np.ascontiguousarray(tensor, dtype=np.uint8 if config["input_dtype"] == "uint8" else np.float32)


def reference_outputs(path: Path, image: npt.NDArray[np.uint8]) -> list[npt.NDArray[np.float32]]:
    """Each output, shaped as in the model, computed with numpy from the saved weights (no onnxruntime)."""
    model = onnx.load(str(path))
    config = model_config(path)
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    size, tokens = int(config["input_size"]), int(config["tokens"])
    grid = math.isqrt(tokens)
    kernel = size // grid
    model_input(path, image)  # validates the image shape
    normed = (image.astype(np.float64) - 127.5) / 127.5
    patches = normed.reshape(grid, kernel, grid, kernel, 3).mean(axis=(1, 3)).reshape(tokens, 3)
    results = []
    for o in range(int(config["outputs"])):
        out = np.tanh(patches @ weights[f"weight_{o}"].astype(np.float64) + weights[f"bias_{o}"])
        results.append((out[None] if config["batch_output"] == "True" else out).astype(np.float32))
    return results


def reference_output(path: Path, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """What an encoder built on this model should hand the LLM: shape (tokens, outputs * dim), float32,
    the outputs concatenated per token in output-index order (the img_vec.bin [token][output][dim] layout)."""
    per_output = [out.reshape(out.shape[-2], out.shape[-1]) for out in reference_outputs(path, image)]
    return np.ascontiguousarray(np.concatenate(per_output, axis=1))
