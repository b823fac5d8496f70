"""Jobs in, results out: the records the scheduler trades in.

    Job (model file | model bytes | generator task)
        -> [Ray task: generate + convert]   only for generator jobs
        -> model bytes + sha256 digest
        -> [device actor: upload once per agent, Profile]
        -> JobResult (a Measurement, or an ErrorKind + message)

Failures are data, not exceptions (TVM's measure records): a job that fails
comes back as a :class:`JobResult` whose ``error_kind`` says why, so one bad
model never aborts a batch of thousands.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import pathlib
from dataclasses import dataclass, field
from typing import Any, Callable

from nn_farm.farm.measurement import Measurement
from nn_farm.farm.policy import MeasurePolicy

# Model file suffixes the agents accept, by format name (farm.proto ModelChunk.format).
_FORMATS = {".onnx": "onnx", ".tflite": "tflite", ".xml": "xml", ".pt": "pt", ".json": "json"}


class ErrorKind(enum.IntEnum):
    """Why a job (or one attempt of it) failed. 0 means it did not."""

    NONE = 0
    INVALID_MODEL = 1        # corrupt, truncated, unsupported: never retried
    MODEL_TOO_LARGE = 2      # over the agent's upload limit: never retried
    GENERATION_ERROR = 3     # the job's generator task raised: never retried
    DEVICE_TIMEOUT = 4       # the rest are the device's fault: retried elsewhere
    DEVICE_CRASHED = 5
    DEVICE_UNAVAILABLE = 6
    AGENT_UNAVAILABLE = 7
    AUTHENTICATION = 8
    ACTOR_DIED = 9           # the device actor or its Ray node died
    NO_DEVICE = 10           # no live device of the class was left
    UNKNOWN = 11

    @property
    def retryable(self) -> bool:
        """Whether another device of the class may succeed where this one failed."""
        return self not in (ErrorKind.NONE, ErrorKind.INVALID_MODEL, ErrorKind.MODEL_TOO_LARGE,
                            ErrorKind.GENERATION_ERROR, ErrorKind.NO_DEVICE)

    @property
    def is_model_error(self) -> bool:
        """The model itself is at fault: a rerun would fail the same way, so it is final."""
        return self in (ErrorKind.INVALID_MODEL, ErrorKind.MODEL_TOO_LARGE, ErrorKind.GENERATION_ERROR)


def error_kind_of(exc: BaseException) -> ErrorKind:
    """Map an nn-farm exception to its :class:`ErrorKind`."""
    from nn_farm import errors

    table = [
        (errors.InvalidModel, ErrorKind.INVALID_MODEL),
        (errors.ModelTooLarge, ErrorKind.MODEL_TOO_LARGE),
        (errors.DeviceTimeout, ErrorKind.DEVICE_TIMEOUT),
        (errors.DeviceCrashed, ErrorKind.DEVICE_CRASHED),
        (errors.DeviceUnavailable, ErrorKind.DEVICE_UNAVAILABLE),
        (errors.DeviceNotFound, ErrorKind.DEVICE_UNAVAILABLE),
        (errors.AuthenticationError, ErrorKind.AUTHENTICATION),
        (errors.AgentUnavailable, ErrorKind.AGENT_UNAVAILABLE),
        (errors.PolicyError, ErrorKind.INVALID_MODEL),
    ]
    for cls, kind in table:
        if isinstance(exc, cls):
            return kind
    return ErrorKind.UNKNOWN


@dataclass(frozen=True)
class Job:
    """One model to measure on one device class.

    Exactly one of ``path``, ``data`` or ``generate`` is set.

    Attributes:
        name: a stable name for the job (a kernel config id, a file name). A rerun
            recognises finished generator jobs by it, before generating anything.
        path: a model file on the driver's host.
        data: the model file's bytes.
        generate: a picklable callable ``() -> (bytes, format)`` (or a path) run
            as a Ray task ahead of the devices: model generation and conversion.
        format: model format (``onnx``, ``tflite``, ...); guessed from ``path``.
        group: what the job belongs to in nn-Meter's profiled JSON (a kernel type).
        inputs: optional input specs ``[{"name", "shape", "dtype"}]``; None takes
            static shapes from the model.
        meta: anything to carry into the export (``config``, ``shapes``).

    Example:
        >>> Job.from_path("conv_3x3.onnx").format
        'onnx'
    """

    name: str
    path: str | None = None
    data: bytes | None = None
    generate: Callable[[], Any] | None = None
    format: str | None = None
    group: str = "models"
    inputs: tuple | None = None
    meta: dict = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.path, self.data, self.generate)]
        if sum(given) != 1:
            raise ValueError(f"job {self.name!r}: give exactly one of path, data, generate")

    @classmethod
    def from_path(cls, path: str | os.PathLike, *, name: str | None = None, **kw: Any) -> "Job":
        p = pathlib.Path(path)
        return cls(name=name or p.name, path=str(p), format=kw.pop("format", None) or guess_format(p), **kw)

    def load(self) -> tuple[bytes, str | None]:
        """The model's bytes and format, for path and data jobs.

        Raises:
            FileNotFoundError / OSError: the model file cannot be read.
        """
        if self.path is not None:
            return pathlib.Path(self.path).read_bytes(), self.format or guess_format(self.path)
        if self.data is not None:
            return bytes(self.data), self.format
        raise ValueError(f"job {self.name!r} is a generator job; run its task first")


def guess_format(path: str | os.PathLike) -> str | None:
    return _FORMATS.get(pathlib.Path(path).suffix.lower())


def digest_of(data: bytes) -> str:
    """sha256 hex of a model's bytes: the content address agents use."""
    return hashlib.sha256(data).hexdigest()


def policy_hash(policy: MeasurePolicy) -> str:
    """A stable 16-hex-digit hash of a policy, the same across processes and runs."""
    text = json.dumps(policy.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class JobResult:
    """What became of one job: a measurement, or an error kind and message.

    Attributes:
        job_name: :attr:`Job.name`.
        device_class: the class it was sent to.
        model_digest: sha256 of the model ("" if generation failed).
        measurement: the measurement when it succeeded.
        error_kind, error: why it failed (``ErrorKind.NONE`` and "" when it did not).
        attempts: devices tried.
        device_id: the device that produced the final outcome.
        skipped: True when the store already held this result (a rerun).
    """

    job_name: str
    device_class: str
    model_digest: str = ""
    measurement: Measurement | None = None
    error_kind: ErrorKind = ErrorKind.NONE
    error: str = ""
    attempts: int = 0
    device_id: str = ""
    skipped: bool = False
    group: str = "models"

    @property
    def ok(self) -> bool:
        return self.error_kind == ErrorKind.NONE and self.measurement is not None

    @property
    def latency_ms(self) -> float:
        return self.measurement.mean_ms if self.measurement else float("nan")
