"""torch operators: each ``get_model()`` returns an ``nn.Module`` on NCHW tensors
(``[1, N]`` for vectors) whose output, read back as NHWC, has the declared shape.

Two-input modules take two positional tensors; split returns a list. torch is
imported inside ``get_model``, so importing this module stays cheap.
"""

from __future__ import annotations

from nn_farm.builder.models import operators as base
from nn_farm.builder.models.base import se_channels, to_torch_shape


def _nn():
    from torch import nn

    return nn


def _layers():
    from nn_farm.builder.models import _torch_layers

    return _torch_layers


class Conv(base.Conv):
    def get_model(self):
        nn, h, w, cin = _nn(), *self.first_input_shape
        k, s = self.kernel_size(), self.strides()
        return _layers().same_padded(lambda p, _: nn.Conv2d(cin, self.cout(), k, s, padding=p),
                                     h, w, k, s)


class DwConv(base.DwConv):
    def get_model(self):
        nn, h, w, c = _nn(), *self.first_input_shape
        k, s = self.kernel_size(), self.strides()
        return _layers().same_padded(lambda p, _: nn.Conv2d(c, c, k, s, padding=p, groups=c),
                                     h, w, k, s)


class ConvTrans(base.ConvTrans):
    def get_model(self):
        nn, cin = _nn(), self.first_input_shape[-1]
        k, s = self.kernel_size(), self.strides()
        # Keras 'same' gives H * s: choose padding p and output_padding op with
        # (H - 1) * s - 2p + k + op == H * s and 0 <= op < s.
        p = max(0, -(-(k - s) // 2))
        return nn.ConvTranspose2d(cin, self.cout(), k, s, padding=p, output_padding=s - k + 2 * p)


class BN(base.BN):
    def get_model(self):
        nn, shape = _nn(), self.first_input_shape
        if len(shape) == 3:
            return _layers().init_batchnorm(nn.BatchNorm2d(shape[-1]))
        # [N] -> tensor [1, N]; [A, B] -> tensor [1, A, B]: BatchNorm1d fits both.
        return _layers().init_batchnorm(nn.BatchNorm1d(shape[0]))


class MaxPool(base.MaxPool):
    def get_model(self):
        nn, (h, w, _) = _nn(), self.first_input_shape
        k, s = self.kernel_size(), self.pool_strides()
        return _layers().same_padded(lambda p, ceil: nn.MaxPool2d(k, s, padding=p, ceil_mode=ceil),
                                     h, w, k, s, pad_value=float("-inf"))


class AvgPool(base.AvgPool):
    def get_model(self):
        nn, (h, w, _) = _nn(), self.first_input_shape
        k, s = self.kernel_size(), self.pool_strides()
        # Padding never counts, as in TF. (With stride 1 and an even kernel an explicit
        # zero pad runs first, and the border windows average those zeros too.)
        return _layers().same_padded(
            lambda p, ceil: nn.AvgPool2d(k, s, padding=p, ceil_mode=ceil, count_include_pad=False),
            h, w, k, s, pad_value=0.0)


class GlobalAvgPool(base.GlobalAvgPool):
    def get_model(self):
        nn = _nn()
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())


class SE(base.SE):
    def get_model(self):
        c = self.first_input_shape[-1]
        return _layers().SE(c, se_channels(c))


class FC(base.FC):
    def get_model(self):
        nn, shape = _nn(), self.first_input_shape
        linear = nn.Linear(shape[-1], self.cout())
        return _layers().ChannelsLast(linear) if len(shape) == 3 else linear


class Relu(base.Relu):
    def get_model(self):
        slope = float(self.config.get("NEGATIVE_SLOPE", 0.0))
        return _nn().LeakyReLU(slope) if slope else _nn().ReLU()


class Relu6(base.Relu6):
    def get_model(self):
        return _nn().ReLU6()


class Sigmoid(base.Sigmoid):
    def get_model(self):
        return _nn().Sigmoid()


class Hswish(base.Hswish):
    def get_model(self):
        return _nn().Hardswish()


class Swish(base.Swish):
    def get_model(self):
        return _nn().SiLU()


class Reshape(base.Reshape):
    def get_model(self):
        return _layers().Reshape(to_torch_shape(self.get_output_shape()))


class Add(base.Add):
    def get_model(self):
        return _layers().Add()


class Concat(base.Concat):
    def get_model(self):
        return _layers().Concat()


class Flatten(base.Flatten):
    def get_model(self):
        return _nn().Flatten()


class Split(base.Split):
    def get_model(self):
        return _layers().Split(self.sizes)


class ChannelShuffle(base.ChannelShuffle):
    def get_model(self):
        return _layers().ChannelShuffle()
