"""Generated models -> files a device runtime loads.

    description (kind, name, config, implement)
        --build_model_from--> Keras model | torch module
        --to_tflite / to_onnx / to_openvino_ir--> .tflite | .onnx | .xml + .bin

Every function here is a plain module-level function taking plain, picklable
arguments, so the farm can run :func:`build_and_convert` as a Ray task in a fresh
worker. Formats: ``tflite`` from Keras (``implement="tensorflow"``), ``onnx`` and
``openvino`` from torch. OpenVINO reads ONNX directly, so ``onnx`` files serve the
OpenVINO runtime as they are; ``openvino`` writes IR (``.xml`` + ``.bin``) for
devices that want it.

What the converters fuse (see :func:`model_ops`): the TFLite converter folds BN into
the preceding conv / dwconv and a following relu / relu6 into the conv as its fused
activation, and turns ``x * relu6(x + 3) / 6`` into one HARD_SWISH op; torch's ONNX
exporter folds BN into Conv (constant folding in eval mode) but keeps Relu / Clip /
HardSwish as separate nodes, leaving activation fusion to the runtime.

Files are written atomically (a temporary file renamed into place), so a crashed
conversion never leaves a half-written model that a rerun would take for done.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import numbers
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from nn_farm.errors import BuilderError, ConfigError

KINDS = ("operator", "kernel", "testcase")
FORMATS = {"tflite": "tensorflow", "onnx": "torch", "openvino": "torch"}
ONNX_OPSET = 17
#: Part of every file name's hash: bump it when generated models change, so files
#: made by older code are not reused for new descriptions.
GENERATOR_VERSION = 1


# ------------------------------------------------------------------ describe -> model


def build_model_from(kind: str, name: str, config: Mapping[str, Any], implement: str):
    """Build a generated model from a plain description.

    Args:
        kind: ``"operator"`` (one operator alone; input ``[HW, HW, CIN]``, or
            ``[SHAPE_1D]`` for operators in ``LAYERS_1D``), ``"kernel"`` (a kernel
            type of the predictor's kernel specs) or ``"testcase"`` (``name`` is
            ``"<op1>_<op2>/<model>"`` with model ``block``, ``<op1>`` or ``<op2>``,
            or ``"MON/<model>"``).
        name: operator, kernel type or test-case model name (see ``kind``).
        config: nn-Meter config keys.
        implement: ``"tensorflow"`` or ``"torch"``.

    Returns:
        A Keras model or a torch module.

    Raises:
        ConfigError: unknown kind, bad test-case name, bad or missing config key.
        BuilderError: unknown operator.  UnknownKernelError: unknown kernel type.
    """
    from nn_farm.builder.models import spec as spec_mod
    from nn_farm.builder.models import testcases
    from nn_farm.builder.models.kernels import build_kernel_model

    config = dict(config)
    _activate_customized(kind, name)
    if kind == "kernel":
        return build_kernel_model(name, config, implement)
    if kind == "operator":
        shape = testcases.testcase_input_shape(name, name, config)
        return spec_mod.build_model(testcases.operator_spec(name, shape, config, implement),
                                    implement)
    if kind == "testcase":
        case, _, model = name.partition("/")
        if case == testcases.MON_NAME:
            specs = testcases.mon_specs(config)
        else:
            ops = case.removeprefix("BF_").split("_")
            if len(ops) != 2 or not all(ops):
                raise ConfigError(f"test case {case!r} is not '<op1>_<op2>' or 'MON'")
            specs = testcases.basic_fusion_specs(ops[0], ops[1], config, implement)
        if model not in specs:
            raise ConfigError(f"test case {case!r} has no model {model!r}; "
                              f"it has {sorted(specs)}")
        return spec_mod.build_model(specs[model], implement)
    raise ConfigError(f"unknown model kind {kind!r}; use one of {list(KINDS)}")


def _activate_customized(kind: str, name: str) -> None:
    """Load the user's registered operators and kernels when ``name`` needs one.

    A fresh Ray worker has not imported them; the builder registry knows where
    they live. Built-in names never touch the registry.
    """
    from nn_farm.builder.models.kernels import KERNEL_RECIPES
    from nn_farm.builder.models.registry import BUILTIN_OPERATORS

    if kind == "kernel":
        needed = [name] if name not in KERNEL_RECIPES else []
    else:
        case = name.partition("/")[0].removeprefix("BF_")
        needed = [] if case == "MON" else [op for op in case.split("_")
                                           if op not in BUILTIN_OPERATORS]
    if needed:
        from nn_farm.builder.registry import activate

        activate()


# ------------------------------------------------------------------ converters


def _atomic_write(out_path: str | os.PathLike, write) -> str:
    """Call ``write(tmp_path)`` and rename the result to ``out_path``."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return str(out)


