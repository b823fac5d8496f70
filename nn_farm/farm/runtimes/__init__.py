"""Host runtimes: load a model file and run one inference at a time.

    get_runtime("onnxruntime").load("m.onnx", inputs, options) -> Session
    nn_farm.farm.measure.measure_session(session, policy)       -> Measurement

The real runtimes are in :data:`RUNTIME_NAMES`. ``get_runtime("simulated")``
returns a clearly named fake that sleeps, for farm-scaling benchmarks only.
Nothing heavy is imported here: each runtime imports its library on first use.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import zipfile

from nn_farm.errors import DeviceUnavailable, InvalidModel
from nn_farm.farm.runtimes.base import Runtime, RuntimeStatus, Session

RUNTIME_NAMES = ("litert", "onnxruntime", "openvino", "torch")

_CLASSES = {
    "litert": "nn_farm.farm.runtimes.litert:LiteRTRuntime",
    "onnxruntime": "nn_farm.farm.runtimes.onnx_runtime:OnnxRuntime",
    "openvino": "nn_farm.farm.runtimes.openvino_runtime:OpenVINORuntime",
    "torch": "nn_farm.farm.runtimes.torch_runtime:TorchRuntime",
    "simulated": "nn_farm.farm.runtimes.simulated:SimulatedRuntime",
}

_EXTENSIONS = {".tflite": "tflite", ".onnx": "onnx", ".xml": "xml", ".pt": "pt", ".pth": "pt",
               ".pt2": "pt2", ".json": "json"}
FORMATS = ("tflite", "onnx", "xml", "pt", "pt2", "json")

_DATA = pathlib.Path(__file__).resolve().parent.parent / "data"
_BUNDLED = {"litert": "tiny_convnet.tflite", "onnxruntime": "tiny_convnet.onnx",
            "openvino": "tiny_convnet.onnx", "torch": "tiny_convnet.pt"}


def get_runtime(name: str) -> Runtime:
    """The runtime called ``name``.

    Args:
        name: one of :data:`RUNTIME_NAMES`, or "simulated".

    Returns:
        A Runtime (its library is not imported yet).

    Raises:
        DeviceUnavailable: no runtime has that name.

    Example:
        >>> get_runtime("onnxruntime").formats
        ('onnx',)
    """
    if name not in _CLASSES:
        raise DeviceUnavailable(f"unknown runtime {name!r}; known runtimes: {list(RUNTIME_NAMES)} "
                                f"(and 'simulated' for scaling benchmarks)")
    module, cls = _CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def format_of(path_or_name: str) -> str:
    """The model format of a file, from its extension or, failing that, its bytes.

    Args:
        path_or_name: a file path, a file name, or a format name itself.

    Returns:
        "tflite", "onnx", "xml" (OpenVINO IR), "pt" (TorchScript), "pt2"
        (torch.export) or "json" (simulated model).

    Raises:
        InvalidModel: the format cannot be told.
    """
    text = os.fspath(path_or_name)
    if text in FORMATS:
        return text
    ext = os.path.splitext(text)[1].lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    fmt = _sniff(text) if os.path.isfile(text) else None
    if fmt is None:
        raise InvalidModel(f"{text}: cannot tell the model format; use one of the extensions "
                           f"{sorted(_EXTENSIONS)}")
    return fmt


def _sniff(path: str) -> str | None:
    # For files stored without an extension (e.g. under their digest).
    with open(path, "rb") as f:
        head = f.read(16)
    if head[4:8] == b"TFL3":
        return "tflite"
    if head.lstrip().startswith(b"<"):
        return "xml"
    if head.lstrip().startswith(b"{"):
        return "json"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if any(n.endswith("serialized_exported_program.json") or "/models/" in n for n in names):
            return "pt2"
        return "pt"
    if head[:1] == b"\x08":  # protobuf field 1 (ir_version), varint: an ONNX ModelProto
        return "onnx"
    return None


def bundled_model(runtime_name: str) -> pathlib.Path:
    """The tiny conv network shipped with nn-farm, in ``runtime_name``'s format.

    Args:
        runtime_name: one of :data:`RUNTIME_NAMES`.

    Returns:
        Path of the file (input 1x3x32x32, or 1x32x32x3 for tflite).

    Raises:
        DeviceUnavailable: unknown runtime name.
    """
    if runtime_name not in _BUNDLED:
        raise DeviceUnavailable(f"no bundled model for runtime {runtime_name!r}; "
                                f"known runtimes: {list(RUNTIME_NAMES)}")
    return _DATA / _BUNDLED[runtime_name]


def available_runtimes() -> dict[str, RuntimeStatus]:
    """The status of every real runtime on this host, by name."""
    return {name: get_runtime(name).status() for name in RUNTIME_NAMES}


__all__ = ["RUNTIME_NAMES", "FORMATS", "Runtime", "RuntimeStatus", "Session", "get_runtime",
           "format_of", "bundled_model", "available_runtimes"]
