"""torch ``nn.Module`` and torchvision model names -> IR, through an in-memory ONNX export.

The module is exported at one input shape (NCHW) with torch's TorchScript-based
exporter (``dynamo=False``): it is several times faster than the dynamo exporter
and its output is what nn-Meter's torch converter saw too. ``eval()`` mode is used,
so BatchNorm is folded into the preceding conv, exactly as a deployed model.
"""

from __future__ import annotations

import io
import warnings

from nn_farm.errors import ConversionError
from nn_farm.predictor.ir.graph import IRGraph

DEFAULT_TORCHVISION_SHAPE = (1, 3, 224, 224)
OPSET = 17


def torch_module_to_ir(module, input_shape: tuple, source: str | None = None) -> IRGraph:
    """Export ``module`` to ONNX in memory at ``input_shape`` (NCHW) and convert.

    Raises:
        ConversionError: no input shape, or the export fails (quotes torch's message).
    """
    import torch

    from nn_farm.predictor.ir.onnx_converter import onnx_bytes_to_ir

    source = source or type(module).__name__
    if input_shape is None:
        raise ConversionError(f"{source}: a torch model needs input_shape (NCHW), e.g. (1, 3, 224, 224)")
    was_training = module.training
    module.eval()
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (torch.zeros(*input_shape),), buf, dynamo=False,
                              opset_version=OPSET, do_constant_folding=True)
    except Exception as exc:  # torch raises many kinds; translate at this one boundary
        raise ConversionError(f"{source}: torch.onnx.export failed at input shape {tuple(input_shape)}: {exc}") from exc
    finally:
        module.train(was_training)
    return onnx_bytes_to_ir(buf.getvalue(), source=source)


def torchvision_to_ir(name: str, input_shape: tuple | None = None) -> IRGraph:
    """Build torchvision model ``name`` with ``weights=None`` and convert it.

    Raises:
        ConversionError: no such torchvision model (lists a few that exist).
    """
    import torchvision

    try:
        model = torchvision.models.get_model(name, weights=None)
    except (ValueError, KeyError) as exc:
        names = torchvision.models.list_models(module=torchvision.models)
        raise ConversionError(f"unknown torchvision model {name!r}; e.g. {', '.join(names[:8])} ...") from exc
    return torch_module_to_ir(model, input_shape or DEFAULT_TORCHVISION_SHAPE, source=f"torchvision:{name}")
