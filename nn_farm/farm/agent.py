"""The device agent: a gRPC ``Profiler`` server for the devices of one host.

    client --PutModel--> ModelCache (sha256-checked, LRU-capped)
    client --Profile---> Agent.profile -> device queue -> DeviceWorker (own process)
                                                        -> measure_session -> Measurement (wire bytes)

:class:`Agent` holds the plain logic (tests call it directly); ``ProfilerServicer``
only turns its results and :mod:`nn_farm.errors` into gRPC replies and status
codes. One measurement runs at a time per device, others queue. Auth (bearer
token), TLS and the upload cap are set up by :func:`build_server`.

Example:
    >>> running = start_agent(AgentConfig(port=0, cache_dir="/tmp/models"))  # doctest: +SKIP
    >>> running.address                                                      # doctest: +SKIP
    '127.0.0.1:40123'
    >>> running.stop()                                                       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import signal
import socket
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from typing import Iterator

import grpc

import nn_farm
from nn_farm import errors
from nn_farm.farm import auth
from nn_farm.farm._proto import farm_pb2 as pb
from nn_farm.farm._proto import farm_pb2_grpc as pb_grpc
from nn_farm.farm.cache import ModelCache, check_digest
from nn_farm.farm.devices import AgentConfig, DeviceConfig, check_device
from nn_farm.farm.measurement import policy_from_wire
from nn_farm.farm.policy import MeasurePolicy
from nn_farm.farm.worker import DeviceWorker

log = logging.getLogger(__name__)

AGENT_VERSION = nn_farm.__version__
CHUNK_BYTES = 1 << 20            # upload chunk size the client uses
MAX_MESSAGE_BYTES = 4 * CHUNK_BYTES   # the largest upload chunk accepted
MAX_REPLY_BYTES = 64 * CHUNK_BYTES    # a measurement of a million runs still fits
ERROR_KIND_KEY = "nn-farm-error"  # trailing metadata: the nn_farm.errors class name

# One boundary from the error tree to gRPC status codes (the client inverts it).
STATUS_OF = (
    (errors.DeviceNotFound, grpc.StatusCode.NOT_FOUND),
    (errors.ModelNotFound, grpc.StatusCode.NOT_FOUND),
    (errors.ModelTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.InvalidModel, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.PolicyError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.DeviceTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.DeviceCrashed, grpc.StatusCode.INTERNAL),
    (errors.DeviceUnavailable, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.AuthenticationError, grpc.StatusCode.UNAUTHENTICATED),
)


def status_of(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status code for an nn-farm error (INTERNAL for anything unexpected)."""
    for cls, code in STATUS_OF:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


@functools.cache
def host_identity() -> dict:
    """Hostname, CPU model, OS and machine id of this host."""
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    serial = ""
    with contextlib.suppress(OSError):
        with open("/etc/machine-id") as f:
            serial = f.read().strip()
    return {"hostname": socket.gethostname(), "cpu_model": cpu, "os": platform.platform(), "serial": serial}


