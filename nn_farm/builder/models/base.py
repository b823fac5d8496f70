"""The operator interface shared by the Keras and torch implementations.

An operator is a class built from ``(input_shape, config)`` that declares its output
shape without any framework (``get_output_shape``) and makes one layer or callable in
its framework (``get_model``), as in nn-Meter's builder
(``nn_meter/builder/nn_modules/*_networks/operators.py``).

Shapes are NHWC without the batch dimension for both implementations, as in
nn-Meter's configs: ``[H, W, C]`` for feature maps, ``[N]`` for vectors. The torch
operators work on NCHW tensors internally; :func:`to_torch_shape` and
:func:`from_torch_shape` translate.

Config keys are nn-Meter's: ``HW``, ``CIN``, ``COUT``, ``KERNEL_SIZE``, ``STRIDES``,
``POOL_STRIDES``, ``SHAPE_TO``, ``SPLIT_DIM``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from nn_farm.errors import ConfigError

Shape = list  # [H, W, C] or [N]


class BaseOperator:
    """One operator of a generated model, framework-free apart from ``get_model``.

    Args:
        input_shape: NHWC shape without batch (``[H, W, C]`` or ``[N]``); for
            operators with several inputs, a list of such shapes.
        config: nn-Meter config keys (``KERNEL_SIZE``, ``STRIDES``, ``COUT``, ...).

    Subclasses override :meth:`get_model` (in keras_operators / torch_operators)
    and :meth:`get_output_shape` when the shape changes.
    """

    #: operator name in the registry (set by subclasses)
    name = ""
    #: how many input tensors the layer takes (2 for add and concat)
    num_inputs = 1
    #: how many output tensors the layer returns (2 for split)
    num_outputs = 1
    #: the input rank the operator needs (3 for [H, W, C]); None accepts any
    input_rank: int | None = None

    def __init__(self, input_shape: Sequence, config: Mapping[str, Any] | None = None):
        self.input_shape = _plain_shape(input_shape)
        self.config = dict(config or {})
        self._check_input()

    # ------------------------------------------------------------ the interface

    def get_model(self):
        """Return the framework layer or callable (Keras layer / torch ``nn.Module``)."""
        raise NotImplementedError(f"operator {self.name!r} has no get_model()")

    def get_output_shape(self) -> Shape:
        """Return the output shape (NHWC, no batch); for split, the shape of each part."""
        return list(self.first_input_shape)

    def get_is_two_inputs(self) -> bool:
        """True when the layer takes two tensors (nn-Meter's name for ``num_inputs == 2``)."""
        return self.num_inputs == 2

    def get_input_shapes(self) -> list[Shape]:
        """Return the shapes of every input tensor the layer takes."""
        if self.input_shape and isinstance(self.input_shape[0], list):
            return [list(s) for s in self.input_shape]
        return [list(self.input_shape)] * self.num_inputs

    # ------------------------------------------------------------ helpers

    @property
    def first_input_shape(self) -> Shape:
        return self.get_input_shapes()[0]

    def param(self, key: str, default: Any = None) -> Any:
        """Return ``config[key]`` as an int, or ``default``; a missing key without default
        raises :class:`ConfigError` naming the operator and key."""
        if key not in self.config or self.config[key] is None:
            if default is None:
                raise ConfigError(f"operator {self.name!r} needs config key {key}", key=key)
            return default
        value = self.config[key]
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"operator {self.name!r}: {key} must be an integer, got {value!r}",
                              key=key) from None
        if number <= 0:
            raise ConfigError(f"operator {self.name!r}: {key} must be positive, got {value!r}",
                              key=key)
        return number

    def cout(self) -> int:
        """``COUT`` from the config, else the input channels (nn-Meter's default)."""
        return self.param("COUT", self.first_input_shape[-1])

    def strides(self) -> int:
        return self.param("STRIDES", 1)

    def pool_strides(self) -> int:
        # nn-Meter falls back to STRIDES when POOL_STRIDES is not given.
        return self.param("POOL_STRIDES", self.strides())

    def kernel_size(self) -> int:
        return self.param("KERNEL_SIZE")

    def _check_input(self) -> None:
        for shape in self.get_input_shapes():
            if not shape or any(not isinstance(d, int) or d <= 0 for d in shape):
                raise ConfigError(f"operator {self.name!r}: bad input shape {self.input_shape!r}")
            if self.input_rank is not None and len(shape) != self.input_rank:
                want = "[H, W, C]" if self.input_rank == 3 else f"rank {self.input_rank}"
                raise ConfigError(
                    f"operator {self.name!r} needs a {want} input shape, got {shape!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(input_shape={self.input_shape!r}, config={self.config!r})"


def _plain_shape(shape: Sequence) -> list:
    """Copy a shape (or a list of shapes) into plain lists of ints."""
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        return [_plain_shape(s) for s in shape]
    try:
        return [int(d) for d in shape]
    except (TypeError, ValueError):
        raise ConfigError(f"bad shape {shape!r}: expected a list of positive ints") from None


def same_out(size: int, stride: int) -> int:
    """Output size of a 'same'-padded window op: ceil(size / stride)."""
    return (size - 1) // stride + 1


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF-style 'same' padding (before, after) for one spatial dimension.

    TF puts the odd pixel after; torch's symmetric ``padding=`` cannot, so torch
    operators pad explicitly when the two sides differ.
    """
    total = max((same_out(size, stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def se_channels(channels: int) -> int:
    """Squeeze width of an SE block: a quarter of the channels, at least 1."""
    return max(1, int(math.floor(channels * 0.25)))


def to_torch_shape(shape: Sequence[int]) -> list[int]:
    """NHWC shape without batch -> torch tensor shape with batch 1 (``[1, C, H, W]``)."""
    shape = list(shape)
    if len(shape) == 3:
        return [1, shape[2], shape[0], shape[1]]
    return [1, *shape]


def from_torch_shape(shape: Sequence[int]) -> list[int]:
    """torch tensor shape with batch (``[1, C, H, W]``) -> NHWC shape without batch."""
    shape = list(shape)
    if len(shape) == 4:
        return [shape[2], shape[3], shape[1]]
    return shape[1:]
