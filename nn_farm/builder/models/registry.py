"""Which class implements which operator in which framework.

Built-in operators are looked up lazily (``module:Class`` strings), so listing or
resolving them imports neither tensorflow nor torch. Customized operators come in
through :func:`register_operator` (the ``nn-farm register --operator`` flow calls it
after importing the user's module) and win over built-ins of the same name.

Implementations are ``"tensorflow"`` (Keras; ``"keras"`` and ``"tf"`` accepted) and
``"torch"`` (``"pytorch"`` accepted), as in nn-Meter's ``IMPLEMENT`` key.
"""

from __future__ import annotations

import importlib

from nn_farm.errors import BuilderError, ConfigError

IMPLEMENTS = ("tensorflow", "torch")
_IMPLEMENT_ALIASES = {"tensorflow": "tensorflow", "tf": "tensorflow", "keras": "tensorflow",
                      "torch": "torch", "pytorch": "torch"}

_MODULES = {"tensorflow": "nn_farm.builder.models.keras_operators",
            "torch": "nn_farm.builder.models.torch_operators"}

# builtin_name -> class name, in both implementation modules.
BUILTIN_OPERATORS = {
    "conv": "Conv",
    "dwconv": "DwConv",
    "convtrans": "ConvTrans",
    "bn": "BN",
    "maxpool": "MaxPool",
    "avgpool": "AvgPool",
    "globalavgpool": "GlobalAvgPool",
    "se": "SE",
    "fc": "FC",
    "relu": "Relu",
    "relu6": "Relu6",
    "sigmoid": "Sigmoid",
    "hswish": "Hswish",
    "swish": "Swish",
    "reshape": "Reshape",
    "add": "Add",
    "concat": "Concat",
    "flatten": "Flatten",
    "split": "Split",
    # Not a test-case operator in nn-Meter, but the channelshuffle kernel needs it.
    "channelshuffle": "ChannelShuffle",
}

_CUSTOM: dict[tuple[str, str], type] = {}


def normalize_implement(implement: str) -> str:
    """Return ``"tensorflow"`` or ``"torch"`` for any accepted spelling.

    Raises:
        ConfigError: an implementation nn-farm does not build (names the value).
    """
    key = str(implement).lower()
    if key not in _IMPLEMENT_ALIASES:
        raise ConfigError(f"unknown implement {implement!r}; use one of {list(IMPLEMENTS)}",
                          key="IMPLEMENT")
    return _IMPLEMENT_ALIASES[key]


def register_operator(name: str, implement: str, cls: type) -> None:
    """Make ``cls`` the operator ``name`` for ``implement``.

    Args:
        name: the operator's builtin_name, used in test cases (``"conv"``, ``"mylayer"``).
        implement: ``"tensorflow"`` or ``"torch"``.
        cls: a class built as ``cls(input_shape, config)`` with ``get_model()``,
            ``get_output_shape()`` and ``get_is_two_inputs()`` (nn-Meter's
            BaseOperator API; subclassing :class:`~nn_farm.builder.models.base.BaseOperator`
            gives the last two).

    Raises:
        ConfigError: bad implement or name.
        BuilderError: ``cls`` lacks the operator API.
    """
    implement = normalize_implement(implement)
    if not name or not isinstance(name, str) or "_" in name:
        # Test-case names join operators with '_' (conv_relu), so names cannot hold one.
        raise ConfigError(f"bad operator name {name!r}: a non-empty string without '_'",
                          key="builtin_name")
    missing = [m for m in ("get_model", "get_output_shape") if not callable(getattr(cls, m, None))]
    if missing:
        raise BuilderError(f"operator class {cls!r} for {name!r} lacks {', '.join(missing)}")
    _CUSTOM[(name, implement)] = cls


def unregister_operator(name: str, implement: str) -> None:
    """Remove a customized operator; built-ins cannot be removed (KeyError if absent)."""
    implement = normalize_implement(implement)
    if (name, implement) not in _CUSTOM:
        raise KeyError(f"no customized operator {name!r} for {implement}")
    del _CUSTOM[(name, implement)]


def get_operator(name: str, implement: str) -> type:
    """Return the operator class ``name`` in ``implement`` (customized first).

    Raises:
        ConfigError: unknown implement.
        BuilderError: no such operator (the message lists the known ones).
    """
    implement = normalize_implement(implement)
    cls = _CUSTOM.get((name, implement))
    if cls is not None:
        return cls
    class_name = BUILTIN_OPERATORS.get(name)
    if class_name is None:
        raise BuilderError(f"unknown operator {name!r} for {implement}; known: "
                           f"{', '.join(list_operators(implement))}; register it first")
    return getattr(importlib.import_module(_MODULES[implement]), class_name)


def list_operators(implement: str | None = None, *, mark_custom: bool = False) -> list[str]:
    """Names of every operator, built-in first; customized ones prefixed ``"* "`` when
    ``mark_custom`` (as ``nn-farm --list-operators`` prints them)."""
    impls = IMPLEMENTS if implement is None else (normalize_implement(implement),)
    names = list(BUILTIN_OPERATORS)
    for (name, impl) in _CUSTOM:
        if impl in impls and name not in BUILTIN_OPERATORS:
            label = f"* {name}" if mark_custom else name
            if label not in names:
                names.append(label)
    return names
