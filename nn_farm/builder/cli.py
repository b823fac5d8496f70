"""The builder's commands: `create`, `ruletest`, `build`, `demo`, register kinds and list flags.

    nn-farm create --workspace DIR [--backend NAME] [--farm FARM_YAML] [--device-class C]
    nn-farm ruletest --workspace DIR [--devices N]
    nn-farm build --workspace DIR [--backend NAME] [--kernels K ...]   (also under `ray job submit --`)
    nn-farm demo [--workspace DIR]       the main job: build for this host's CPU, check on real models
    nn-farm register   --operator|--testcase|--kernel|--backend META_YAML
    nn-farm unregister --operator|--testcase|--kernel|--backend NAME
    nn-farm --list-operators | --list-testcases | --list-kernels | --list-backends

``register`` and ``unregister`` are the predictor layer's commands; the builder adds
its four kinds through ``nn_farm.predictor.cli.add_registry_kind``. Nothing heavy is
imported here.
"""

from __future__ import annotations

import argparse

__all__ = ["register", "global_flags", "run_global"]

_KINDS = ("operator", "testcase", "kernel", "backend")


def global_flags(parser: argparse.ArgumentParser) -> None:
    for kind in _KINDS:
        parser.add_argument(f"--list-{kind}s", action="store_true",
                            help=f"list builtin and customized {kind}s ('*' = customized) and exit")


def run_global(args: argparse.Namespace) -> int | None:
    wanted = [kind for kind in _KINDS if getattr(args, f"list_{kind}s", False)]
    if not wanted:
        return None
    from nn_farm.builder import registry

    print("\n\n".join(registry.format_listing(kind) for kind in wanted))
    return 0


def _on_register(kind):
    def handler(meta_path: str, args) -> str:
        from nn_farm.builder import registry

        name = registry.register(kind, meta_path)
        return f"registered {kind} {name!r} from {meta_path} in {registry.registry_path()}"

    return handler


def _on_unregister(kind):
    def handler(name: str, args) -> str:
        from nn_farm.builder import registry

        registry.unregister(kind, name)
        return f"unregistered {kind} {name!r}"

    return handler


