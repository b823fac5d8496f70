"""`nn-farm`: a thin dispatcher.

Each layer owns its sub-commands in its own ``cli`` module, which exposes
``register(subparsers)`` and may expose ``global_flags(parser)`` plus
``run_global(args) -> int | None`` for nn-Meter-style top-level flags such as
``--list-predictors``. Those modules import nothing heavy at import time:
tensorflow, torch and ray are imported inside the command that needs them, so
``nn-farm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from nn_farm.errors import NNFarmError

# Lower layers first; a layer that does not exist yet is skipped.
_COMMAND_MODULES = (
    "nn_farm.farm.cli",
    "nn_farm.actors.cli",
    "nn_farm.predictor.cli",
    "nn_farm.builder.cli",
)


def _command_modules():
    for name in _COMMAND_MODULES:
        try:
            yield importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


def build_parser() -> tuple[argparse.ArgumentParser, list]:
    parser = argparse.ArgumentParser(
        prog="nn-farm",
        description="Profile neural-network latency on a farm of devices and predict it.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    modules = list(_command_modules())
    for module in modules:
        if hasattr(module, "global_flags"):
            module.global_flags(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in modules:
        module.register(sub)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        for module in modules:
            if hasattr(module, "run_global"):
                code = module.run_global(args)
                if code is not None:
                    return code
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except NNFarmError as exc:
        print(f"nn-farm: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nn-farm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
