"""OpenVINO on a device of this host (CPU here; GPU, NPU, MYRIAD where present).

Options: ``device`` (default "CPU"), ``threads`` (default 1; 0 lets OpenVINO
choose). Precision is always f32 (OpenVINO picks bf16 on CPUs that have it,
which would change what is measured) and the performance hint is LATENCY.
Reads .onnx, or IR (.xml with its .bin next to it).
"""

from __future__ import annotations

import functools

from nn_farm.errors import DeviceUnavailable
from nn_farm.farm.runtimes.base import Runtime, RuntimeStatus, Session, validate
from nn_farm.farm.tensors import TensorSpec, random_array, resolve_inputs


@functools.cache
def _core():
    # One Core per process, as OpenVINO intends: it caches plugins and devices.
    import openvino as ov

    return ov, ov.Core()


def _base_device(device: str) -> str:
    return device.split(".")[0].split(":")[0].upper()


class OpenVINOSession(Session):
    def __init__(self, request, inputs: list[TensorSpec], identity: dict) -> None:
        super().__init__(inputs, identity)
        self._request = request

    def run(self) -> None:
        self._request.infer()

    def close(self) -> None:
        self._request = None


class OpenVINORuntime(Runtime):
    name = "openvino"
    formats = ("onnx", "xml")
    defaults = {"device": "CPU", "threads": 1}

    def status(self, options: dict | None = None) -> RuntimeStatus:
        opts = self.options(options)
        try:
            ov, core = _core()
        except ImportError as exc:
            return RuntimeStatus(False, "", f"openvino is not installed: {exc}")
        version = ov.__version__
        present = core.available_devices
        device = str(opts["device"])
        # Virtual devices (AUTO, HETERO:..., MULTI:...) pick among the present ones.
        if _base_device(device) not in ("AUTO", "HETERO", "MULTI", "BATCH"):
            if not any(_base_device(d) == _base_device(device) and (d == device or "." not in device)
                       for d in present):
                return RuntimeStatus(False, version,
                                     f"OpenVINO device {device!r} is not present; present: {present}")
        return RuntimeStatus(True, version)

    def load(self, path, inputs=None, options=None) -> Session:
        opts = self.options(options)
        path = self.check_file(path)
        status = self.status(opts)
        if not status.available:
            raise DeviceUnavailable(status.reason)
        ov, core = _core()
        try:
            model = core.read_model(path)
            model_inputs = [(p.get_any_name(), [d.get_length() if d.is_static else None
                                                for d in p.get_partial_shape()],
                             p.get_element_type().to_dtype().name) for p in model.inputs]
        except Exception as exc:
            raise self.invalid(path, exc) from exc
        specs = resolve_inputs(model_inputs, inputs, path)
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if int(opts["threads"]) > 0:
            config["INFERENCE_NUM_THREADS"] = int(opts["threads"])
        try:
            if any(tuple(shape) != s.shape for (_, shape, _), s in zip(model_inputs, specs)):
                model.reshape({s.name: list(s.shape) for s in specs})
            compiled = core.compile_model(model, opts["device"], config)
            request = compiled.create_infer_request()
            for s in specs:
                request.set_tensor(s.name, ov.Tensor(random_array(s)))
        except Exception as exc:
            raise self.invalid(path, exc) from exc
        identity = {"threads": int(opts["threads"]), "delegate": str(opts["device"])}
        session = OpenVINOSession(request, specs, identity)
        session.cpu_bound = _base_device(str(opts["device"])) == "CPU"
        return validate(self, path, session)
