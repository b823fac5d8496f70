"""torch modules that torch.nn lacks, for :mod:`torch_operators` (imports torch)."""

from __future__ import annotations

import torch
from torch import nn


class Add(nn.Module):
    def forward(self, a, b):
        return a + b


class Concat(nn.Module):
    def forward(self, *xs):
        # dim 1 is channels for NCHW and features for [N, F].
        return torch.cat(xs, dim=1)


class Split(nn.Module):
    def __init__(self, sizes: list[int]):
        super().__init__()
        self.sizes = list(sizes)

    def forward(self, x):
        return list(torch.split(x, self.sizes, dim=1))


class Reshape(nn.Module):
    def __init__(self, shape: list[int]):
        super().__init__()
        self.shape = list(shape)

    def forward(self, x):
        return torch.reshape(x, self.shape)


class ChannelShuffle(nn.Module):
    """Two-group shuffle; the same channel order as the Keras NHWC version."""

    def forward(self, x):
        _, c, h, w = x.shape
        x = torch.reshape(x, (1, 2, c // 2, h, w))
        x = torch.transpose(x, 1, 2)
        return torch.reshape(x, (1, c, h, w))


class SE(nn.Module):
    """Squeeze-and-excite with a hard-sigmoid gate, as the Keras SE."""

    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.squeeze = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU()
        self.excite = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        return x * self.gate(self.excite(self.relu(self.squeeze(self.pool(x)))))


class ChannelsLast(nn.Module):
    """Apply ``inner`` on the channel axis of an NCHW tensor (a Dense on [H, W, C])."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def same_padded(make, h: int, w: int, kernel: int, stride: int, pad_value: float | None = None):
    """A window op with TF 'same' padding and TF's output size.

    ``make(padding, ceil_mode)`` builds the op with symmetric ``padding``. TF puts an
    odd padding pixel after (``after == before + 1``), which torch cannot say:

    - pooling (``pad_value`` given), stride >= 2: ``ceil_mode`` adds exactly that
      last window, the same windows as TF;
    - conv, stride >= 2: symmetric padding ``after`` gives TF's output size with the
      windows one pixel up-left of TF's: the same work, so the same latency, and a
      clean ONNX Conv (an explicit pad exports as a chain of shape ops);
    - stride 1 (even kernels only): an explicit pad first.
    """
    from nn_farm.builder.models.base import same_padding

    top, bottom = same_padding(h, kernel, stride)
    left, right = same_padding(w, kernel, stride)
    if top == bottom and left == right:
        return make((top, left), False)
    if stride >= 2:
        if pad_value is not None:
            return make((top, left), True)
        return make((bottom, right), False)
    pad = nn.ConstantPad2d((left, right, top, bottom), pad_value or 0.0)
    return nn.Sequential(pad, make(0, False))


def init_batchnorm(bn: nn.Module) -> nn.Module:
    """Give a BN layer non-trivial statistics, so no converter drops it as identity."""
    with torch.no_grad():
        nn.init.uniform_(bn.weight, 0.5, 1.5)
        nn.init.normal_(bn.bias, 0.0, 0.1)
        bn.running_mean.normal_(0.0, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
    return bn
