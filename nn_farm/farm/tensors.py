"""Input tensor specs, and the random data a measurement feeds a model.

Latency does not depend on the values of a dense network's inputs, so every
runtime feeds seeded random data of the right shape and dtype, prepared once at
load time and reused for every run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nn_farm.errors import InvalidModel


@dataclass(frozen=True)
class TensorSpec:
    """One model input: its name, static shape and numpy dtype name.

    Attributes:
        name: the input's name in the model ("" matches by position).
        shape: a tuple of positive ints.
        dtype: a numpy dtype name, "float32" by default.

    Example:
        >>> TensorSpec("input", [1, 3, 32, 32]).shape
        (1, 3, 32, 32)
    """

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if any(d <= 0 for d in self.shape):
            raise InvalidModel(f"input {self.name!r}: shape {list(self.shape)} must be all positive")
        try:
            np.dtype(self.dtype)
        except TypeError as exc:
            raise InvalidModel(f"input {self.name!r}: unknown dtype {self.dtype!r}") from exc

    def to_proto(self):
        from nn_farm.farm._proto import farm_pb2 as pb

        return pb.TensorSpec(name=self.name, shape=list(self.shape), dtype=self.dtype)

    @classmethod
    def from_proto(cls, msg) -> "TensorSpec":
        return cls(msg.name, tuple(msg.shape), msg.dtype or "float32")

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict) -> "TensorSpec":
        return cls(d.get("name", ""), tuple(d["shape"]), d.get("dtype") or "float32")


def random_array(spec: TensorSpec, seed: int = 0) -> np.ndarray:
    """Seeded random data for ``spec``.

    Floats are standard normal; integers are small non-negative values (they are
    often indices); booleans are fair coin flips.

    Args:
        spec: the input to fill.
        seed: the random seed.

    Returns:
        A C-contiguous array of shape ``spec.shape`` and dtype ``spec.dtype``.
    """
    rng = np.random.default_rng(seed)
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "f":
        data = rng.standard_normal(spec.shape)
    elif dtype.kind in "iu":
        data = rng.integers(0, 8, spec.shape)
    elif dtype.kind == "b":
        data = rng.integers(0, 2, spec.shape)
    else:
        raise InvalidModel(f"input {spec.name!r}: cannot make data of dtype {spec.dtype!r}")
    return np.ascontiguousarray(data.astype(dtype))


def resolve_inputs(model_inputs: list[tuple[str, list, str]], given: list[TensorSpec] | None,
                   what: str) -> list[TensorSpec]:
    """Fix every model input to a static shape, from the model or from ``given``.

    Args:
        model_inputs: the model's own inputs as (name, shape, dtype); a dim that
            is not a positive int (None, -1, a symbol name) is dynamic.
        given: caller specs, matched by name (or by position when a name is "").
        what: the model file, for messages.

    Returns:
        One static TensorSpec per model input, in model order.

    Raises:
        InvalidModel: a given name is not an input of the model, or an input is
            dynamic and no shape was given for it.
    """
    names = [name for name, _, _ in model_inputs]
    by_name: dict[str, TensorSpec] = {}
    for i, spec in enumerate(given or []):
        if not spec.name:
            if i >= len(names):
                raise InvalidModel(f"{what}: {len(given)} input shapes given, model has {len(names)} inputs")
            by_name[names[i]] = TensorSpec(names[i], spec.shape, spec.dtype)
        elif spec.name in names:
            by_name[spec.name] = spec
        else:
            raise InvalidModel(f"{what}: no input named {spec.name!r}; model inputs are {names}")
    resolved = []
    for name, shape, dtype in model_inputs:
        if name in by_name:
            resolved.append(TensorSpec(name, by_name[name].shape, dtype))
            continue
        if not all(isinstance(d, int) and d > 0 for d in shape):
            raise InvalidModel(f"{what}: input {name!r} has dynamic shape {list(shape)}; "
                               f"give its shape with inputs=[TensorSpec({name!r}, (...))]")
        resolved.append(TensorSpec(name, tuple(shape), dtype))
    return resolved