def register(subparsers) -> None:
    from nn_farm.builder.config import DEFAULT_BACKEND
    from nn_farm.predictor.cli import add_registry_kind

    c = subparsers.add_parser(
        "create", help="create a builder workspace with default configs",
        description="Write configs/ruletest_config.yaml, configs/predictorbuild_config.yaml "
                    "and configs/backend_config.yaml under the workspace. Existing config "
                    "files are kept unless --overwrite.")
    c.add_argument("--workspace", required=True, metavar="DIR", help="workspace directory")
    c.add_argument("--backend", default=DEFAULT_BACKEND, metavar="NAME",
                   help=f"backend to measure on (default {DEFAULT_BACKEND}; see --list-backends)")
    c.add_argument("--farm", metavar="FARM_YAML", help="farm.yaml for a remote backend")
    c.add_argument("--device-class", metavar="CLASS",
                   help="device class to measure on (default: the backend name)")
    c.add_argument("--overwrite", action="store_true", help="replace existing config files")
    c.set_defaults(func=_cmd_create)

    r = subparsers.add_parser(
        "ruletest", help="run the fusion rule tester of a workspace on its backend",
        description="Generate the test cases of configs/ruletest_config.yaml, profile them on "
                    "the workspace's backend (resumable: results.db), detect the fusion rules "
                    "and write fusion_rule_test/{origin_testcases,profiled_results,"
                    "detected_fusion_rule}.json. Under `ray job submit` it joins that cluster.")
    r.add_argument("--workspace", required=True, metavar="DIR", help="workspace directory")
    r.add_argument("--devices", type=int, metavar="N",
                   help="embedded backends: host cores to measure on (default: DEVICES, else 1)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.set_defaults(func=_cmd_ruletest)
    _register_build(subparsers)

    for kind in _KINDS:
        try:
            add_registry_kind(f"--{kind}", metavar="META_YAML|NAME",
                              help=f"a customized {kind}: its meta yaml (register) or name "
                                   f"(unregister)",
                              on_register=_on_register(kind), on_unregister=_on_unregister(kind))
        except ValueError:
            pass  # already added: build_parser() ran twice in this process


def _cmd_create(args) -> int:
    from nn_farm.builder.workspace import create_workspace

    ws = create_workspace(args.workspace, backend=args.backend, farm=args.farm,
                          device_class=args.device_class, overwrite=args.overwrite)
    print(f"workspace {ws.root} for backend {args.backend}:")
    for path in (ws.ruletest_config, ws.predbuild_config, ws.backend_config):
        print(f"  {path}")
    return 0


def _cmd_ruletest(args) -> int:
    from nn_farm.builder.ruletest.run import ruletest

    report = ruletest(args.workspace, devices=args.devices, progress=not args.no_progress)
    for name, rule in report.rules.items():
        note = f"  ({rule['note']})" if rule.get("note") else ""
        print(f"{name:28s} obey={str(rule['obey']):6s} confidence={rule['confidence']:.3f} "
              f"rounds={rule['rounds']}{note}")
    print(f"{report.models} models, {report.measured} measured, {report.skipped} from the store, "
          f"{len(report.remeasured)} test case(s) re-measured, {report.wall_s:.0f} s")
    print(f"rules: {report.files['detected']}")
    return 0


def _register_build(subparsers) -> None:
    b = subparsers.add_parser(
        "build", help="build a latency predictor for a workspace's backend (resumable)",
        description="Sample, generate and convert (Ray tasks), measure (one farm run per round for "
                    "all kernels), train (one Ray task per kernel) and package the kernels of "
                    "configs/predictorbuild_config.yaml, with adaptive rounds kept only when they "
                    "measure better. Creates the workspace if it has no configs. A rerun skips "
                    "measured kernels and finished rounds. Under `ray job submit` it joins that "
                    "cluster (RAY_ADDRESS).")
    b.add_argument("--workspace", required=True, metavar="DIR", help="workspace directory")
    b.add_argument("--backend", metavar="NAME",
                   help="backend (default: the workspace's; a new workspace gets host-cpu-litert)")
    b.add_argument("--kernels", nargs="+", metavar="KERNEL", help="only these kernel types of KERNELS")
    b.add_argument("--devices", type=int, metavar="N",
                   help="embedded backends: host cores to measure on (default: DEVICES, else 1)")
    b.add_argument("--ruletest", choices=("auto", "run", "skip"), default="auto",
                   help="fusion rules: auto = use the workspace's detected rules, running the rule "
                        "test if missing (default); skip = default rules with a warning if missing")
    b.add_argument("--target-accuracy", type=float, default=None, metavar="FRACTION",
                   help="stop a kernel's rounds at this +-10%% accuracy (default 0.95)")
    b.add_argument("--name", metavar="NAME", help="package name (default: the device class)")
    b.add_argument("--version", default="1.0", help="package version (default 1.0)")
    b.add_argument("--no-register", action="store_true", help="do not register the package")
    b.add_argument("--json", action="store_true", help="print the build summary as JSON at the end")
    b.add_argument("--no-progress", action="store_true", help="no progress bars")
    b.set_defaults(func=_cmd_build)

    d = subparsers.add_parser(
        "demo", help="the main job: build a predictor for this host's CPU, then check it on real models",
        description="In a workspace (default ./nn-farm-demo; resumable), build a latency predictor "
                    "for this host's CPU (LiteRT, one thread), predict real keras.applications "
                    "and torchvision models (weights=None, converted to .tflite), measure each on the same device "
                    "through the farm, and print predicted vs measured with the +-10% accuracy; "
                    "writes report.json and scatter.png. `nn-farm runtimes` is the old runtime table.")
    d.add_argument("--workspace", default="nn-farm-demo", metavar="DIR", help="workspace (default ./nn-farm-demo)")
    d.add_argument("--models", nargs="+", metavar="NAME", help="keras.applications names or torchvision:NAME to check")
    d.add_argument("--budget", choices=("default", "config", "small", "tiny"), default="default",
                   help="kernel sampling budget of a new workspace: default (the whole job estimated at 20 "
                        "min on a quiet 2-core host), config (the build config's defaults, about 30 min), "
                        "small, tiny")
    d.add_argument("--ruletest", choices=("auto", "run", "skip"), default="auto",
                   help="fusion rules: auto = run the rule test unless the workspace has detected rules")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.set_defaults(func=_cmd_demo)


def _cmd_build(args) -> int:
    import json
    import pathlib

    from nn_farm.builder.config import DEFAULT_BACKEND
    from nn_farm.builder.kernel_builder import DEFAULT_TARGET_ACC10, build_latency_predictor
    from nn_farm.builder.workspace import Workspace, create_workspace

    ws = Workspace(pathlib.Path(args.workspace).resolve())
    if not ws.configs_dir.is_dir():
        create_workspace(ws.root, backend=args.backend or DEFAULT_BACKEND)
        print(f"created workspace {ws.root} for backend {args.backend or DEFAULT_BACKEND}")
    elif args.backend:
        from nn_farm.builder.config import ConfigManager
        from nn_farm.errors import ConfigError

        own = ConfigManager().init(ws.root).get("BACKEND", "backend")
        if own != args.backend:
            # Its kernel files and measurements belong to its own backend.
            raise ConfigError(f"workspace {ws.root} is for backend {own!r}, not {args.backend!r}; "
                              f"use another workspace (or drop --backend)", key="--backend")
    result = build_latency_predictor(
        args.backend, workspace=ws.root, kernels=args.kernels, devices=args.devices,
        ray_address=None, name=args.name, version=args.version, register=not args.no_register,
        ruletest=args.ruletest,
        target_accuracy=DEFAULT_TARGET_ACC10 if args.target_accuracy is None else args.target_accuracy,
        progress=not args.no_progress)
    if args.json:
        print(json.dumps(result.summary()))
    return 0


def _cmd_demo(args) -> int:
    from nn_farm.builder.main_job import run_main_job

    report = run_main_job(args.workspace, models=args.models, budget=args.budget, ruletest=args.ruletest,
                          progress=not args.no_progress)
    return 0 if report["models"] else 1
