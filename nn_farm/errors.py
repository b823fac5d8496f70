"""Every exception nn-farm raises on purpose, in one tree.

    NNFarmError
    ├── ConfigError                 a YAML file or a config value is wrong (names file, key)
    ├── FarmError                   anything on the device side
    │   ├── AgentError              the agent as a whole
    │   │   ├── AgentUnavailable    cannot reach it (after retries)
    │   │   └── AuthenticationError the agent refused our token
    │   ├── DeviceError             one device
    │   │   ├── DeviceNotFound      no such device id on that agent
    │   │   ├── DeviceUnavailable   runtime not installed, device not present, dead
    │   │   ├── DeviceTimeout       a measurement ran past its timeout
    │   │   └── DeviceCrashed       the runtime crashed inside a measurement
    │   ├── ModelError              one model
    │   │   ├── ModelNotFound       digest not in the agent's cache
    │   │   ├── InvalidModel        corrupt, truncated, wrong shape, unsupported op
    │   │   └── ModelTooLarge       over the agent's upload limit
    │   └── PolicyError             a measurement policy value is out of range
    ├── PredictorError              anything on the prediction side
    │   ├── PredictorNotFound       unknown predictor name or version
    │   ├── IRError                 an IR graph is malformed (dangling inbound, ...)
    │   ├── ConversionError         a model file could not be turned into IR
    │   └── UnknownKernelError      a kernel type the predictor has no model for
    └── BuilderError                rule tester and predictor builder

Errors from libraries underneath (gRPC status codes, runtime exceptions) are
translated at one boundary each, ``raise Specific(...) from exc``, keeping the
device id and model digest, so callers catch exactly what they mean.
"""

from __future__ import annotations


class NNFarmError(Exception):
    """Base of every nn-farm error."""


class ConfigError(NNFarmError, ValueError):
    """A configuration file or value is wrong.

    Attributes:
        path: the file, if the error came from one.
        key: the offending key or field, if known.
    """

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None):
        prefix = ""
        if path:
            prefix += f"{path}: "
        if key:
            prefix += f"{key}: "
        super().__init__(prefix + message)
        self.path = path
        self.key = key


class FarmError(NNFarmError):
    """An error on the device side. Carries the device id and model digest when known."""

    def __init__(self, message: str, *, device_id: str | None = None, digest: str | None = None):
        super().__init__(message)
        self.device_id = device_id
        self.digest = digest


class AgentError(FarmError):
    pass


class AgentUnavailable(AgentError):
    pass


class AuthenticationError(AgentError):
    pass


class DeviceError(FarmError):
    pass


class DeviceNotFound(DeviceError):
    pass


class DeviceUnavailable(DeviceError):
    pass


class DeviceTimeout(DeviceError, TimeoutError):
    pass


class DeviceCrashed(DeviceError):
    pass


class ModelError(FarmError):
    pass


class ModelNotFound(ModelError):
    pass


class InvalidModel(ModelError, ValueError):
    pass


class ModelTooLarge(ModelError):
    pass


class PolicyError(FarmError, ValueError):
    pass


class PredictorError(NNFarmError):
    pass


class PredictorNotFound(PredictorError, LookupError):
    pass


class IRError(PredictorError, ValueError):
    pass


class ConversionError(PredictorError, ValueError):
    pass


class UnknownKernelError(PredictorError, KeyError):
    pass


class BuilderError(NNFarmError):
    pass


__all__ = [
    "NNFarmError",
    "ConfigError",
    "FarmError",
    "AgentError",
    "AgentUnavailable",
    "AuthenticationError",
    "DeviceError",
    "DeviceNotFound",
    "DeviceUnavailable",
    "DeviceTimeout",
    "DeviceCrashed",
    "ModelError",
    "ModelNotFound",
    "InvalidModel",
    "ModelTooLarge",
    "PolicyError",
    "PredictorError",
    "PredictorNotFound",
    "IRError",
    "ConversionError",
    "UnknownKernelError",
    "BuilderError",
]
