"""Lazy public names for package ``__init__`` modules.

A package lists ``name -> module`` and gets ``__all__``, ``__getattr__`` and ``__dir__``;
the module behind a name is imported on first use (then cached in the package), so
importing a package, and running ``nn-farm --help``, loads no Ray, torch, tensorflow or gRPC.
"""

from __future__ import annotations

import importlib


def lazy_exports(package_globals: dict, names: dict[str, str]):
    """Return ``(__all__, __getattr__, __dir__)`` for the package whose globals are given."""
    package = package_globals["__name__"]
    public = sorted(names)

    def __getattr__(name: str):
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        package_globals[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(package_globals) | set(public))

    return public, __getattr__, __dir__