class DeviceSlot:
    """One device: its config, runtime status, worker process, queue and counters."""

    def __init__(self, config: DeviceConfig):
        self.config = config
        self.worker = DeviceWorker(config.id, config.runtime, config.options, device_class=config.device_class,
                                   identity=self.identity())
        self.formats = _runtime_formats(config.runtime)
        self._status: dict | None = None
        self._status_lock = threading.Lock()
        self.measurements = 0
        self.failures = 0
        self._turns = threading.Condition()
        self._issued = self._serving = 0  # tickets handed out / done
        self._busy = False

    def status(self) -> dict:
        """available, version, reason, as the device's own worker found them.

        The runtime library is imported in the worker, never in the agent, so
        a library that crashes on import takes only the worker down.
        """
        with self._status_lock:
            return self._status or self._find_status()

    def _find_status(self) -> dict:
        if self._status is None:
            if not self.formats:
                self._status = {"available": False, "version": "",
                                "reason": f"unknown runtime {self.config.runtime!r}"}
            else:
                try:
                    self._status = self.worker.ready()
                except errors.DeviceUnavailable as exc:
                    return {"available": False, "version": "", "reason": str(exc)}
                if not self._status["available"]:
                    self.worker.stop()  # nothing to measure: free the process
        return self._status

    @property
    def available(self) -> bool:
        return self.status()["available"]

    @property
    def version(self) -> str:
        return self.status()["version"]

    @property
    def reason(self) -> str:
        return self.status()["reason"]

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Wait for this device in arrival order (a ticket queue), then hold it."""
        with self._turns:
            ticket = self._issued
            self._issued += 1
            self._turns.wait_for(lambda: self._serving == ticket)
            self._busy = True
        try:
            yield
        finally:
            with self._turns:
                self._busy = False
                self._serving += 1
                self._turns.notify_all()

    @property
    def waiting(self) -> int:
        """Measurements queued behind the one running."""
        with self._turns:
            return self._issued - self._serving - int(self._busy)

    @property
    def state(self) -> str:
        if self._status is not None and not self._status["available"]:
            return "unavailable"
        if self.worker.state == "starting":
            return "starting"
        if self._busy:
            return "busy" if self.worker.state == "busy" else "restarting"
        return "idle"

    def identity(self) -> dict:
        opts = self.config.options
        threads = opts.get("threads", opts.get("intra_op_threads", 0))
        return {**host_identity(),
                "threads": int(threads) if str(threads).isdigit() else 0,
                "delegate": str(opts.get("delegate") or opts.get("device") or ""),
                "cpu_affinity": list(self.config.cpu_affinity)}

    def accepts(self, fmt: str) -> bool:
        if fmt == "irtar":  # OpenVINO IR travels as a tar (see cache.py)
            return bool({"xml", "ir", "irtar"} & set(self.formats))
        return fmt in self.formats

    def to_proto(self) -> pb.Device:
        return pb.Device(
            id=self.config.id, device_class=self.config.device_class, runtime=self.config.runtime,
            runtime_version=self.version, available=self.available, unavailable_reason=self.reason,
            options={k: str(v) for k, v in self.config.options.items()},
            identity=_identity_proto(self.identity()), formats=list(self.formats),
            queue_length=self.waiting)


def _runtime_formats(runtime: str) -> tuple[str, ...]:
    from nn_farm.farm.runtimes import get_runtime

    try:
        return tuple(get_runtime(runtime).formats)  # a class attribute: no library import
    except errors.DeviceUnavailable:
        return ()


def _identity_proto(identity: dict) -> pb.DeviceIdentity:
    from nn_farm.farm.measurement import identity_to_proto

    return identity_to_proto(identity)


class Agent:
    """The agent's logic without gRPC: devices, model cache, measurements.

    Args:
        config: an :class:`AgentConfig` (devices must be set; see
            :func:`nn_farm.farm.devices.load_config`).
        warm: start every available device's worker now, in the background,
            so the first measurement does not wait for runtime imports.
    """

    def __init__(self, config: AgentConfig, *, warm: bool = False):
        if not config.devices:
            from nn_farm.farm.devices import default_devices

            config = config.replace(devices=default_devices())
        for device in config.devices:
            check_device(device)
        self.config = config
        self.cache = ModelCache(config.cache_dir, config.cache_max_bytes)
        self.slots = {d.id: DeviceSlot(d) for d in config.devices}
        self.started = time.time()
        if warm:
            for slot in self.slots.values():
                if slot.formats:
                    slot.worker.start()

    def _slot(self, device_id: str) -> DeviceSlot:
        try:
            return self.slots[device_id]
        except KeyError:
            raise errors.DeviceNotFound(f"no device {device_id!r} on this agent (devices: "
                                        f"{sorted(self.slots)})", device_id=device_id) from None

    def list_devices(self) -> pb.ListDevicesResponse:
        return pb.ListDevicesResponse(devices=[s.to_proto() for s in self.slots.values()],
                                      agent_version=AGENT_VERSION)

    def has_model(self, digest: str) -> pb.HasModelResponse:
        check_digest(digest)
        return pb.HasModelResponse(present=self.cache.has(digest), size=self.cache.size_of(digest))

    def put_model(self, chunks: Iterator[pb.ModelChunk]) -> pb.PutModelResponse:
        """Store an uploaded model.

        Raises:
            InvalidModel: bad digest or format, or the bytes do not match them.
            ModelTooLarge: over ``max_upload_bytes``.
        """
        chunks = iter(chunks)
        first = next(chunks, None)
        if first is None:
            raise errors.InvalidModel("empty upload: the first chunk must carry digest and format")
        digest = check_digest(first.digest)
        if self.cache.has(digest):
            return pb.PutModelResponse(digest=digest, size=self.cache.size_of(digest), already_present=True)
        with self.cache.upload(digest, first.format, first.total_size,
                               max_upload_bytes=self.config.max_upload_bytes) as up:
            up.write(first.data)
            for chunk in chunks:
                up.write(chunk.data)
        log.info("stored model %s (%s, %d bytes)", digest, first.format, up.size)
        return pb.PutModelResponse(digest=digest, size=up.size, already_present=False)

    def profile(self, request: pb.ProfileRequest) -> pb.Measurement:
        """Measure a cached model on one device; waits its turn on that device.

        Raises:
            DeviceNotFound, ModelNotFound: unknown device or digest.
            DeviceUnavailable: the device's runtime is missing.
            InvalidModel: the model does not load or run (the runtime's message),
                or its format does not fit the device.
            PolicyError: a policy value out of range.
            DeviceCrashed, DeviceTimeout: the worker died or overran.
        """
        slot = self._slot(request.device_id)
        digest = check_digest(request.model_digest)
        if not slot.available:
            raise errors.DeviceUnavailable(f"device {slot.config.id} is unavailable: {slot.reason}",
                                           device_id=slot.config.id, digest=digest)
        policy = _policy(request.policy.SerializeToString(), slot.config.cpu_affinity)
        inputs = _inputs(request.inputs)
        with self.cache.pinned(digest) as model:
            if not slot.accepts(model.format):
                raise errors.InvalidModel(
                    f"model {digest} is {model.format}; device {slot.config.id} ({slot.config.runtime}) "
                    f"takes {list(slot.formats)}", device_id=slot.config.id, digest=digest)
            with slot.turn():
                job = {"path": str(model.path), "digest": digest, "policy": policy, "inputs": inputs}
                try:
                    reply = slot.worker.run(job, policy.timeout_s)
                except errors.NNFarmError as exc:
                    slot.failures += 1
                    raise _about(exc, model.path, slot.config.id, digest) from exc
                slot.measurements += 1
        # The worker labelled it (digest, device, identity) and sent the wire form.
        return pb.Measurement.FromString(reply)

    def health(self) -> pb.HealthResponse:
        return pb.HealthResponse(
            status="SERVING", agent_version=AGENT_VERSION, uptime_s=time.time() - self.started,
            cache_bytes=self.cache.total_bytes, cache_models=len(self.cache),
            devices=[pb.DeviceHealth(device_id=s.config.id, state=s.state, queue_length=s.waiting,
                                     measurements=s.measurements, failures=s.failures,
                                     worker_pid=s.worker.pid) for s in self.slots.values()])

    def close(self) -> None:
        """Stop every worker process."""
        for slot in self.slots.values():
            slot.worker.stop()


def _about(exc: errors.NNFarmError, path, device_id: str, digest: str) -> errors.NNFarmError:
    """The worker's error, saying "model <digest>" where it said the cache path (clients never see paths)."""
    if not isinstance(exc, errors.FarmError):
        return exc
    message = str(exc).replace(str(path), f"model {digest}")
    if digest not in message:
        message = f"model {digest}: {message}"
    return type(exc)(f"{message} [device {device_id}]", device_id=device_id, digest=digest)


@functools.lru_cache(maxsize=256)
def _policy(wire: bytes, device_cores: tuple[int, ...]) -> MeasurePolicy:
    """The policy a request asks for, on the device's cores unless it names its own.

    Memoised like :func:`policy_from_wire`: a pinned device would otherwise
    rebuild (and re-validate) the same policy on every call.

    Raises:
        PolicyError: a value out of range (not memoised).
    """
    policy = policy_from_wire(wire)
    if device_cores and not policy.cpu_affinity:
        policy = policy.replace(cpu_affinity=device_cores)
    return policy


def _inputs(specs) -> list | None:
    if not specs:
        return None
    from nn_farm.farm.tensors import TensorSpec

    return [TensorSpec.from_proto(s) for s in specs]


class ProfilerServicer(pb_grpc.ProfilerServicer):
    """gRPC face of an :class:`Agent`: one method per RPC, errors become status codes."""

    def __init__(self, agent: Agent):
        self.agent = agent

    def _call(self, context, fn, *args):
        try:
            return fn(*args)
        except errors.NNFarmError as exc:
            code = status_of(exc)
            if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED):
                log.warning("%s", exc)
            context.set_trailing_metadata(((ERROR_KIND_KEY, type(exc).__name__),))
            context.abort(code, str(exc))
        except Exception as exc:  # a bug, not bad input: say so, keep serving
            log.exception("unexpected error in %s", fn.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    def ListDevices(self, request, context):
        return self._call(context, self.agent.list_devices)

    def HasModel(self, request, context):
        return self._call(context, self.agent.has_model, request.digest)

    def PutModel(self, request_iterator, context):
        return self._call(context, self.agent.put_model, request_iterator)

    def Profile(self, request, context):
        return self._call(context, self.agent.profile, request)

    def Health(self, request, context):
        return self._call(context, self.agent.health)


@dataclass
class RunningAgent:
    """An agent serving in this process, in the background.

    Attributes:
        address: ``host:port`` to give a client.
        port: the bound port (useful when the config said 0).
        agent: the :class:`Agent` (for tests: worker pids, cache).
    """

    address: str
    port: int
    agent: Agent
    server: grpc.Server

    def stop(self, grace_s: float | None = 1.0) -> None:
        """Stop serving and stop the worker processes."""
        self.server.stop(grace_s).wait()
        self.agent.close()

    def __enter__(self) -> "RunningAgent":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def build_server(config: AgentConfig, *, warm: bool = False) -> tuple[grpc.Server, Agent, int]:
    """Build (not start) the gRPC server for ``config``.

    Returns:
        The server, its :class:`Agent` and the bound port.

    Raises:
        ConfigError: the port cannot be bound, or TLS files cannot be read.
    """
    agent = Agent(config, warm=warm)
    interceptors = [auth.TokenInterceptor(config.token)] if config.token else []
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max(16, 4 * len(agent.slots)), thread_name_prefix="nn-farm-rpc"),
        interceptors=interceptors,
        options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.max_send_message_length", MAX_REPLY_BYTES),
                 ("grpc.so_reuseport", 0)],
    )
    pb_grpc.add_ProfilerServicer_to_server(ProfilerServicer(agent), server)
    where = f"{config.host}:{config.port}"
    try:
        if config.tls:
            port = server.add_secure_port(where, auth.server_credentials(config.tls_cert, config.tls_key))
        else:
            port = server.add_insecure_port(where)
    except RuntimeError as exc:
        agent.close()
        raise errors.ConfigError(f"cannot listen on {where}: {exc}", key="port") from exc
    if not port:
        agent.close()
        raise errors.ConfigError(f"cannot listen on {where}", key="port")
    if not config.token and config.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("agent listens on %s without a token: anyone who reaches it can use it", where)
    return server, agent, port


