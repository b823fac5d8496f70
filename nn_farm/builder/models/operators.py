"""Operator shape declarations, written once for both implementations.

Each class here knows its config keys and output shape; ``keras_operators`` and
``torch_operators`` subclass it and add ``get_model``. Shapes are NHWC without
batch; see :mod:`nn_farm.builder.models.base`.

    name           config keys                     output shape
    conv           KERNEL_SIZE, STRIDES, [COUT]    [ceil(H/s), ceil(W/s), COUT]
    dwconv         KERNEL_SIZE, STRIDES            [ceil(H/s), ceil(W/s), C]
    convtrans      KERNEL_SIZE, STRIDES, [COUT]    [H*s, W*s, COUT]
    maxpool        KERNEL_SIZE, POOL_STRIDES       [ceil(H/p), ceil(W/p), C]
    avgpool        KERNEL_SIZE, POOL_STRIDES       [ceil(H/p), ceil(W/p), C]
    globalavgpool  -                               [C]
    fc             [COUT]                          [..., COUT]
    reshape        [SHAPE_TO]                      SHAPE_TO, else [C, H, W] / [1, 2, N/2]
    concat         - (two or more inputs)          channels summed
    split          [SPLIT_DIM]                     each part: [H, W, C/2] (or SPLIT_DIM)
    flatten        -                               [H*W*C]
    add            - (two inputs)                  unchanged
    relu           [NEGATIVE_SLOPE] (leaky; MON)   unchanged
    bn, relu6, sigmoid, hswish, se, channelshuffle                      unchanged
"""

from __future__ import annotations

import math

from nn_farm.builder.models.base import BaseOperator, same_out
from nn_farm.errors import ConfigError


class Conv(BaseOperator):
    name = "conv"
    input_rank = 3

    def get_output_shape(self):
        h, w, _ = self.first_input_shape
        s = self.strides()
        self.kernel_size()  # fail early, naming the key
        return [same_out(h, s), same_out(w, s), self.cout()]


class DwConv(BaseOperator):
    name = "dwconv"
    input_rank = 3

    def get_output_shape(self):
        h, w, c = self.first_input_shape
        s = self.strides()
        self.kernel_size()
        return [same_out(h, s), same_out(w, s), c]


class ConvTrans(BaseOperator):
    name = "convtrans"
    input_rank = 3

    def get_output_shape(self):
        h, w, _ = self.first_input_shape
        s = self.strides()
        self.kernel_size()
        return [h * s, w * s, self.cout()]


class BN(BaseOperator):
    name = "bn"


class _Pool(BaseOperator):
    input_rank = 3

    def get_output_shape(self):
        h, w, c = self.first_input_shape
        p = self.pool_strides()
        self.kernel_size()
        return [same_out(h, p), same_out(w, p), c]


class MaxPool(_Pool):
    name = "maxpool"


class AvgPool(_Pool):
    name = "avgpool"


class GlobalAvgPool(BaseOperator):
    name = "globalavgpool"
    input_rank = 3

    def get_output_shape(self):
        return [self.first_input_shape[-1]]


class SE(BaseOperator):
    """Squeeze-and-excite: global pool, 1x1 conv to C/4, relu, 1x1 conv to C,
    hard-sigmoid gate, multiply (MobileNetV3's block)."""

    name = "se"
    input_rank = 3


class FC(BaseOperator):
    name = "fc"

    def get_output_shape(self):
        return self.first_input_shape[:-1] + [self.cout()]


class Relu(BaseOperator):
    name = "relu"


class Relu6(BaseOperator):
    name = "relu6"


class Sigmoid(BaseOperator):
    name = "sigmoid"


class Hswish(BaseOperator):
    name = "hswish"


class Swish(BaseOperator):
    name = "swish"


class Reshape(BaseOperator):
    """nn-Meter's reshape: ``SHAPE_TO`` if given, else [H, W, C] -> [C, H, W] and
    [N] -> [1, 2, N/2]."""

    name = "reshape"

    def get_output_shape(self):
        shape = self.first_input_shape
        if self.config.get("SHAPE_TO"):
            target = [int(d) for d in self.config["SHAPE_TO"]]
            if math.prod(target) != math.prod(shape):
                raise ConfigError(f"operator 'reshape': SHAPE_TO {target} does not hold the "
                                  f"{math.prod(shape)} elements of {shape}", key="SHAPE_TO")
            return target
        if len(shape) == 3:
            return [shape[2], shape[0], shape[1]]
        if len(shape) == 1 and shape[0] % 2 == 0:
            return [1, 2, shape[0] // 2]
        raise ConfigError(f"operator 'reshape' has no default target for input {shape}; "
                          "give SHAPE_TO", key="SHAPE_TO")


class Add(BaseOperator):
    name = "add"
    num_inputs = 2

    def _check_input(self):
        super()._check_input()
        shapes = self.get_input_shapes()
        if any(s != shapes[0] for s in shapes):
            raise ConfigError(f"operator 'add' needs equal input shapes, got {shapes}")


class Concat(BaseOperator):
    """Concatenation along channels; one shape means two copies of it (nn-Meter)."""

    name = "concat"
    num_inputs = 2

    def get_input_shapes(self):
        shapes = super().get_input_shapes()
        self.num_inputs = len(shapes)
        return shapes

    def _check_input(self):
        super()._check_input()
        shapes = self.get_input_shapes()
        if any(s[:-1] != shapes[0][:-1] for s in shapes):
            raise ConfigError(f"operator 'concat' needs equal shapes but the channels, got {shapes}")

    def get_output_shape(self):
        shapes = self.get_input_shapes()
        return shapes[0][:-1] + [sum(s[-1] for s in shapes)]


class Flatten(BaseOperator):
    name = "flatten"

    def get_output_shape(self):
        return [math.prod(self.first_input_shape)]


class Split(BaseOperator):
    """Split along channels in two halves, or in ``SPLIT_DIM`` channel sizes.

    ``get_output_shape`` gives the first part (what a following operator sees, as
    in nn-Meter); ``get_output_shapes`` gives every part."""

    name = "split"
    num_outputs = 2
    input_rank = 3

    def __init__(self, input_shape, config=None):
        super().__init__(input_shape, config)
        c = self.first_input_shape[-1]
        dims = self.config.get("SPLIT_DIM")
        if dims:
            self.sizes = [int(d) for d in dims]
            if sum(self.sizes) != c:
                raise ConfigError(f"operator 'split': SPLIT_DIM {self.sizes} does not sum to the "
                                  f"{c} input channels", key="SPLIT_DIM")
        else:
            if c < 2 or c % 2:
                raise ConfigError(f"operator 'split' halves the channels; {c} is not even")
            self.sizes = [c // 2, c // 2]
        self.num_outputs = len(self.sizes)

    def get_output_shapes(self):
        return [self.first_input_shape[:-1] + [d] for d in self.sizes]

    def get_output_shape(self):
        return self.get_output_shapes()[0]


class ChannelShuffle(BaseOperator):
    """ShuffleNet's channel shuffle with two groups: reshape, transpose, reshape."""

    name = "channelshuffle"
    input_rank = 3

    def _check_input(self):
        super()._check_input()
        if self.first_input_shape[-1] % 2:
            raise ConfigError(f"operator 'channelshuffle' needs even channels, "
                              f"got {self.first_input_shape}")


def output_shapes(op: BaseOperator) -> list:
    """Every output shape of an operator (one for all but split)."""
    if hasattr(op, "get_output_shapes"):
        return op.get_output_shapes()
    return [op.get_output_shape()]
