"""Talk to a device agent: list devices, upload a model once, measure it.

    with AgentClient("127.0.0.1:50051", token=...) as client:
        digest = client.put_model("net.onnx")          # no upload if the agent has it
        m = client.profile(digest, "host-cpu/onnxruntime", policy=MeasurePolicy(min_runs=50))
        print(m.summary())

This module is the one boundary where gRPC status codes become
:mod:`nn_farm.errors`: UNAUTHENTICATED -> AuthenticationError, NOT_FOUND ->
DeviceNotFound / ModelNotFound, INVALID_ARGUMENT -> InvalidModel (PolicyError
for a bad policy), RESOURCE_EXHAUSTED -> ModelTooLarge, DEADLINE_EXCEEDED ->
DeviceTimeout, INTERNAL -> DeviceCrashed, FAILED_PRECONDITION ->
DeviceUnavailable, UNAVAILABLE -> AgentUnavailable. Each keeps the device id
and model digest of the call.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import grpc

from nn_farm import errors
from nn_farm.farm import auth
from nn_farm.farm._proto import farm_pb2 as pb
from nn_farm.farm._proto import farm_pb2_grpc as pb_grpc
from nn_farm.farm.measurement import Measurement, identity_from_proto

CHUNK_BYTES = 1 << 20
_IDEMPOTENT = {"ListDevices", "HasModel", "Health"}
_RETRY_DELAYS_S = (0.2, 1.0)
_MAX_MESSAGE_BYTES = 4 * CHUNK_BYTES
_ERROR_KIND_KEY = "nn-farm-error"  # trailing metadata set by the agent

_ERROR_OF = {
    grpc.StatusCode.UNAUTHENTICATED: errors.AuthenticationError,
    grpc.StatusCode.NOT_FOUND: errors.DeviceNotFound,
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidModel,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ModelTooLarge,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeviceTimeout,
    grpc.StatusCode.INTERNAL: errors.DeviceCrashed,
    grpc.StatusCode.FAILED_PRECONDITION: errors.DeviceUnavailable,
    grpc.StatusCode.UNAVAILABLE: errors.AgentUnavailable,
}
# Kinds the agent may name in its trailing metadata that refine a status code.
_REFINED = {cls.__name__: cls for cls in (errors.ModelNotFound, errors.DeviceNotFound, errors.PolicyError,
                                          errors.InvalidModel)}


@dataclass(frozen=True)
class DeviceInfo:
    """A device as its agent describes it (the ``Device`` message).

    Attributes:
        id, device_class, runtime, runtime_version: who it is.
        available, unavailable_reason: whether it can measure now, and why not.
        options: runtime options as strings (threads, device, ...).
        identity: hostname, cpu_model, os, serial, threads, delegate, cpu_affinity.
        formats: model formats it takes.
        queue_length: measurements waiting for it.
    """

    id: str
    device_class: str
    runtime: str
    runtime_version: str = ""
    available: bool = False
    unavailable_reason: str = ""
    options: dict = field(default_factory=dict)
    identity: dict = field(default_factory=dict)
    formats: tuple[str, ...] = ()
    queue_length: int = 0

    @classmethod
    def from_proto(cls, msg: pb.Device) -> "DeviceInfo":
        return cls(id=msg.id, device_class=msg.device_class, runtime=msg.runtime,
                   runtime_version=msg.runtime_version, available=msg.available,
                   unavailable_reason=msg.unavailable_reason, options=dict(msg.options),
                   identity=identity_from_proto(msg.identity), formats=tuple(msg.formats),
                   queue_length=msg.queue_length)


def model_bytes(model: str | os.PathLike | bytes, format: str | None = None) -> tuple[bytes, str]:
    """The bytes and format to upload for a model file (or raw bytes).

    An OpenVINO ``.xml`` is packed with its ``.bin`` into one ``irtar``.

    Raises:
        InvalidModel: unreadable file, or a format that cannot be told.
    """
    from nn_farm.farm.cache import check_format, pack_openvino_ir

    if isinstance(model, (bytes, bytearray)):
        if not format:
            raise errors.InvalidModel("uploading raw bytes needs format= (tflite, onnx, pt, ...)")
        return bytes(model), check_format(format)
    path = pathlib.Path(model)
    if not path.is_file():
        raise errors.InvalidModel(f"{path}: no such model file")
    if format is None:
        from nn_farm.farm.runtimes import format_of

        format = format_of(str(path))
    if format == "xml":
        return pack_openvino_ir(path), "irtar"
    return path.read_bytes(), check_format(format)


class AgentClient:
    """A client of one agent.

    Args:
        address: ``host:port``.
        token: bearer token; default: the ``NN_FARM_TOKEN`` environment variable.
        root_cert: PEM path or bytes of the CA that signed the agent's
            certificate; given, the channel uses TLS.
        timeout_s: deadline for every call except ``profile`` (which waits for
            the device queue and the measurement); None waits forever.

    Raises (from every method): AuthenticationError, AgentUnavailable, and the
    device and model errors documented per method.
    """

    def __init__(self, address: str, *, token: str | None = None,
                 root_cert: str | os.PathLike | bytes | None = None, timeout_s: float | None = None):
        self.address = address
        self.timeout_s = timeout_s
        self._metadata = auth.auth_metadata(token if token is not None else auth.read_token())
        options = [("grpc.max_receive_message_length", 16 * _MAX_MESSAGE_BYTES),  # long measurements
                   ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES)]
        if root_cert is not None:
            self._channel = grpc.secure_channel(address, auth.channel_credentials(root_cert), options)
        else:
            self._channel = grpc.insecure_channel(address, options)
        self._stub = pb_grpc.ProfilerStub(self._channel)

    # -- the one boundary -----------------------------------------------------------------------
    def _call(self, method: str, request, *, timeout_s: float | None = None, device_id: str | None = None,
              digest: str | None = None):
        # Reads are retried while the agent is unreachable (it may be restarting); uploads
        # and measurements are not, since a retry could repeat work the agent already did.
        attempts = 1 + len(_RETRY_DELAYS_S) if method in _IDEMPOTENT else 1
        for attempt in range(attempts):
            try:
                return getattr(self._stub, method)(request, timeout=timeout_s, metadata=self._metadata)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE and attempt + 1 < attempts:
                    time.sleep(_RETRY_DELAYS_S[attempt])
                    continue
                raise _translate(exc, self.address, device_id, digest) from exc

    # -- API -----------------------------------------------------------------------------------
    def list_devices(self) -> list[DeviceInfo]:
        """Every device the agent serves, available or not."""
        reply = self._call("ListDevices", pb.ListDevicesRequest(), timeout_s=self.timeout_s)
        return [DeviceInfo.from_proto(d) for d in reply.devices]

    def has_model(self, digest: str) -> bool:
        """Whether the agent's cache holds ``digest``."""
        reply = self._call("HasModel", pb.HasModelRequest(digest=digest), timeout_s=self.timeout_s,
                           digest=digest)
        return reply.present

    def put_model(self, model: str | os.PathLike | bytes, format: str | None = None) -> str:
        """Upload a model unless the agent already has it.

        Args:
            model: a file path (format from its extension) or bytes (give ``format``).
            format: tflite, onnx, pt, xml (OpenVINO IR; sent with its .bin), ...

        Returns:
            The sha256 digest to pass to :meth:`profile`.

        Raises:
            InvalidModel: unreadable file, unknown format, or bytes the agent rejected.
            ModelTooLarge: over the agent's upload limit.
        """
        return self.ensure_model(model, format)[0]

    def ensure_model(self, model: str | os.PathLike | bytes, format: str | None = None) -> tuple[str, bool]:
        """:meth:`put_model`, also saying whether the bytes had to be sent.

        Returns:
            ``(digest, uploaded)``: ``uploaded`` is False when the agent already had it.
        """
        data, fmt = model_bytes(model, format)
        digest = hashlib.sha256(data).hexdigest()
        if self.has_model(digest):
            return digest, False
        self._call("PutModel", _chunks(data, digest, fmt), timeout_s=self.timeout_s, digest=digest)
        return digest, True

    def profile(self, digest: str, device_id: str, *, inputs: Sequence | None = None,
                policy=None, timeout_s: float | None = None) -> Measurement:
        """Measure an uploaded model on one device.

        Args:
            digest: from :meth:`put_model`.
            device_id: a device of this agent.
            inputs: ``TensorSpec`` for dynamic inputs; None takes the model's shapes.
            policy: a :class:`~nn_farm.farm.policy.MeasurePolicy`; None is the default.
            timeout_s: client-side deadline for the call, queueing included.

        Returns:
            The :class:`~nn_farm.farm.measurement.Measurement`, samples and all.

        Raises:
            DeviceNotFound, ModelNotFound: unknown device id or digest.
            InvalidModel: the runtime cannot load or run it (its message included).
            DeviceUnavailable: the device's runtime is missing.
            DeviceCrashed, DeviceTimeout: the runtime died or overran (the agent survives).
        """
        request = pb.ProfileRequest(model_digest=digest, device_id=device_id,
                                    inputs=[t.to_proto() for t in inputs or ()],
                                    policy=policy.to_proto() if policy is not None else None)
        reply = self._call("Profile", request, timeout_s=timeout_s, device_id=device_id, digest=digest)
        return Measurement.from_proto(reply)

    def health(self) -> dict:
        """The agent's health: status, version, uptime_s, cache, and per-device state and worker_pid."""
        reply = self._call("Health", pb.HealthRequest(), timeout_s=self.timeout_s)
        devices = [{name: getattr(d, name) for name in ("device_id", "state", "queue_length", "measurements",
                                                        "failures", "worker_pid")} for d in reply.devices]
        return {"status": reply.status, "agent_version": reply.agent_version, "uptime_s": reply.uptime_s,
                "cache_bytes": reply.cache_bytes, "cache_models": reply.cache_models, "devices": devices}

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "AgentClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AgentClient({self.address!r})"


def _chunks(data: bytes, digest: str, fmt: str) -> Iterator[pb.ModelChunk]:
    yield pb.ModelChunk(digest=digest, format=fmt, total_size=len(data), data=data[:CHUNK_BYTES])
    for start in range(CHUNK_BYTES, len(data), CHUNK_BYTES):
        yield pb.ModelChunk(data=data[start:start + CHUNK_BYTES])


def _translate(exc: grpc.RpcError, address: str, device_id: str | None, digest: str | None) -> errors.FarmError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else "") or str(code)
    kind = dict(exc.trailing_metadata() or ()).get(_ERROR_KIND_KEY, "") if hasattr(exc, "trailing_metadata") else ""
    cls = _REFINED.get(kind) or _ERROR_OF.get(code)
    if code == grpc.StatusCode.NOT_FOUND and not kind:
        cls = errors.ModelNotFound if "model" in details.lower() else errors.DeviceNotFound
    if cls is None:
        cls = errors.AgentError
    if cls is errors.AgentUnavailable:
        details = f"agent {address} is unavailable: {details}"
    if cls is errors.DeviceTimeout and not kind:
        details = f"no answer from agent {address} in time: {details}"
    return cls(details, device_id=device_id, digest=digest)