def to_tflite(model, out_path: str | os.PathLike) -> str:
    """Convert a Keras model to a ``.tflite`` file (float32, no quantization).

    Args:
        model: a Keras model, a :class:`~nn_farm.builder.models.spec.ModelSpec`, or a
            description dict ``{"kind", "name", "config"}`` (built with Keras).
        out_path: where to write the file.

    Returns:
        ``out_path`` as a string.

    Raises:
        BuilderError: the converter failed (names the model; nothing is written).
    """
    from nn_farm._compat import import_tensorflow

    model = _as_model(model, "tensorflow")
    tf = import_tensorflow()
    name = getattr(model, "name", type(model).__name__)
    try:
        # The converter prints its SavedModel export to stdout; keep workers quiet.
        with contextlib.redirect_stdout(io.StringIO()):
            flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    except Exception as exc:
        raise BuilderError(f"converting {name!r} to tflite failed: {exc}") from exc
    return _atomic_write(out_path, lambda tmp: Path(tmp).write_bytes(flatbuffer))


def to_onnx(module, input_shapes: Sequence | None, out_path: str | os.PathLike,
            opset: int = ONNX_OPSET) -> str:
    """Export a torch module to one self-contained ``.onnx`` file.

    Args:
        module: a ``torch.nn.Module`` (put in eval mode here), a ModelSpec or a
            description dict (built with torch).
        input_shapes: NHWC shapes without batch (one shape, or a list of them for
            several inputs), as everywhere in the builder; ``None`` takes the
            module's ``input_shapes`` (generated modules carry them). Tensors are fed
            as NCHW with batch 1.
        out_path: where to write the file.
        opset: the ONNX opset.

    Returns:
        ``out_path`` as a string.

    Raises:
        ConfigError: no input shapes.  BuilderError: the exporter failed.
    """
    import torch

    from nn_farm.builder.models.base import to_torch_shape

    module = _as_model(module, "torch")
    shapes = input_shapes if input_shapes is not None else getattr(module, "input_shapes", None)
    if not shapes:
        raise ConfigError("to_onnx needs input_shapes for a module without .input_shapes",
                          key="input_shapes")
    if not isinstance(shapes[0], (list, tuple)):
        shapes = [shapes]
    generator = torch.Generator().manual_seed(0)
    args = tuple(torch.randn(to_torch_shape(s), generator=generator) for s in shapes)
    names = [f"input_{i}" for i in range(len(args))]
    module.eval()

    def export(tmp):
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # The TorchScript exporter takes ~0.1 s per small model where the dynamo
            # one takes seconds; both write one file with constants folded.
            torch.onnx.export(module, args, tmp, input_names=names, opset_version=opset,
                              do_constant_folding=True, dynamo=False)

    try:
        return _atomic_write(out_path, export)
    except Exception as exc:
        name = getattr(module, "spec_name", type(module).__name__)
        raise BuilderError(f"exporting {name!r} to onnx failed: {exc}") from exc


def to_openvino_ir(onnx_path: str | os.PathLike, out_xml: str | os.PathLike) -> str:
    """Convert an ``.onnx`` file to OpenVINO IR (``.xml`` + ``.bin`` beside it), fp32.

    The ``.bin`` is moved into place before the ``.xml``, so an ``.xml`` that exists
    always has its weights.

    Raises:
        BuilderError: OpenVINO could not read or save the model.
    """
    os.environ.setdefault("OPENVINO_TELEMETRY", "0")  # no network here
    out = Path(out_xml)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.stem}.") as tmp:
        try:
            import openvino as ov

            model = ov.convert_model(str(onnx_path))
            # compress_to_fp16 defaults to True; latency models must stay fp32.
            ov.save_model(model, os.path.join(tmp, "model.xml"), compress_to_fp16=False)
        except Exception as exc:
            raise BuilderError(f"converting {onnx_path} to OpenVINO IR failed: {exc}") from exc
        os.replace(os.path.join(tmp, "model.bin"), out.with_suffix(".bin"))
        os.replace(os.path.join(tmp, "model.xml"), out)
    return str(out)


def _as_model(model, implement: str):
    from nn_farm.builder.models.spec import ModelSpec, build_model

    if isinstance(model, ModelSpec):
        return build_model(model, implement)
    if isinstance(model, Mapping):
        return build_model_from(model["kind"], model["name"], model.get("config", {}), implement)
    return model


# ------------------------------------------------------------------ the Ray task


