"""Extract layer configs from real model zoos into the prior CSVs nn-farm ships.

    torchvision architectures  --forward hooks + torch.cat interception-->  rows
    keras.applications models  --layer walk over the functional graph--->  rows
    rows  -->  nn_farm/builder/priors/{conv,dwconv,pooling,fc,concat,se}.csv

Every model is built with ``weights=None`` (nothing is downloaded) and run (torch)
or traced (Keras) once at 224x224. The Keras half runs in its own process: a
process that imports tensorflow after triton segfaults (see nn_farm/_compat.py).

The CSV columns follow nn-Meter's prior_config_lib, plus what nn-Meter lacks
(``groups`` for conv, ``type`` for pooling, concat fan-in, SE input sizes):

    conv.csv / dwconv.csv   model,input_h,input_w,cin,cout,ks,stride,groups
    pooling.csv             model,input_h,input_w,cin,cout,ks,stride,type  (max|avg|global_avg)
    fc.csv                  model,cin,cout
    concat.csv              model,input_h,input_w,n,cin1,cin2,cin3,cin4,cin_total
    se.csv                  model,input_h,input_w,cin

Convolutions on a 1x1 feature map inside squeeze-and-excitation blocks are not conv
rows: a device runs them as part of the ``se`` kernel, which gets its own row.
Non-square kernels (rare in these zoos) are skipped and counted.

Run from the repository root (about a minute on this host):

    .venv/bin/python scripts/extract_priors.py [--out nn_farm/builder/priors]
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import subprocess
import sys

TORCH_MODELS = (
    "alexnet", "vgg16", "squeezenet1_0", "squeezenet1_1", "googlenet",
    "resnet18", "resnet34", "resnet50", "resnext50_32x4d", "densenet121",
    "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "mnasnet0_5", "mnasnet1_0",
    "efficientnet_b0", "efficientnet_b1", "regnet_x_400mf", "regnet_y_400mf",
)
KERAS_MODELS = (
    "MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "NASNetMobile",
    "EfficientNetB0", "DenseNet121", "ResNet50", "Xception",
)
COLUMNS = {
    "conv": ("model", "input_h", "input_w", "cin", "cout", "ks", "stride", "groups"),
    "dwconv": ("model", "input_h", "input_w", "cin", "cout", "ks", "stride", "groups"),
    "pooling": ("model", "input_h", "input_w", "cin", "cout", "ks", "stride", "type"),
    "fc": ("model", "cin", "cout"),
    "concat": ("model", "input_h", "input_w", "n", "cin1", "cin2", "cin3", "cin4", "cin_total"),
    "se": ("model", "input_h", "input_w", "cin"),
}
INPUT_HW = 224


def _emit(family: str, **row) -> None:
    # One JSON object per line on stdout: the parent process collects them.
    print(json.dumps({"family": family, **row}), flush=True)


def _conv_row(family, model, h, w, cin, cout, ks, stride, groups):
    _emit(family, model=model, input_h=h, input_w=w, cin=cin, cout=cout, ks=ks,
          stride=stride, groups=groups)


def _concat_row(model, h, w, channels):
    padded = list(channels[:4]) + [0] * (4 - min(len(channels), 4))
    _emit("concat", model=model, input_h=h, input_w=w, n=len(channels),
          cin1=padded[0], cin2=padded[1], cin3=padded[2], cin4=padded[3],
          cin_total=sum(channels))


# ---------------------------------------------------------------- torchvision


def extract_torch(names) -> None:
    import torch
    import torchvision
    from torch.overrides import TorchFunctionMode
    from torchvision.ops.misc import SqueezeExcitation
    from tqdm import tqdm

    skipped = 0

    def pair(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    class CatRecorder(TorchFunctionMode):
        """Sees every torch.cat: concat is a function call, not a module to hook."""

        def __init__(self, model_name):
            super().__init__()
            self.model_name = model_name

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in (torch.cat, torch.concat):
                tensors = args[0] if args else kwargs.get("tensors")
                dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
                if tensors and all(t.dim() == 4 for t in tensors) and dim in (1, -3) and len(tensors) > 1:
                    _, _, h, w = tensors[0].shape
                    _concat_row(self.model_name, int(h), int(w), [int(t.shape[1]) for t in tensors])
            return func(*args, **kwargs)

    for name in tqdm(names, desc="torchvision", unit="model", file=sys.stderr):
        model = getattr(torchvision.models, name)(weights=None).eval()
        se_members = set()
        for module in model.modules():
            if isinstance(module, SqueezeExcitation):
                se_members.update(id(m) for m in module.modules())

        def hook(module, inputs, output, name=name):
            nonlocal skipped
            x = inputs[0]
            if isinstance(module, SqueezeExcitation):
                _, c, h, w = x.shape
                _emit("se", model=name, input_h=int(h), input_w=int(w), cin=int(c))
                return
            if id(module) in se_members:
                return
            if isinstance(module, torch.nn.Conv2d):
                _, c, h, w = x.shape
                kh, kw = pair(module.kernel_size)
                if kh != kw:
                    skipped += 1
                    return
                depthwise = module.groups == module.in_channels and module.groups > 1
                _conv_row("dwconv" if depthwise else "conv", name, int(h), int(w), int(c),
                          module.out_channels, kh, pair(module.stride)[0], module.groups)
            elif isinstance(module, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)):
                _, c, h, w = x.shape
                ks = pair(module.kernel_size)[0]
                stride = pair(module.stride if module.stride is not None else module.kernel_size)[0]
                kind = "max" if isinstance(module, torch.nn.MaxPool2d) else "avg"
                _emit("pooling", model=name, input_h=int(h), input_w=int(w), cin=int(c),
                      cout=int(c), ks=ks, stride=stride, type=kind)
            elif isinstance(module, torch.nn.AdaptiveAvgPool2d):
                _, c, h, w = x.shape
                if pair(module.output_size) == (1, 1):
                    _emit("pooling", model=name, input_h=int(h), input_w=int(w), cin=int(c),
                          cout=int(c), ks=int(h), stride=1, type="global_avg")
            elif isinstance(module, torch.nn.Linear):
                _emit("fc", model=name, cin=module.in_features, cout=module.out_features)

        handles = [m.register_forward_hook(hook) for m in model.modules()]
        with torch.no_grad(), CatRecorder(name):
            model(torch.zeros(1, 3, INPUT_HW, INPUT_HW))
        for handle in handles:
            handle.remove()
    print(f"torchvision: skipped {skipped} non-square convolutions", file=sys.stderr)


# ---------------------------------------------------------------- keras.applications


def extract_keras(names) -> None:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from nn_farm._compat import import_tensorflow
    from tqdm import tqdm

    tf = import_tensorflow()
    keras = tf.keras
    layers = keras.layers

    def shape_of(tensor):
        return tuple(tensor.shape)

    def source_layer(tensor):
        history = getattr(tensor, "_keras_history", None)
        return history.operation if history is not None else None

    def unpadded_input(layer):
        """The feature map before an explicit ZeroPadding2D: Keras spells 'same' that way."""
        x = layer.input
        src = source_layer(x)
        if isinstance(src, layers.ZeroPadding2D):
            x = src.input
        return shape_of(x)

    skipped = 0
    for name in tqdm(names, desc="keras.applications", unit="model", file=sys.stderr):
        model = getattr(keras.applications, name)(weights=None, input_shape=(INPUT_HW, INPUT_HW, 3))
        for layer in model.layers:
            if isinstance(layer, layers.Multiply):
                shapes = [shape_of(t) for t in layer.input]
                gates = [s for s in shapes if s[1] == 1 and s[2] == 1]
                maps = [s for s in shapes if s[1] != 1 or s[2] != 1]
                if gates and maps:
                    _, h, w, c = maps[0]
                    _emit("se", model=name, input_h=h, input_w=w, cin=c)
            elif isinstance(layer, (layers.DepthwiseConv2D, layers.SeparableConv2D)):
                _, h, w, c = unpadded_input(layer)
                kh, kw = layer.kernel_size
                if kh != kw:
                    skipped += 1
                    continue
                mult = layer.depth_multiplier
                _conv_row("dwconv", name, h, w, c, c * mult, kh, layer.strides[0], c)
                if isinstance(layer, layers.SeparableConv2D):
                    ho = shape_of(layer.output)[1]
                    wo = shape_of(layer.output)[2]
                    _conv_row("conv", name, ho, wo, c * mult, layer.filters, 1, 1, 1)
            elif isinstance(layer, layers.Conv2D) and not isinstance(layer, layers.Conv2DTranspose):
                _, h, w, c = unpadded_input(layer)
                if h == 1 and w == 1:
                    continue  # squeeze-and-excitation internals: counted as the se row
                kh, kw = layer.kernel_size
                if kh != kw:
                    skipped += 1
                    continue
                _conv_row("conv", name, h, w, c, layer.filters, kh, layer.strides[0], layer.groups)
            elif isinstance(layer, (layers.MaxPooling2D, layers.AveragePooling2D)):
                _, h, w, c = unpadded_input(layer)
                kind = "max" if isinstance(layer, layers.MaxPooling2D) else "avg"
                _emit("pooling", model=name, input_h=h, input_w=w, cin=c, cout=c,
                      ks=layer.pool_size[0], stride=layer.strides[0], type=kind)
            elif isinstance(layer, layers.GlobalAveragePooling2D):
                _, h, w, c = shape_of(layer.input)
                _emit("pooling", model=name, input_h=h, input_w=w, cin=c, cout=c, ks=h,
                      stride=1, type="global_avg")
            elif isinstance(layer, layers.Dense):
                _emit("fc", model=name, cin=shape_of(layer.input)[-1], cout=layer.units)
            elif isinstance(layer, layers.Concatenate):
                shapes = [shape_of(t) for t in layer.input]
                if all(len(s) == 4 for s in shapes) and layer.axis in (-1, 3):
                    _concat_row(name, shapes[0][1], shapes[0][2], [s[3] for s in shapes])
        keras.backend.clear_session()
    print(f"keras: skipped {skipped} non-square convolutions", file=sys.stderr)


# ---------------------------------------------------------------- driver


def _collect(framework: str, names) -> list[dict]:
    """Run one framework's extraction in a child process and read its rows."""
    cmd = [sys.executable, __file__, "--framework", framework, "--models", *names]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{framework} extraction failed (exit {proc.returncode})")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def write_csvs(rows: list[dict], out: pathlib.Path) -> dict[str, int]:
    """Write one CSV per family; returns the row count per family."""
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for family, columns in COLUMNS.items():
        selected = [r for r in rows if r["family"] == family]
        with open(out / f"{family}.csv", "w", newline="") as fp:
            writer = csv.DictWriter(fp, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(selected)
        counts[family] = len(selected)
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path(__file__).resolve().parents[1] / "nn_farm/builder/priors")
    parser.add_argument("--framework", choices=("torch", "keras"),
                        help="internal: extract one framework and print rows as JSON lines")
    parser.add_argument("--models", nargs="+", help="override the model list of --framework")
    args = parser.parse_args(argv)

    if args.framework == "torch":
        extract_torch(args.models or TORCH_MODELS)
        return 0
    if args.framework == "keras":
        extract_keras(args.models or KERAS_MODELS)
        return 0
    rows = _collect("torch", TORCH_MODELS) + _collect("keras", KERAS_MODELS)
    counts = write_csvs(rows, args.out)
    print(json.dumps({"out": str(args.out), "rows": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
