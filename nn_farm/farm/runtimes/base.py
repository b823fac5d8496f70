"""What every host runtime provides: a status, and sessions that run one inference.

    Runtime.load(path, inputs, options) -> Session   (model compiled, inputs prepared,
                                                       one validating run done)
    Session.run()                                     (one timed inference)

Timing and the measurement policy live in :mod:`nn_farm.farm.measure`; a runtime
only knows how to load and run. Errors of the library underneath are translated
here, once per runtime, into :class:`nn_farm.errors.InvalidModel`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from nn_farm.errors import ConfigError, InvalidModel
from nn_farm.farm.tensors import TensorSpec


@dataclass(frozen=True)
class RuntimeStatus:
    """Whether a runtime (and the device it targets) can measure on this host.

    Attributes:
        available: True if measurements can run.
        version: the library version ("" if not installed).
        reason: why not, when unavailable.
    """

    available: bool
    version: str
    reason: str = ""


class Session:
    """A loaded model with its inputs prepared; ``run`` does one inference.

    Attributes:
        inputs: the resolved (static) input specs.
        identity: what ran it: threads, delegate, device string; goes into
            ``Measurement.device``.
        cpu_bound: True when the model is computed on this process's CPU, so a
            run whose CPU time falls short of its wall time was interrupted.
    """

    inputs: list[TensorSpec]
    identity: dict
    cpu_bound: bool = True

    def __init__(self, inputs: list[TensorSpec], identity: dict) -> None:
        self.inputs = inputs
        self.identity = identity

    def run(self) -> None:
        """Run one inference on the inputs prepared at load."""
        raise NotImplementedError

    def close(self) -> None:
        """Free the model; the session is unusable afterwards."""

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Runtime:
    """A host runtime: a name, the model formats it reads, and its options.

    Attributes:
        name: "litert", "onnxruntime", ...
        formats: model file formats it loads (see :func:`format_of`).
        defaults: every option it accepts, with its default.
    """

    name: str = ""
    formats: tuple[str, ...] = ()
    defaults: dict = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def status(self, options: dict | None = None) -> RuntimeStatus:
        """Whether this runtime can measure here with ``options``.

        Args:
            options: runtime options (e.g. OpenVINO's ``device``).

        Returns:
            A RuntimeStatus; never raises for a missing library or device.
        """
        raise NotImplementedError

    def load(self, path: str, inputs: list[TensorSpec] | None = None,
             options: dict | None = None) -> Session:
        """Load ``path``, prepare random inputs and run once to validate.

        Args:
            path: the model file.
            inputs: shapes for dynamic inputs (matched by name).
            options: runtime options; see ``defaults``.

        Returns:
            A ready Session.

        Raises:
            InvalidModel: missing, corrupt, truncated or unsupported model, or
                wrong or missing input shapes; carries the runtime's own message.
            DeviceUnavailable: the library or device is not present.
            ConfigError: an unknown option.
        """
        raise NotImplementedError

    # Helpers for subclasses.
    def options(self, options: dict | None) -> dict:
        """``options`` over the defaults; an unknown key is a ConfigError naming it."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ConfigError(f"unknown option(s) {unknown} for runtime {self.name!r}; "
                              f"known: {sorted(self.defaults)}", key=unknown[0])
        return {**self.defaults, **options}

    def check_file(self, path: str) -> str:
        """The path as a string, if it names an existing file of a format we read."""
        from nn_farm.farm.runtimes import format_of

        path = os.fspath(path)
        if not os.path.isfile(path):
            raise InvalidModel(f"{path}: no such model file")
        fmt = format_of(path)
        if fmt not in self.formats:
            raise InvalidModel(f"{path}: runtime {self.name!r} reads {list(self.formats)}, not {fmt!r}")
        return path

    def invalid(self, path: str, exc: BaseException) -> InvalidModel:
        """An InvalidModel naming the file and runtime, carrying the runtime's message."""
        message = str(exc).strip() or type(exc).__name__
        return InvalidModel(f"{path}: {self.name} cannot run this model: {message}")


def validate(runtime: Runtime, path: str, session: Session) -> Session:
    """Run ``session`` once, turning a runtime failure into InvalidModel (closing it)."""
    try:
        session.run()
    except Exception as exc:
        session.close()
        raise runtime.invalid(path, exc) from exc
    return session
