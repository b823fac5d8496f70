"""One physical device on the Ray side: a gRPC client to its agent that runs one
measurement at a time.

:class:`DeviceWorker` is a plain class (tests use it without Ray);
:func:`device_actor_class` wraps it as a Ray actor. The worker holds the gRPC
channel, reconnects with backoff when the agent goes away, uploads each model to
its agent once, and keeps a health state. Every job comes back as an outcome
dict (failures are data), never as an exception, so a batch always returns.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from nn_farm.actors.jobs import ErrorKind, error_kind_of
from nn_farm.errors import AgentUnavailable, ModelNotFound, NNFarmError
from nn_farm.farm.policy import MeasurePolicy

log = logging.getLogger(__name__)


@dataclass
class DeviceHealth:
    """What the driver and ``nn-farm farm status`` know about one device.

    Attributes:
        state: "ok", "reconnecting", "unreachable" (agent gone after retries) or
            "failing" (its last jobs failed on the device side).
        jobs, failures: outcomes so far; consecutive_failures resets on success.
        device_s: time spent inside measurement calls, in seconds.
        last_error: the latest failure message.
    """

    device_id: str
    state: str = "ok"
    jobs: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    reconnects: int = 0
    device_s: float = 0.0
    last_error: str = ""


@dataclass
class DeviceWorker:
    """A client for one device of one agent, measuring one model at a time.

    Args:
        address: the agent's ``host:port``.
        device_id: the device's id on that agent.
        token, root_cert: auth and TLS for the agent.
        reconnect_attempts: tries per call when the agent is unreachable.
        backoff_s, max_backoff_s: first and largest wait between those tries (s);
            each wait doubles.

    Example:
        >>> w = DeviceWorker("127.0.0.1:50051", "host-cpu/onnxruntime")   # doctest: +SKIP
        >>> w.run_batch([{"index": 0, "digest": d, "data": model_bytes}], {})  # doctest: +SKIP
        [{'index': 0, 'ok': True, 'measurement': Measurement(...), ...}]
    """

    address: str
    device_id: str
    token: str | None = None
    root_cert: bytes | None = None
    reconnect_attempts: int = 4
    backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    _client: Any = field(default=None, init=False, repr=False)
    _uploaded: set = field(default_factory=set, init=False, repr=False)
    _health: DeviceHealth | None = field(default=None, init=False, repr=False)
    _measure_lock: Any = field(default=None, init=False, repr=False)
    _uploader: Any = field(default=None, init=False, repr=False)
    _connect_lock: Any = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._health = DeviceHealth(self.device_id)
        self._measure_lock = threading.Lock()
        self._uploader = ThreadPoolExecutor(1, thread_name_prefix="nnfarm-upload")

    # -- connection ------------------------------------------------------
    def _connect(self):
        with self._connect_lock:
            if self._client is None:
                from nn_farm.farm.client import AgentClient

                self._client = AgentClient(self.address, token=self.token, root_cert=self.root_cert)
            return self._client

    def _drop(self) -> None:
        with self._connect_lock:
            if self._client is not None:
                try:
                    self._client.close()
                except Exception:  # a broken channel may fail to close; it is gone either way
                    pass
            self._client = None
        # A restarted agent may have lost its cache.
        self._uploaded.clear()

    def _call(self, fn: Callable[[Any], Any]):
        """Run ``fn(client)``, reconnecting with exponential backoff while the agent is unreachable."""
        wait = self.backoff_s
        for attempt in range(self.reconnect_attempts):
            try:
                result = fn(self._connect())
                if self._health.state in ("reconnecting", "unreachable"):
                    self._health.state = "ok"
                return result
            except AgentUnavailable:
                self._drop()
                if attempt == self.reconnect_attempts - 1:
                    self._health.state = "unreachable"
                    raise
                self._health.state = "reconnecting"
                self._health.reconnects += 1
                time.sleep(wait)
                wait = min(wait * 2, self.max_backoff_s)

    # -- work ------------------------------------------------------------
    def run_batch(self, items: list[dict], policy: dict | None = None) -> list[dict]:
        """Measure each item in turn on this device.

        Args:
            items: dicts with ``index`` (the caller's job id), ``digest`` (sha256),
                ``data`` (model bytes, or a callable returning them, used only if
                the agent lacks the model), ``format`` and ``inputs`` (optional).
            policy: a :meth:`MeasurePolicy.to_dict`; None or {} for the agent's default.

        Returns:
            One outcome per item, in order: ``{"index", "ok", "measurement",
            "error_kind" (int), "error", "attempted", "device_s"}``. After the
            agent is found unreachable, the remaining items come back with
            ``attempted`` False.
        """
        pol = MeasurePolicy.from_dict(policy) if policy else None
        lock = self._measure_lock
        # Uploads run one item ahead in a background thread, so the device
        # measures one model while the next one travels.
        uploads = [self._uploader.submit(self._upload_quietly, item) for item in items]
        out: list[dict] = []
        unreachable = False
        for item, upload in zip(items, uploads):
            if unreachable:
                upload.cancel()
                out.append(self._outcome(item, ErrorKind.AGENT_UNAVAILABLE,
                                         f"agent {self.address} unreachable", attempted=False))
                continue
            with lock:  # one measurement at a time, even across concurrent batches
                outcome = self._run_one(item, pol, upload.result())
            unreachable = outcome["error_kind"] == ErrorKind.AGENT_UNAVAILABLE
            out.append(outcome)
        return out

    def _upload_quietly(self, item: dict) -> BaseException | None:
        try:
            self._ensure_uploaded(item)
        except Exception as exc:  # reported by the measuring thread, as the item's outcome
            return exc
        return None

    def _run_one(self, item: dict, policy: MeasurePolicy | None, upload_error: BaseException | None = None) -> dict:
        digest = item["digest"]
        started = time.perf_counter()
        try:
            if upload_error is not None:
                raise upload_error
            try:
                m = self._profile(digest, item, policy)
            except ModelNotFound:
                # The agent evicted or lost it since we uploaded: upload again, once.
                self._uploaded.discard(digest)
                self._ensure_uploaded(item)
                m = self._profile(digest, item, policy)
        except NNFarmError as exc:
            return self._failed(item, exc, time.perf_counter() - started)
        except Exception as exc:  # a bug or a library error: still data, never a lost batch
            log.exception("device %s: unexpected error on %s", self.device_id, digest[:12])
            return self._failed(item, exc, time.perf_counter() - started)
        elapsed = time.perf_counter() - started
        h = self._health
        h.jobs += 1
        h.consecutive_failures = 0
        h.device_s += elapsed
        if h.state == "failing":
            h.state = "ok"
        return {"index": item["index"], "ok": True, "measurement": m, "error_kind": 0, "error": "",
                "attempted": True, "device_s": elapsed}

    def _ensure_uploaded(self, item: dict) -> None:
        digest = item["digest"]
        if digest in self._uploaded:
            return
        data = item.get("data")
        if data is None:
            return  # the caller knows the agent has it
        payload = data() if callable(data) else data
        got = self._call(lambda c: c.put_model(payload, format=item.get("format")))
        if got and got != digest:
            from nn_farm.errors import InvalidModel

            raise InvalidModel(f"agent stored digest {got[:12]}, expected {digest[:12]}",
                               device_id=self.device_id, digest=digest)
        self._uploaded.add(digest)

    def _profile(self, digest: str, item: dict, policy: MeasurePolicy | None):
        inputs = item.get("inputs")
        return self._call(lambda c: c.profile(digest, self.device_id, inputs=inputs, policy=policy))

    def _failed(self, item: dict, exc: BaseException, elapsed: float) -> dict:
        kind = error_kind_of(exc) if isinstance(exc, NNFarmError) else ErrorKind.UNKNOWN
        h = self._health
        h.device_s += elapsed
        if kind.retryable:
            h.failures += 1
            h.consecutive_failures += 1
            if h.state == "ok":
                h.state = "failing"
        message = f"{type(exc).__name__}: {exc}"
        h.last_error = message
        return self._outcome(item, kind, message, device_s=elapsed)

    @staticmethod
    def _outcome(item: dict, kind: ErrorKind, message: str, *, attempted: bool = True,
                 device_s: float = 0.0) -> dict:
        return {"index": item["index"], "ok": False, "measurement": None, "error_kind": int(kind),
                "error": message, "attempted": attempted, "device_s": device_s}

    def health(self) -> dict:
        return asdict(self._health)

    def ping(self) -> str:
        """Returns the device id once the actor is up (placement check)."""
        return self.device_id

    def close(self) -> None:
        if self._uploader is not None:
            self._uploader.shutdown(wait=False, cancel_futures=True)
        self._drop()


def device_actor_class():
    """The Ray actor class over :class:`DeviceWorker` (imports ray, so call it late).

    The actor takes no CPU (it waits on gRPC). It accepts two calls at once so
    uploads overlap measurements, and its worker's lock keeps a device to one
    measurement at a time. Model bytes travel as nested
    ObjectRefs and are fetched only when the agent lacks the model.
    """
    import ray

    # Two concurrent calls: the next batch's uploads overlap the current batch's
    # measurements; a lock inside the worker still measures one model at a time.
    @ray.remote(num_cpus=0, max_concurrency=2)
    class DeviceActor(DeviceWorker):
        def run_batch(self, items, policy=None):
            for item in items:
                data = item.get("data")
                if isinstance(data, ray.ObjectRef):
                    item["data"] = lambda ref=data: ray.get(ref)
            return super().run_batch(items, policy)

        def pid(self) -> int:
            """The actor's process id (tests kill a whole "host": node and actor processes)."""
            import os

            return os.getpid()

        def node_id(self) -> str:
            """The Ray node this actor runs on (placement checks)."""
            return ray.get_runtime_context().get_node_id()

    return DeviceActor
