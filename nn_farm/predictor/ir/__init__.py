"""Models in any of seven forms -> nn-Meter IR graphs (NHWC shapes).

    model_to_ir(model, model_type)                         -> IRGraph
      "onnx"        .onnx file or onnx.ModelProto           onnx_converter
      "torch"       nn.Module + input_shape (NCHW)          torch_converter -> onnx
      "torchvision" model name, weights=None                torch_converter -> onnx
      "tflite"      .tflite file (flatbuffer op graph)      tflite_converter
      "tensorflow"  SavedModel dir or frozen .pb            tf_converter
      "keras"       keras.Model or .keras/.h5 file          tf_converter (layer walk)
      "nnmeter-ir"  IR JSON file or dict                    IRGraph.from_json

Converters import their framework lazily, so importing this package is cheap and
needs neither Ray nor the builder.

Example:
    >>> from nn_farm.predictor.ir import model_to_ir
    >>> ir = model_to_ir("resnet18", "torchvision")
    >>> ir.nodes["Conv_0"]["attr"]["output_shape"]        # doctest: +SKIP
    [[1, 112, 112, 64]]
"""

from __future__ import annotations

import os

from nn_farm.errors import ConversionError
from nn_farm.predictor.ir.graph import IRGraph
from nn_farm.predictor.ir.ops import canonical_op, canonical_type

MODEL_TYPES = ("onnx", "tflite", "tensorflow", "keras", "torch", "torchvision", "nnmeter-ir")

__all__ = ["MODEL_TYPES", "IRGraph", "model_to_ir", "canonical_op", "canonical_type"]


def model_to_ir(model, model_type: str, input_shape: tuple | None = None) -> IRGraph:
    """Convert a model to an nn-Meter IR graph.

    Args:
        model: a path (str / PathLike) or an object: ``onnx.ModelProto``,
            ``keras.Model``, torch ``nn.Module``, a torchvision model name, an IR
            dict or :class:`IRGraph`.
        model_type: one of :data:`MODEL_TYPES`.
        input_shape: NCHW input shape for ``"torch"`` (required) and
            ``"torchvision"`` (default ``(1, 3, 224, 224)``); ignored otherwise.

    Returns:
        The IR graph. Ops not understood are kept as typed nodes and listed in
        ``unknown_ops`` (and logged as a warning).

    Raises:
        ConversionError: unknown ``model_type`` (lists the known ones), or a model
            that cannot be read (names the file and quotes the library's message).
        IRError: an ``"nnmeter-ir"`` graph that is malformed.
    """
    if model_type == "onnx":
        from nn_farm.predictor.ir import onnx_converter

        if isinstance(model, (str, os.PathLike)):
            return onnx_converter.onnx_file_to_ir(model)
        if isinstance(model, (bytes, bytearray)):
            return onnx_converter.onnx_bytes_to_ir(bytes(model))
        return onnx_converter.onnx_model_to_ir(model)
    if model_type == "torchvision":
        from nn_farm.predictor.ir.torch_converter import torchvision_to_ir

        return torchvision_to_ir(model, input_shape)
    if model_type == "torch":
        from nn_farm.predictor.ir.torch_converter import torch_module_to_ir

        return torch_module_to_ir(model, input_shape)
    if model_type == "tflite":
        from nn_farm.predictor.ir.tflite_converter import tflite_to_ir

        return tflite_to_ir(model)
    if model_type == "tensorflow":
        from nn_farm.predictor.ir.tf_converter import tensorflow_to_ir

        return tensorflow_to_ir(model)
    if model_type == "keras":
        from nn_farm.predictor.ir.tf_converter import keras_to_ir

        return keras_to_ir(model)
    if model_type == "nnmeter-ir":
        if isinstance(model, IRGraph):
            return model
        if isinstance(model, dict):
            return IRGraph.from_json(model).validate()
        return IRGraph.load(model).validate()
    raise ConversionError(f"unknown model_type {model_type!r}; expected one of {', '.join(MODEL_TYPES)}")