def start_agent(config: AgentConfig, *, warm: bool = False) -> RunningAgent:
    """Start an agent in this process, in the background.

    Args:
        config: what to serve; ``port=0`` picks a free port.
        warm: start the device workers at once (see :class:`Agent`).

    Returns:
        A :class:`RunningAgent`; call ``.stop()`` when done.
    """
    server, agent, port = build_server(config, warm=warm)
    server.start()
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    return RunningAgent(address=f"{host}:{port}", port=port, agent=agent, server=server)


def serve(config: AgentConfig) -> None:
    """Build, start and serve until interrupted (the ``nn-farm agent`` command)."""
    running = start_agent(config, warm=True)
    scheme = "TLS" if config.tls else "plain"
    log.info("nn-farm agent %s serving %d device(s) on %s (%s, auth %s, cache %s)", AGENT_VERSION,
             len(running.agent.slots), running.address, scheme, "on" if config.token else "off",
             os.path.expanduser(config.cache_dir))
    for slot in running.agent.slots.values():
        log.info("  %-28s %-12s %s", slot.config.id, slot.config.runtime,
                 slot.version if slot.available else f"unavailable: {slot.reason}")
    # SIGTERM (systemd, kill) must also stop the workers, not orphan them.
    signal.signal(signal.SIGTERM, lambda *_: running.server.stop(grace=1.0))
    try:
        running.server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
