"""`nn-farm predict`, `get_ir`, `register`, `unregister` and `--list-predictors`.

nn-Meter's command line, on nn-farm's predictor packages:

    nn-farm --list-predictors
    nn-farm register --predictor meta.yaml|PACKAGE_DIR [--overwrite]
    nn-farm unregister --predictor NAME [--predictor-version V]
    nn-farm predict --predictor NAME [--predictor-version V] --onnx FILE_OR_DIR [--json]
    nn-farm predict --predictor NAME --torchvision resnet18 mobilenet_v2
    nn-farm get_ir --onnx model.onnx -o model_ir.json

``register`` / ``unregister`` handle predictors here; other layers add what they
register (the builder: ``--kernel``, ``--backend``, ...) through
:func:`add_registry_kind`, without editing this module.

Nothing heavy is imported at module import: converters load inside the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["register", "global_flags", "run_global", "add_registry_kind"]

# --source flag -> (model_type, file patterns when given a directory)
_SOURCES = {
    "onnx": ("onnx", ("*.onnx",)),
    "tensorflow": ("tensorflow", ("*.pb", "*.keras", "*.h5")),
    "tflite": ("tflite", ("*.tflite",)),
    "nn_meter_ir": ("nnmeter-ir", ("*.json",)),
    "kernels": ("kernels", ("*.json",)),
}


# ------------------------------------------------------------------ registry hook


@dataclass(frozen=True)
class _RegistryKind:
    flag: str
    dest: str
    metavar: str
    help: str
    on_register: Callable[[str, argparse.Namespace], str] | None
    on_unregister: Callable[[str, argparse.Namespace], str] | None
    unregister_nargs: int | str | None
    unregister_metavar: str | tuple[str, ...] | None


_KINDS: dict[str, _RegistryKind] = {}
_GROUPS: dict[str, argparse._MutuallyExclusiveGroup] = {}


def add_registry_kind(
    flag: str,
    *,
    help: str,
    on_register: Callable[[str, argparse.Namespace], str] | None = None,
    on_unregister: Callable[[str, argparse.Namespace], str] | None = None,
    metavar: str = "VALUE",
    unregister_nargs: int | str | None = None,
    unregister_metavar: str | tuple[str, ...] | None = None,
) -> None:
    """Let another layer register / unregister its own things via the same commands.

    Adds ``flag`` to ``nn-farm register`` and/or ``nn-farm unregister`` as an
    alternative to ``--predictor``. Call it from your ``cli.register(subparsers)``
    (it runs after this module's) or at import time; both work.

    Args:
        flag: the option, e.g. ``"--kernel"``.
        help: its help text.
        on_register: ``f(value, args) -> message`` run by ``nn-farm register FLAG value``.
        on_unregister: ``f(value, args) -> message`` run by ``nn-farm unregister FLAG value``.
        metavar: shown in the usage line.
        unregister_nargs: argparse ``nargs`` for ``unregister FLAG`` when it takes
            more than one value (nn-Meter's ``unregister --operator NAME IMPLEMENT``);
            the handler then gets a list.
        unregister_metavar: metavar (or tuple of them) for that form.

    Raises:
        ValueError: ``flag`` is taken.

    Example:
        >>> from nn_farm.predictor import cli as predictor_cli           # doctest: +SKIP
        >>> predictor_cli.add_registry_kind(                              # doctest: +SKIP
        ...     "--kernel", help="a kernel meta yaml",
        ...     on_register=register_kernel, on_unregister=unregister_kernel)
    """
    dest = flag.lstrip("-").replace("-", "_")
    if dest in _KINDS or dest == "predictor":
        raise ValueError(f"registry flag {flag} is taken")
    kind = _RegistryKind(flag, dest, metavar, help, on_register, on_unregister,
                         unregister_nargs, unregister_metavar)
    _KINDS[dest] = kind
    _add_kind_arguments(kind)


def _add_kind_arguments(kind: _RegistryKind) -> None:
    group = _GROUPS.get("register")
    if kind.on_register is not None and group is not None:
        group.add_argument(kind.flag, dest=kind.dest, metavar=kind.metavar, help=kind.help)
    group = _GROUPS.get("unregister")
    if kind.on_unregister is not None and group is not None:
        group.add_argument(kind.flag, dest=kind.dest, nargs=kind.unregister_nargs,
                           metavar=kind.unregister_metavar or kind.metavar, help=kind.help)


# ------------------------------------------------------------------ parsers


def global_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--list-predictors", action="store_true",
                        help="list the registered latency predictors and exit")


def run_global(args: argparse.Namespace) -> int | None:
    if not getattr(args, "list_predictors", False):
        return None
    from nn_farm.predictor.registry import list_predictors, registry_dir

    entries = list_predictors()
    if not entries:
        print(f"no predictors registered in {registry_dir()}")
        return 0
    _print_table(
        ["name", "version", "device", "runtime", "kernels", "created"],
        [[e["name"], e["version"], e["device"],
          f"{e['runtime']} {e['runtime_version']}".strip(), str(len(e["kernels"])),
          e["created"]] for e in entries],
    )
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="predict model latency with a registered predictor",
        description="Predict the latency (ms) of models with a latency predictor.")
    p.add_argument("--predictor", required=True, metavar="NAME",
                   help="registered predictor name, or a package directory / nn-Meter meta yaml")
    p.add_argument("--predictor-version", metavar="V", help="version (default: latest)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--onnx", metavar="FILE_OR_DIR", help=".onnx file or a directory of them")
    src.add_argument("--tensorflow", metavar="FILE_OR_DIR",
                     help="frozen .pb, Keras file or SavedModel dir, or a directory of them")
    src.add_argument("--tflite", metavar="FILE_OR_DIR", help=".tflite file or a directory of them")
    src.add_argument("--nn-meter-ir", dest="nn_meter_ir", metavar="FILE_OR_DIR",
                     help="nn-Meter IR graph .json or a directory of them")
    src.add_argument("--kernels", metavar="FILE_OR_DIR",
                     help="kernel-unit list .json (kernel-detector output) or a directory")
    src.add_argument("--torchvision", nargs="+", metavar="NAME",
                     help="torchvision model names (weights=None)")
    p.add_argument("--input-shape", metavar="N,C,H,W", type=_shape,
                   help="input shape for torchvision models (default 1,3,224,224)")
    p.add_argument("--detail", action="store_true", help="print the per-kernel breakdown")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--strict", action="store_true",
                   help="fail on kernels the predictor cannot price instead of warning")
    p.set_defaults(func=_cmd_predict)

    g = subparsers.add_parser(
        "get_ir", help="convert a model file to nn-Meter IR graph JSON",
        description="Convert a model to an nn-Meter-compatible IR graph (JSON).")
    gsrc = g.add_mutually_exclusive_group(required=True)
    gsrc.add_argument("--onnx", metavar="FILE")
    gsrc.add_argument("--tensorflow", metavar="FILE")
    gsrc.add_argument("--tflite", metavar="FILE")
    g.add_argument("-o", "--output", metavar="OUT", help="write here (default: stdout)")
    g.set_defaults(func=_cmd_get_ir)

    r = subparsers.add_parser("register", help="register a predictor (or a builder kind)")
    rg = r.add_mutually_exclusive_group(required=True)
    rg.add_argument("--predictor", metavar="META_YAML_OR_DIR",
                    help="nn-Meter predictor meta yaml, or an nn-farm package directory")
    r.add_argument("--overwrite", action="store_true",
                   help="replace an already registered name and version")
    r.set_defaults(func=_cmd_register)

    u = subparsers.add_parser("unregister", help="unregister a predictor (or a builder kind)")
    ug = u.add_mutually_exclusive_group(required=True)
    ug.add_argument("--predictor", metavar="NAME", help="registered predictor name")
    u.add_argument("--predictor-version", metavar="V", help="only this version (default: all)")
    u.set_defaults(func=_cmd_unregister)

    _GROUPS.update(register=rg, unregister=ug)
    for kind in _KINDS.values():
        _add_kind_arguments(kind)


def _shape(text: str) -> list[int]:
    try:
        shape = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a shape: {text!r} (want e.g. 1,3,224,224)")
    if not shape or any(v <= 0 for v in shape):
        raise argparse.ArgumentTypeError(f"not a shape: {text!r} (want e.g. 1,3,224,224)")
    return shape


# ------------------------------------------------------------------ commands


def _cmd_register(args) -> int:
    for kind in _KINDS.values():
        value = getattr(args, kind.dest, None)
        if value is not None:
            print(kind.on_register(value, args))
            return 0
    from nn_farm.predictor.registry import register_predictor

    entry = register_predictor(args.predictor, overwrite=args.overwrite)
    print(f"registered predictor {entry['name']} {entry['version']} "
          f"({len(entry['kernels'])} kernels) at {entry['path']}")
    return 0


def _cmd_unregister(args) -> int:
    for kind in _KINDS.values():
        value = getattr(args, kind.dest, None)
        if value is not None:
            print(kind.on_unregister(value, args))
            return 0
    from nn_farm.predictor.registry import unregister_predictor

    removed = unregister_predictor(args.predictor, args.predictor_version)
    print(f"unregistered predictor {args.predictor} version(s) {', '.join(removed)}")
    return 0


def _model_files(path: Path, patterns: tuple[str, ...], model_type: str) -> list[Path]:
    from nn_farm.errors import PredictorNotFound

    if not path.exists():
        raise PredictorNotFound(f"{path} does not exist")
    if path.is_file() or (model_type == "tensorflow" and (path / "saved_model.pb").is_file()):
        return [path]
    files = sorted({f for pattern in patterns for f in path.glob(pattern)})
    if model_type == "tensorflow":  # SavedModel directories one level down
        files += sorted(d for d in path.iterdir() if (d / "saved_model.pb").is_file())
    if not files:
        raise PredictorNotFound(f"no {' / '.join(patterns)} models in {path}")
    return files


def _inputs(args) -> list[tuple[str, object, str]]:
    """(label, model, model_type) for every model the command names."""
    if args.torchvision:
        return [(name, name, "torchvision") for name in args.torchvision]
    for dest, (model_type, patterns) in _SOURCES.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        items = []
        for f in _model_files(Path(value), patterns, model_type):
            kind = "keras" if f.suffix in (".keras", ".h5") else model_type
            if kind == "kernels":
                items.append((str(f), json.loads(f.read_text()), kind))
            else:
                items.append((str(f), str(f), kind))
        return items
    raise AssertionError("argparse requires one model source")  # pragma: no cover


def _cmd_predict(args) -> int:
    from tqdm import tqdm

    from nn_farm.errors import NNFarmError
    from nn_farm.predictor.latency_predictor import UnknownKernelWarning
    from nn_farm.predictor.registry import load_latency_predictor

    predictor = load_latency_predictor(args.predictor, args.predictor_version,
                                       on_unknown="raise" if args.strict else "ignore")
    inputs = _inputs(args)
    shape = args.input_shape or ([1, 3, 224, 224] if args.torchvision else None)
    results = []
    for label, model, model_type in tqdm(inputs, desc="predict", unit="model",
                                         disable=len(inputs) < 2, file=sys.stderr):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnknownKernelWarning)
                detail = predictor.predict_detail(model, model_type, shape)
        except NNFarmError as exc:  # one bad model does not hide the others' results
            results.append({"model": label, "error": f"{type(exc).__name__}: {exc}"})
            continue
        if not args.detail:
            detail.pop("kernels")
        results.append({"model": label, **detail})

    if args.json:
        print(json.dumps(results if len(results) != 1 else results[0], indent=2))
    else:
        _print_results(results, predictor, args.detail)
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"nn-farm: error: {r['model']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


def _print_results(results: list[dict], predictor, detail: bool) -> None:
    print(f"predictor {predictor.name} {predictor.version} (device {predictor.device})")
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["model"], "-", "-", "-", r["error"]])
            continue
        unknown = sorted({u["op"] for u in r["unknown_kernels"]})
        note = f"not priced: {', '.join(unknown)}" if unknown else ""
        rows.append([r["model"], f"{r['latency_ms']:.3f}", str(r["n_kernels"]),
                     str(r["n_unknown"]), note])
    _print_table(["model", "latency_ms", "kernels", "unknown", "note"], rows)
    if detail:
        for r in results:
            if "kernels" not in r:
                continue
            print(f"\n{r['model']}")
            _print_table(
                ["kernel", "type", "model", "config", "ms"],
                [[k["kernel"], k["type"], k["model"],
                  " ".join(f"{a}={b}" for a, b in k["config"].items()), f"{k['ms']:.4f}"]
                 for k in r["kernels"]]
                + [[u["kernel"], u["op"], "-", u["reason"], "unknown"]
                   for u in r["unknown_kernels"]],
            )


def _cmd_get_ir(args) -> int:
    from nn_farm.predictor.ir import model_to_ir

    for model_type in ("onnx", "tensorflow", "tflite"):
        path = getattr(args, model_type)
        if path is not None:
            break
    if model_type == "tensorflow" and Path(path).suffix in (".keras", ".h5"):
        model_type = "keras"
    ir = model_to_ir(path, model_type)
    if args.output:
        ir.save(args.output)
        print(f"wrote {args.output} ({len(ir.nodes)} nodes)")
    else:
        print(json.dumps(ir.to_json(), indent=1))
    if ir.unknown_ops:
        print(f"note: ops kept as unknown nodes: {sorted(set(ir.unknown_ops))}", file=sys.stderr)
    return 0


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    for line in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip())
