"""Whole models to check a predictor on: keras.applications, torchvision, NAS-sampled MobileNet-style nets.

All are built in Keras with random weights (``weights=None``; latency does not
depend on the values) and converted to ``.tflite`` with
:func:`nn_farm.builder.convert.to_tflite`, inside the Ray tasks of generator jobs,
so conversion runs beside the measuring device. File names carry a hash of the
description, and an existing file is reused.

    zoo_model_job("MobileNetV2", out_dir)      -> Job (generator)
    zoo_model_job("torchvision:resnet18", out_dir)
    nas_network(seed) -> description dict       -> nas_job(description, out_dir) -> Job

The NAS space is MobileNetV3/OFA-like: a stem conv, five to seven stages of
inverted-residual blocks (expansion 3/4/6, kernel 3/5/7, optional squeeze-excite,
ReLU or hard-swish), a 1x1 head conv, global pooling and a classifier, at an input
of 160, 192 or 224 pixels.

torchvision architectures (``"torchvision:resnet18"``) take a longer road: this
environment has no torch -> .tflite converter, so they are exported to ONNX and
rebuilt in Keras with their weights (:mod:`nn_farm.builder.onnx_to_keras`), then
converted like the rest. :func:`zoo_model_job` takes either kind of name.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
import random

__all__ = ["DEMO_MODELS", "BENCHMARK_MODELS", "TORCHVISION", "zoo_model_path", "zoo_model_tflite", "zoo_model_job",
           "keras_app_path", "keras_app_tflite", "torchvision_tflite", "nas_network", "nas_tflite",
           "nas_job"]

#: The prefix of a torchvision architecture's name in a model list.
TORCHVISION = "torchvision:"

# The main job's set: what a phone model zoo holds, and cheap enough to measure in a minute.
DEMO_MODELS = ("MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0",
               "NASNetMobile", "DenseNet121", "ResNet50",
               TORCHVISION + "resnet18", TORCHVISION + "mobilenet_v3_large", TORCHVISION + "shufflenet_v2_x1_0")
# The end-to-end benchmark's real architectures: 16 keras.applications families/sizes and
# 7 torchvision ones.
BENCHMARK_MODELS = DEMO_MODELS + ("EfficientNetB1", "EfficientNetV2B0", "DenseNet169", "ResNet50V2",
                                  "ResNet101", "InceptionV3", "Xception", "MobileNetV2_0.5",
                                  TORCHVISION + "mobilenet_v2", TORCHVISION + "mobilenet_v3_small",
                                  TORCHVISION + "mnasnet1_0", TORCHVISION + "efficientnet_b0")
_VERSION = 2  # bump when the builders below change what they build


def _keras():
    from nn_farm._compat import import_tensorflow

    return import_tensorflow().keras


def _build_keras_app(name: str):
    keras = _keras()
    apps = keras.applications
    alpha = None
    if "_" in name:  # "MobileNetV2_0.5": a width multiplier
        name, alpha = name.split("_", 1)
    try:
        ctor = getattr(apps, name)
    except AttributeError:
        raise ValueError(f"keras.applications has no {name!r}") from None
    size = 299 if name in ("InceptionV3", "Xception") else 224
    # A fixed batch of one: runtimes measure static shapes (keras leaves the batch dynamic).
    kwargs = {"weights": None, "input_tensor": keras.Input((size, size, 3), batch_size=1)}
    if alpha is not None:
        kwargs["alpha"] = float(alpha)
    return ctor(**kwargs)


def keras_app_path(name: str, out_dir: str | os.PathLike) -> str:
    """Where :func:`keras_app_tflite` writes a model."""
    return str(pathlib.Path(out_dir) / f"{name}_v{_VERSION}.tflite")


def keras_app_tflite(name: str, out_dir: str | os.PathLike) -> str:
    """Build a keras.applications model (weights=None) and convert it to ``.tflite``.

    Returns:
        The file path (reused when it exists).
    """
    from nn_farm.builder.convert import to_tflite

    out = pathlib.Path(keras_app_path(name, out_dir))
    if out.exists():
        return str(out)
    keras = _keras()
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    return to_tflite(_build_keras_app(name), out)


def torchvision_tflite(name: str, out_dir: str | os.PathLike) -> str:
    """Build a torchvision architecture (weights=None) through ONNX into Keras and convert
    it to ``.tflite`` (reused when it exists). ``name`` is without the prefix."""
    from nn_farm.builder.convert import to_tflite
    from nn_farm.builder.onnx_to_keras import torchvision_to_keras

    out = pathlib.Path(zoo_model_path(TORCHVISION + name, out_dir))
    if out.exists():
        return str(out)
    import torch  # before tensorflow (nn_farm._compat)

    torch.manual_seed(0)
    _keras().backend.clear_session()
    return to_tflite(torchvision_to_keras(name, 224), out)


def zoo_model_path(name: str, out_dir: str | os.PathLike) -> str:
    """Where :func:`zoo_model_tflite` writes a keras.applications or ``torchvision:`` model."""
    if name.startswith(TORCHVISION):
        return str(pathlib.Path(out_dir) / f"torchvision_{name[len(TORCHVISION):]}_v{_VERSION}.tflite")
    return keras_app_path(name, out_dir)


def zoo_model_tflite(name: str, out_dir: str | os.PathLike) -> str:
    """:func:`torchvision_tflite` for a ``torchvision:`` name, else :func:`keras_app_tflite`."""
    if name.startswith(TORCHVISION):
        return torchvision_tflite(name[len(TORCHVISION):], out_dir)
    return keras_app_tflite(name, out_dir)


def zoo_model_job(name: str, out_dir: str | os.PathLike, *, suffix: str = ""):
    """A generator job measuring one keras.applications or ``torchvision:`` model."""
    from nn_farm.actors.jobs import Job

    return Job(name=pathlib.Path(zoo_model_path(name, ".")).name + suffix,
               generate=functools.partial(zoo_model_tflite, name, str(out_dir)), format="tflite",
               group="real", meta={"model": name})


# ---------------------------------------------------------------- NAS-sampled networks

# (base channels, blocks range, stride) per stage, MobileNetV3-Large-like.
_STAGES = ((24, (1, 3), 2), (40, (2, 4), 2), (80, (2, 4), 2), (112, (1, 4), 1), (160, (2, 4), 2))


def nas_network(seed: int) -> dict:
    """One MobileNet-style architecture drawn from the NAS space (a JSON-able description)."""
    rng = random.Random(seed)
    width = rng.choice((0.75, 1.0, 1.25))
    stages = []
    for base, (lo, hi), stride in _STAGES:
        blocks = []
        for b in range(rng.randint(lo, hi)):
            blocks.append({"e": rng.choice((3, 4, 6)), "k": rng.choice((3, 5, 7)), "se": rng.random() < 0.4,
                           "act": rng.choice(("relu", "hswish")), "s": stride if b == 0 else 1})
        stages.append({"c": max(8, int(round(base * width / 8)) * 8), "blocks": blocks})
    return {"seed": seed, "resolution": rng.choice((160, 192, 224)), "stem": max(8, int(round(16 * width / 8)) * 8),
            "stages": stages, "head": rng.choice((960, 1280))}


def _nas_name(desc: dict) -> str:
    digest = hashlib.sha256(json.dumps([_VERSION, desc], sort_keys=True).encode()).hexdigest()[:10]
    return f"nas{desc['seed']:04d}_{digest}"


def _build_nas(desc: dict):
    keras = _keras()
    layers = keras.layers

    def act(x, kind):
        return layers.ReLU()(x) if kind == "relu" else layers.Activation("hard_swish")(x)

    def conv_bn(x, filters, k=1, s=1, kind=None):
        x = layers.Conv2D(filters, k, s, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return act(x, kind) if kind else x

    inputs = keras.Input((desc["resolution"], desc["resolution"], 3), batch_size=1)
    x = conv_bn(inputs, desc["stem"], 3, 2, "hswish")
    cin = desc["stem"]
    for stage in desc["stages"]:
        for blk in stage["blocks"]:
            y = conv_bn(x, cin * blk["e"], 1, 1, blk["act"])
            y = layers.DepthwiseConv2D(blk["k"], blk["s"], padding="same", use_bias=False)(y)
            y = layers.BatchNormalization()(y)
            y = act(y, blk["act"])
            if blk["se"]:
                mid = max(8, (cin * blk["e"]) // 4)
                s = layers.GlobalAveragePooling2D(keepdims=True)(y)
                s = layers.Conv2D(mid, 1, activation="relu")(s)
                s = layers.Conv2D(cin * blk["e"], 1, activation="hard_sigmoid")(s)
                y = layers.Multiply()([y, s])
            y = conv_bn(y, stage["c"], 1, 1, None)
            x = layers.Add()([x, y]) if blk["s"] == 1 and cin == stage["c"] else y
            cin = stage["c"]
    x = conv_bn(x, desc["head"], 1, 1, "hswish")
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(1000)(x)
    return keras.Model(inputs, x, name=_nas_name(desc))


def nas_tflite(desc: dict, out_dir: str | os.PathLike) -> str:
    """Build one NAS-sampled network and convert it to ``.tflite`` (reused when it exists)."""
    from nn_farm.builder.convert import to_tflite

    out = pathlib.Path(out_dir) / f"{_nas_name(desc)}.tflite"
    if out.exists():
        return str(out)
    keras = _keras()
    keras.backend.clear_session()
    keras.utils.set_random_seed(desc["seed"])
    return to_tflite(_build_nas(desc), out)


def nas_job(desc: dict, out_dir: str | os.PathLike, *, suffix: str = ""):
    """A generator job measuring one NAS-sampled network."""
    from nn_farm.actors.jobs import Job

    return Job(name=f"{_nas_name(desc)}.tflite{suffix}", generate=functools.partial(nas_tflite, desc, str(out_dir)),
               format="tflite", group="nas", meta={"model": _nas_name(desc)})
