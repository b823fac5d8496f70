"""Keras (tf.keras) operators: each ``get_model()`` returns a layer or a callable
that takes one tensor (a list for add and concat) and returns one tensor (a list
for split), for Keras's functional API.

tensorflow is imported inside ``get_model`` through ``nn_farm._compat``, so
importing this module stays cheap and safe next to torch.
"""

from __future__ import annotations

from nn_farm.builder.models import operators as base
from nn_farm.builder.models.base import se_channels


def keras():
    """The Keras module that ships with tensorflow (imported safely, once)."""
    from nn_farm._compat import import_tensorflow

    return import_tensorflow().keras


def _hard_sigmoid(k, x):
    # relu6(x + 3) / 6: the TFLite converter turns x * this into one HARD_SWISH op.
    return k.layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)


class Conv(base.Conv):
    def get_model(self):
        k = keras()
        return k.layers.Conv2D(self.cout(), self.kernel_size(), strides=self.strides(),
                               padding="same")


class DwConv(base.DwConv):
    def get_model(self):
        k = keras()
        return k.layers.DepthwiseConv2D(self.kernel_size(), strides=self.strides(), padding="same")


class ConvTrans(base.ConvTrans):
    def get_model(self):
        k = keras()
        return k.layers.Conv2DTranspose(self.cout(), self.kernel_size(), strides=self.strides(),
                                        padding="same")


class BN(base.BN):
    def get_model(self):
        # Non-trivial statistics (Keras starts at the identity), so the converter
        # cannot drop the offset or the whole layer.
        init = keras().initializers
        return keras().layers.BatchNormalization(
            gamma_initializer=init.RandomUniform(0.5, 1.5),
            beta_initializer=init.RandomNormal(0.0, 0.1),
            moving_mean_initializer=init.RandomNormal(0.0, 0.1),
            moving_variance_initializer=init.RandomUniform(0.5, 1.5))


class MaxPool(base.MaxPool):
    def get_model(self):
        return keras().layers.MaxPool2D(self.kernel_size(), strides=self.pool_strides(),
                                        padding="same")


class AvgPool(base.AvgPool):
    def get_model(self):
        return keras().layers.AveragePooling2D(self.kernel_size(), strides=self.pool_strides(),
                                               padding="same")


class GlobalAvgPool(base.GlobalAvgPool):
    def get_model(self):
        return keras().layers.GlobalAveragePooling2D()


class SE(base.SE):
    def get_model(self):
        k = keras()
        channels = self.first_input_shape[-1]
        pool = k.layers.GlobalAveragePooling2D(keepdims=True)
        squeeze = k.layers.Conv2D(se_channels(channels), 1, padding="same")
        relu = k.layers.ReLU()
        excite = k.layers.Conv2D(channels, 1, padding="same")

        def se(x):
            y = excite(relu(squeeze(pool(x))))
            return x * _hard_sigmoid(k, y)

        return se


class FC(base.FC):
    def get_model(self):
        return keras().layers.Dense(self.cout())


class Relu(base.Relu):
    def get_model(self):
        # NEGATIVE_SLOPE makes a relu that a converter cannot merge with a plain one
        # (nn-Meter's MON test case uses 2).
        return keras().layers.ReLU(negative_slope=float(self.config.get("NEGATIVE_SLOPE", 0.0)))


class Relu6(base.Relu6):
    def get_model(self):
        return keras().layers.ReLU(6.0)


class Sigmoid(base.Sigmoid):
    def get_model(self):
        return keras().layers.Activation("sigmoid")


class Hswish(base.Hswish):
    def get_model(self):
        k = keras()
        return lambda x: x * _hard_sigmoid(k, x)


class Swish(base.Swish):
    def get_model(self):
        return keras().layers.Activation("swish")


class Reshape(base.Reshape):
    def get_model(self):
        return keras().layers.Reshape(self.get_output_shape())


class Add(base.Add):
    def get_model(self):
        return keras().layers.Add()


class Concat(base.Concat):
    def get_model(self):
        return keras().layers.Concatenate(axis=-1)


class Flatten(base.Flatten):
    def get_model(self):
        return keras().layers.Flatten()


class Split(base.Split):
    def get_model(self):
        k = keras()
        cuts, at = [], 0
        for size in self.sizes[:-1]:
            at += size
            cuts.append(at)
        return lambda x: list(k.ops.split(x, cuts, axis=-1))


class ChannelShuffle(base.ChannelShuffle):
    def get_model(self):
        k = keras()
        h, w, c = self.first_input_shape
        layers = [k.layers.Reshape((h, w, 2, c // 2)), k.layers.Permute((1, 2, 4, 3)),
                  k.layers.Reshape((h, w, c))]

        def shuffle(x):
            for layer in layers:
                x = layer(x)
            return x

        return shuffle