def model_file_name(kind: str, name: str, config: Mapping[str, Any], implement: str,
                    fmt: str, seed: int = 0) -> str:
    """A stable file name for a description: ``<name>_<hash of everything>.<ext>``."""
    key = json.dumps([GENERATOR_VERSION, kind, name, _plain(config), implement, fmt, seed],
                     sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_") or kind
    ext = {"tflite": "tflite", "onnx": "onnx", "openvino": "xml"}[fmt]
    return f"{slug}_{digest}.{ext}"


def _plain(value):
    """Config values as plain Python, so numpy ints hash like ints (8 == np.int64(8))."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return value


def build_and_convert(kind: str, name: str, config: Mapping[str, Any], implement: str,
                      fmt: str, out_dir: str | os.PathLike, *, seed: int = 0,
                      overwrite: bool = False) -> str:
    """Build a model from its description and convert it: what one Ray task runs.

    Weights are seeded, so the same description gives the same file (and sha256)
    on any worker; an existing file is reused unless ``overwrite``.

    Args:
        kind, name, config, implement: see :func:`build_model_from`.
        fmt: ``"tflite"`` (needs implement ``tensorflow``), ``"onnx"`` or
            ``"openvino"`` (need ``torch``).
        out_dir: directory for the file (created if missing).
        seed: weight initialisation seed.
        overwrite: rebuild even when the file exists.

    Returns:
        The path of the model file (``.tflite``, ``.onnx`` or ``.xml``).

    Raises:
        ConfigError: bad kind / format / implement pairing or config.
        BuilderError: building or converting failed (names the model).

    Example:
        >>> build_and_convert("kernel", "conv-bn-relu", {"HW": 8, "CIN": 4, "COUT": 8,
        ...     "KERNEL_SIZE": 3, "STRIDES": 1}, "torch", "onnx", "/tmp/models")
        '/tmp/models/conv-bn-relu_....onnx'
    """
    from nn_farm.builder.models.registry import normalize_implement

    if fmt not in FORMATS:
        raise ConfigError(f"unknown model format {fmt!r}; use one of {list(FORMATS)}", key="fmt")
    implement = normalize_implement(implement)
    if FORMATS[fmt] != implement:
        raise ConfigError(f"format {fmt!r} is made from {FORMATS[fmt]} models, not {implement}",
                          key="IMPLEMENT")
    out = Path(out_dir) / model_file_name(kind, name, config, implement, fmt, seed)
    # An IR's .xml is moved in after its .bin, so the .xml alone proves both are whole.
    if out.exists() and not overwrite:
        return str(out)
    _seed(implement, seed)
    model = build_model_from(kind, name, config, implement)
    if fmt == "tflite":
        return to_tflite(model, out)
    if fmt == "onnx":
        return to_onnx(model, None, out)
    onnx_path = to_onnx(model, None, out.with_suffix(".onnx"))
    try:
        return to_openvino_ir(onnx_path, out)
    finally:
        os.unlink(onnx_path)


def _seed(implement: str, seed: int) -> None:
    if implement == "tensorflow":
        from nn_farm._compat import import_tensorflow

        keras = import_tensorflow().keras
        # Fresh layer-name counters: names go into the flatbuffer, so without this the
        # n-th model built in one worker would differ from the same model built first.
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
    else:
        import torch

        torch.manual_seed(seed)


# ------------------------------------------------------------------ inspection


def model_ops(path: str | os.PathLike) -> list[str]:
    """The operator types in a model file, in graph order, as its runtime sees them.

    ``.tflite``: builtin op names without any delegate (``CONV_2D``, ``HARD_SWISH``);
    ``.onnx``: node op types (``Conv``, ``Relu``). Handy to check what a converter
    fused, independently of latency.

    Raises:
        BuilderError: unreadable file or unknown suffix.
    """
    path = str(path)
    try:
        if path.endswith(".tflite"):
            from ai_edge_litert import interpreter as lite

            interp = lite.Interpreter(
                model_path=path,
                experimental_op_resolver_type=lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            return [op["op_name"] for op in interp._get_ops_details()]
        if path.endswith(".onnx"):
            import onnx

            return [node.op_type for node in onnx.load(path).graph.node]
    except Exception as exc:
        raise BuilderError(f"cannot read model file {path}: {exc}") from exc
    raise BuilderError(f"model_ops reads .tflite and .onnx files, not {path}")


__all__ = [
    "FORMATS",
    "KINDS",
    "build_and_convert",
    "build_model_from",
    "model_file_name",
    "model_ops",
    "to_onnx",
    "to_openvino_ir",
    "to_tflite",
]
