from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GateMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GATE_DEFAULT: _ClassVar[GateMode]
    GATE_OFF: _ClassVar[GateMode]
    GATE_FILTER: _ClassVar[GateMode]
GATE_DEFAULT: GateMode
GATE_OFF: GateMode
GATE_FILTER: GateMode

class ListDevicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeviceIdentity(_message.Message):
    __slots__ = ("hostname", "cpu_model", "os", "serial", "threads", "delegate", "cpu_affinity")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    DELEGATE_FIELD_NUMBER: _ClassVar[int]
    CPU_AFFINITY_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    cpu_model: str
    os: str
    serial: str
    threads: int
    delegate: str
    cpu_affinity: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, hostname: _Optional[str] = ..., cpu_model: _Optional[str] = ..., os: _Optional[str] = ..., serial: _Optional[str] = ..., threads: _Optional[int] = ..., delegate: _Optional[str] = ..., cpu_affinity: _Optional[_Iterable[int]] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("id", "device_class", "runtime", "runtime_version", "available", "unavailable_reason", "options", "identity", "formats", "queue_length")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_CLASS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    id: str
    device_class: str
    runtime: str
    runtime_version: str
    available: bool
    unavailable_reason: str
    options: _containers.ScalarMap[str, str]
    identity: DeviceIdentity
    formats: _containers.RepeatedScalarFieldContainer[str]
    queue_length: int
    def __init__(self, id: _Optional[str] = ..., device_class: _Optional[str] = ..., runtime: _Optional[str] = ..., runtime_version: _Optional[str] = ..., available: _Optional[bool] = ..., unavailable_reason: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ..., identity: _Optional[_Union[DeviceIdentity, _Mapping]] = ..., formats: _Optional[_Iterable[str]] = ..., queue_length: _Optional[int] = ...) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices", "agent_version")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    agent_version: str
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ..., agent_version: _Optional[str] = ...) -> None: ...

class HasModelRequest(_message.Message):
    __slots__ = ("digest",)
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    digest: str
    def __init__(self, digest: _Optional[str] = ...) -> None: ...

class HasModelResponse(_message.Message):
    __slots__ = ("present", "size")
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    present: bool
    size: int
    def __init__(self, present: _Optional[bool] = ..., size: _Optional[int] = ...) -> None: ...

class ModelChunk(_message.Message):
    __slots__ = ("digest", "format", "total_size", "data")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    digest: str
    format: str
    total_size: int
    data: bytes
    def __init__(self, digest: _Optional[str] = ..., format: _Optional[str] = ..., total_size: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class PutModelResponse(_message.Message):
    __slots__ = ("digest", "size", "already_present")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ALREADY_PRESENT_FIELD_NUMBER: _ClassVar[int]
    digest: str
    size: int
    already_present: bool
    def __init__(self, digest: _Optional[str] = ..., size: _Optional[int] = ..., already_present: _Optional[bool] = ...) -> None: ...

class TensorSpec(_message.Message):
    __slots__ = ("name", "shape", "dtype")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ...) -> None: ...

class MeasurePolicy(_message.Message):
    __slots__ = ("warmup_runs", "warmup_s", "min_runs", "min_s", "max_runs", "max_s", "trim_fraction", "cpu_affinity", "speed_gate", "timeout_s", "runs_exact")
    WARMUP_RUNS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_S_FIELD_NUMBER: _ClassVar[int]
    MIN_RUNS_FIELD_NUMBER: _ClassVar[int]
    MIN_S_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNS_FIELD_NUMBER: _ClassVar[int]
    MAX_S_FIELD_NUMBER: _ClassVar[int]
    TRIM_FRACTION_FIELD_NUMBER: _ClassVar[int]
    CPU_AFFINITY_FIELD_NUMBER: _ClassVar[int]
    SPEED_GATE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    RUNS_EXACT_FIELD_NUMBER: _ClassVar[int]
    warmup_runs: int
    warmup_s: float
    min_runs: int
    min_s: float
    max_runs: int
    max_s: float
    trim_fraction: float
    cpu_affinity: _containers.RepeatedScalarFieldContainer[int]
    speed_gate: SpeedGate
    timeout_s: float
    runs_exact: int
    def __init__(self, warmup_runs: _Optional[int] = ..., warmup_s: _Optional[float] = ..., min_runs: _Optional[int] = ..., min_s: _Optional[float] = ..., max_runs: _Optional[int] = ..., max_s: _Optional[float] = ..., trim_fraction: _Optional[float] = ..., cpu_affinity: _Optional[_Iterable[int]] = ..., speed_gate: _Optional[_Union[SpeedGate, _Mapping]] = ..., timeout_s: _Optional[float] = ..., runs_exact: _Optional[int] = ...) -> None: ...

class SpeedGate(_message.Message):
    __slots__ = ("mode", "tolerance", "calm_wait_s", "min_fast", "max_attempts")
    MODE_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    CALM_WAIT_S_FIELD_NUMBER: _ClassVar[int]
    MIN_FAST_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    mode: GateMode
    tolerance: float
    calm_wait_s: float
    min_fast: int
    max_attempts: int
    def __init__(self, mode: _Optional[_Union[GateMode, str]] = ..., tolerance: _Optional[float] = ..., calm_wait_s: _Optional[float] = ..., min_fast: _Optional[int] = ..., max_attempts: _Optional[int] = ...) -> None: ...

