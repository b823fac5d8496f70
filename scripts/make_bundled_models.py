"""Build the tiny conv network bundled with nn-farm, in every host runtime's format.

    torch module (seeded) -> tiny_convnet.pt   (TorchScript, input shapes in extra file)
                          -> tiny_convnet.onnx (one file, opset 17)
    same weights in Keras -> tiny_convnet.tflite (NHWC input)

The three files compute the same function, so a reader can compare runtimes on
one network. Run from the repository root:

    .venv/bin/python scripts/make_bundled_models.py [--out nn_farm/farm/data]
"""

from __future__ import annotations

import argparse
import json
import pathlib

import torch  # before tensorflow: see nn_farm/_compat.py
import torchvision  # noqa: F401

CHANNELS = (8, 16, 32)
CLASSES = 10
INPUT_NCHW = (1, 3, 32, 32)


class TinyConvNet(torch.nn.Module):
    """Three conv-bn-relu blocks (the second strided), global average pool, fc."""

    def __init__(self) -> None:
        super().__init__()
        layers, cin = [], INPUT_NCHW[1]
        for i, cout in enumerate(CHANNELS):
            layers += [torch.nn.Conv2d(cin, cout, 3, stride=2 if i == 1 else 1, padding=1, bias=False),
                       torch.nn.BatchNorm2d(cout), torch.nn.ReLU()]
            cin = cout
        self.features = torch.nn.Sequential(*layers)
        self.fc = torch.nn.Linear(cin, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def build_torch() -> TinyConvNet:
    torch.manual_seed(0)
    net = TinyConvNet()
    # Non-trivial running statistics, so batch norm is not an identity.
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return net.eval()


def build_keras(net: TinyConvNet):
    """The same network in Keras (NHWC), weights copied from ``net``."""
    from nn_farm._compat import import_tensorflow

    tf = import_tensorflow()
    keras = tf.keras
    n, c, h, w = INPUT_NCHW
    inp = keras.Input((h, w, c), batch_size=n, name="input")
    x = inp
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in net.features if isinstance(m, torch.nn.BatchNorm2d)]
    for conv, bn in zip(convs, bns):
        # padding="same" with stride 2 pads bottom/right only; explicit padding matches torch.
        x = keras.layers.ZeroPadding2D(1)(x)
        k_conv = keras.layers.Conv2D(conv.out_channels, 3, strides=conv.stride, use_bias=False)
        x = k_conv(x)
        k_conv.set_weights([conv.weight.detach().permute(2, 3, 1, 0).numpy()])
        k_bn = keras.layers.BatchNormalization(epsilon=bn.eps)
        x = k_bn(x)
        k_bn.set_weights([t.detach().numpy() for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var)])
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    k_fc = keras.layers.Dense(CLASSES)
    x = k_fc(x)
    k_fc.set_weights([net.fc.weight.detach().T.numpy(), net.fc.bias.detach().numpy()])
    return tf, keras.Model(inp, x)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parents[1] / "nn_farm/farm/data"))
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    net = build_torch()
    example = torch.randn(INPUT_NCHW)
    inputs = [{"name": "input", "shape": list(INPUT_NCHW), "dtype": "float32"}]
    scripted = torch.jit.trace(net, example)
    torch.jit.save(scripted, str(out / "tiny_convnet.pt"), _extra_files={"inputs.json": json.dumps(inputs)})
    torch.onnx.export(net, (example,), str(out / "tiny_convnet.onnx"), input_names=["input"],
                      output_names=["logits"], opset_version=17, dynamo=False)

    tf, model = build_keras(net)
    tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    (out / "tiny_convnet.tflite").write_bytes(tflite)

    # The formats must agree, or the bundled files are not one network.
    with torch.no_grad():
        want = net(example).numpy()
    got = model(example.permute(0, 2, 3, 1).numpy()).numpy()
    err = float(abs(want - got).max())
    if err > 1e-3:
        raise SystemExit(f"keras copy differs from torch by {err}")
    for p in sorted(out.glob("tiny_convnet.*")):
        print(f"{p}  {p.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