class ProfileRequest(_message.Message):
    __slots__ = ("model_digest", "device_id", "inputs", "policy")
    MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    model_digest: str
    device_id: str
    inputs: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    policy: MeasurePolicy
    def __init__(self, model_digest: _Optional[str] = ..., device_id: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., policy: _Optional[_Union[MeasurePolicy, _Mapping]] = ...) -> None: ...

class Measurement(_message.Message):
    __slots__ = ("model_digest", "device_id", "device_class", "runtime", "runtime_version", "device", "policy", "samples_ms", "probe_ms", "kept", "mean_ms", "std_ms", "median_ms", "p10_ms", "p90_ms", "trimmed_mean_ms", "min_ms", "runs", "kept_runs", "speed_factor", "speed_state", "best_probe_ms", "attempts", "calm_wait_s", "started_unix_s", "finished_unix_s")
    MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_CLASS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_MS_FIELD_NUMBER: _ClassVar[int]
    PROBE_MS_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    MEAN_MS_FIELD_NUMBER: _ClassVar[int]
    STD_MS_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_MS_FIELD_NUMBER: _ClassVar[int]
    P10_MS_FIELD_NUMBER: _ClassVar[int]
    P90_MS_FIELD_NUMBER: _ClassVar[int]
    TRIMMED_MEAN_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_MS_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    KEPT_RUNS_FIELD_NUMBER: _ClassVar[int]
    SPEED_FACTOR_FIELD_NUMBER: _ClassVar[int]
    SPEED_STATE_FIELD_NUMBER: _ClassVar[int]
    BEST_PROBE_MS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CALM_WAIT_S_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    FINISHED_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    model_digest: str
    device_id: str
    device_class: str
    runtime: str
    runtime_version: str
    device: DeviceIdentity
    policy: MeasurePolicy
    samples_ms: _containers.RepeatedScalarFieldContainer[float]
    probe_ms: _containers.RepeatedScalarFieldContainer[float]
    kept: _containers.RepeatedScalarFieldContainer[bool]
    mean_ms: float
    std_ms: float
    median_ms: float
    p10_ms: float
    p90_ms: float
    trimmed_mean_ms: float
    min_ms: float
    runs: int
    kept_runs: int
    speed_factor: float
    speed_state: str
    best_probe_ms: float
    attempts: int
    calm_wait_s: float
    started_unix_s: float
    finished_unix_s: float
    def __init__(self, model_digest: _Optional[str] = ..., device_id: _Optional[str] = ..., device_class: _Optional[str] = ..., runtime: _Optional[str] = ..., runtime_version: _Optional[str] = ..., device: _Optional[_Union[DeviceIdentity, _Mapping]] = ..., policy: _Optional[_Union[MeasurePolicy, _Mapping]] = ..., samples_ms: _Optional[_Iterable[float]] = ..., probe_ms: _Optional[_Iterable[float]] = ..., kept: _Optional[_Iterable[bool]] = ..., mean_ms: _Optional[float] = ..., std_ms: _Optional[float] = ..., median_ms: _Optional[float] = ..., p10_ms: _Optional[float] = ..., p90_ms: _Optional[float] = ..., trimmed_mean_ms: _Optional[float] = ..., min_ms: _Optional[float] = ..., runs: _Optional[int] = ..., kept_runs: _Optional[int] = ..., speed_factor: _Optional[float] = ..., speed_state: _Optional[str] = ..., best_probe_ms: _Optional[float] = ..., attempts: _Optional[int] = ..., calm_wait_s: _Optional[float] = ..., started_unix_s: _Optional[float] = ..., finished_unix_s: _Optional[float] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeviceHealth(_message.Message):
    __slots__ = ("device_id", "state", "queue_length", "measurements", "failures", "worker_pid")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    WORKER_PID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    state: str
    queue_length: int
    measurements: int
    failures: int
    worker_pid: int
    def __init__(self, device_id: _Optional[str] = ..., state: _Optional[str] = ..., queue_length: _Optional[int] = ..., measurements: _Optional[int] = ..., failures: _Optional[int] = ..., worker_pid: _Optional[int] = ...) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("status", "agent_version", "uptime_s", "cache_bytes", "cache_models", "devices")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    CACHE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHE_MODELS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    status: str
    agent_version: str
    uptime_s: float
    cache_bytes: int
    cache_models: int
    devices: _containers.RepeatedCompositeFieldContainer[DeviceHealth]
    def __init__(self, status: _Optional[str] = ..., agent_version: _Optional[str] = ..., uptime_s: _Optional[float] = ..., cache_bytes: _Optional[int] = ..., cache_models: _Optional[int] = ..., devices: _Optional[_Iterable[_Union[DeviceHealth, _Mapping]]] = ...) -> None: ...
